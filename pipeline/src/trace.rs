//! Trace context across process boundaries: W3C `traceparent` in gRPC/HTTP headers and in
//! Redis stream entries.
//!
//! A trace follows a batch of events from the store's request through the gateway's `XADD`
//! to the consumer's insert, following the OpenTelemetry messaging conventions: the gateway's
//! PRODUCER span stores its `traceparent` in the stream entry (field
//! [`crate::entry::Fields::traceparent`]); the consumer's CONSUMER span for a batch of entries
//! cannot have them all as parents, so it *links* to each one ([`add_links`]).
//!
//! The W3C TraceContext propagator is used directly, not the global one, so these functions
//! mean the same whatever `telemetry::init` installed (and in tests that never call it).

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and carrier key) holding a span context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current `tracing` span, to store next to a message; `None` when
/// there is no sampled span (nothing would be exported to link to).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The `traceparent` of `span`; `None` when it has no sampled OpenTelemetry context.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    if !span_context.is_valid() || !span_context.is_sampled() {
        return None;
    }
    let mut carrier = OneHeader::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.traceparent
}

/// The context a `traceparent` names, as the parent for a span (`span.set_parent(..)`);
/// an empty context, i.e. "start a new trace", if it is malformed.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let carrier = OneHeader {
        traceparent: Some(traceparent.to_owned()),
    };
    // Extract onto an empty context, not the current one: a malformed value must not make
    // the caller's span a child of whatever happens to be current.
    TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier)
}

/// The span context a `traceparent` names, for a link; `None` if it is malformed.
pub fn span_context_from_traceparent(traceparent: &str) -> Option<SpanContext> {
    let cx = context_from_traceparent(traceparent);
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// The parent context carried by request headers (`traceparent`, `tracestate`); an empty
/// context if there is none. For tonic, pass `request.metadata().as_ref()`.
pub fn context_from_headers(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// Makes `span` a child of the context carried by `headers`, if they carry one.
///
/// Call it before the span is entered: OpenTelemetry fixes a span's parent when it starts.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = context_from_headers(headers);
    if cx.span().span_context().is_valid() {
        // Fails only if the span is disabled or already started, where there is nothing
        // better to do than keep the span's own parent.
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's context into outgoing request headers (a client calling the
/// gateway, or anything downstream of it).
pub fn inject_current_into_headers(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Links `span` to every well-formed `traceparent` and returns how many links were added;
/// malformed values are skipped, since a broken producer must not break the consumer.
pub fn add_links<'a>(
    span: &tracing::Span,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> usize {
    let mut added = 0;
    for span_context in traceparents
        .into_iter()
        .filter_map(span_context_from_traceparent)
    {
        span.add_link(span_context);
        added += 1;
    }
    added
}

/// The SERVER span of one gRPC call, e.g. `rpc_server_span("marketplace.ingest.v1.IngestService",
/// "Publish", request.metadata().as_ref())`, child of the caller's `traceparent` if it sent
/// one. Record the outcome with [`record_grpc_outcome`].
pub fn rpc_server_span(service: &str, method: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    set_parent_from_headers(&span, headers);
    span
}

/// The PRODUCER span of writing one stream entry (`send <stream>`); inside it,
/// [`current_traceparent`] is the value to store in the entry's
/// [`crate::entry::Fields::traceparent`]. Record the entry id once Redis returns it:
/// `span.record("messaging.message.id", id)`.
pub fn producer_span(stream: &str) -> tracing::Span {
    tracing::info_span!(
        "send",
        otel.name = format!("send {stream}"),
        otel.kind = "producer",
        messaging.system = "redis",
        messaging.operation.type = "send",
        messaging.operation.name = "xadd",
        messaging.destination.name = stream,
        messaging.message.id = tracing::field::Empty,
    )
}

/// The CONSUMER span of processing one batch of stream entries (`process <stream>`), linked
/// to the producer span of every entry that carried a well-formed `traceparent`. A batch
/// has many producers, so they are links, not parents (messaging semantic conventions).
pub fn consumer_batch_span<'a>(
    stream: &str,
    group: &str,
    entries: usize,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {stream}"),
        otel.kind = "consumer",
        messaging.system = "redis",
        messaging.operation.type = "process",
        messaging.destination.name = stream,
        messaging.consumer.group.name = group,
        messaging.batch.message_count = entries as i64,
    );
    add_links(&span, traceparents);
    span
}

/// The CLIENT span of one ClickHouse insert (`INSERT <table>`); create it inside the batch
/// span so that it becomes its child.
pub fn insert_span(table: &str) -> tracing::Span {
    tracing::info_span!(
        "insert",
        otel.name = format!("INSERT {table}"),
        otel.kind = "client",
        db.system.name = "clickhouse",
        db.operation.name = "INSERT",
        db.collection.name = table,
    )
}

/// gRPC status codes that are the server's failure, not the caller's: the OpenTelemetry RPC
/// conventions mark only these as errors on SERVER spans (UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS). A refusal the caller caused (invalid,
/// unauthenticated, over quota) keeps an unset status and is found by its
/// `rpc.grpc.status_code` instead.
const SERVER_FAILURE_CODES: [i32; 6] = [2, 4, 12, 13, 14, 15];

/// Records a call's outcome on its SERVER span: `rpc.grpc.status_code`, and the error status
/// with `message` when the code is the server's failure ([`SERVER_FAILURE_CODES`]).
pub fn record_grpc_outcome(span: &tracing::Span, code: i32, message: &str) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if SERVER_FAILURE_CODES.contains(&code) {
        span.set_status(opentelemetry::trace::Status::error(message.to_owned()));
    }
}

/// Marks `span` as failed with `error` as its status message, for the PRODUCER and CLIENT
/// spans whose operation failed (the Redis write, the ClickHouse insert).
pub fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.set_status(opentelemetry::trace::Status::error(error.to_string()));
}

/// Runs `work` inside `span`, and marks the span failed when `work` fails.
pub async fn traced<T, E: std::fmt::Display>(
    span: tracing::Span,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;
    let result = work.instrument(span.clone()).await;
    if let Err(error) = &result {
        record_error(&span, error);
    }
    result
}

/// A carrier for exactly one `traceparent`: stream entries store nothing else.
#[derive(Default)]
struct OneHeader {
    traceparent: Option<String>,
}

impl Injector for OneHeader {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.traceparent = Some(value);
        }
    }
}

impl Extractor for OneHeader {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT)
            .then_some(self.traceparent.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Reads propagation fields from any `http::HeaderMap`, including tonic's `MetadataMap`
/// (`AsRef<HeaderMap>`), so this crate needs no gRPC dependency.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::prelude::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Runs `f` with a subscriber that records spans in memory, and returns those spans.
    /// Scoped to this thread, so tests do not share a global subscriber.
    fn with_spans(f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        provider.force_flush().unwrap();
        exporter.get_finished_spans().unwrap()
    }

    #[test]
    fn a_spans_traceparent_names_its_trace_and_span() {
        let mut traceparent = None;
        let spans = with_spans(|| {
            let span = tracing::info_span!("send events");
            let _entered = span.enter();
            traceparent = current_traceparent();
        });
        let traceparent = traceparent.expect("a sampled span has a traceparent");
        assert_eq!(spans.len(), 1);
        let exported = &spans[0].span_context;
        let parsed = span_context_from_traceparent(&traceparent).unwrap();
        assert_eq!(parsed.trace_id(), exported.trace_id());
        assert_eq!(parsed.span_id(), exported.span_id());
        assert!(parsed.is_sampled() && parsed.is_remote());
        assert_eq!(
            context_from_traceparent(&traceparent)
                .span()
                .span_context()
                .trace_id(),
            exported.trace_id()
        );
    }

    #[test]
    fn a_span_parented_by_a_traceparent_joins_that_trace() {
        let spans = with_spans(|| {
            let span = tracing::info_span!("process events");
            span.set_parent(context_from_traceparent(TP)).unwrap();
            let _entered = span.enter();
            assert!(
                current_traceparent()
                    .unwrap()
                    .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
            );
        });
        assert_eq!(
            spans[0].span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(spans[0].parent_span_id.to_string(), "b7ad6b7169203331");
    }

    #[test]
    fn no_span_or_no_subscriber_means_no_traceparent() {
        assert_eq!(current_traceparent(), None);
        let span = tracing::info_span!("untraced");
        let _entered = span.enter();
        assert_eq!(current_traceparent(), None);
    }

    #[test]
    fn malformed_traceparents_give_no_context() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            assert!(span_context_from_traceparent(bad).is_none(), "{bad:?}");
            assert!(
                !context_from_traceparent(bad)
                    .span()
                    .span_context()
                    .is_valid()
            );
        }
    }

    #[test]
    fn headers_carry_the_parent_both_ways() {
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, http::HeaderValue::from_static(TP));
        let cx = context_from_headers(&headers);
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "b7ad6b7169203331"
        );
        assert!(
            !context_from_headers(&http::HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );

        let mut out = http::HeaderMap::new();
        let spans = with_spans(|| {
            let span = tracing::info_span!("Publish");
            set_parent_from_headers(&span, &headers);
            let _entered = span.enter();
            inject_current_into_headers(&mut out);
        });
        let sent = out.get(TRACEPARENT).unwrap().to_str().unwrap();
        assert_eq!(
            sent,
            format!(
                "00-0af7651916cd43dd8448eb211c80319c-{}-01",
                spans[0].span_context.span_id()
            )
        );
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn the_hops_make_one_trace_of_server_producer_consumer_and_insert() {
        use opentelemetry::trace::SpanKind;
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, http::HeaderValue::from_static(TP));
        let mut stored = None;
        let spans = with_spans(|| {
            let rpc = rpc_server_span("marketplace.ingest.v1.IngestService", "Publish", &headers);
            let _rpc = rpc.enter();
            let send = producer_span("events");
            let _send = send.enter();
            stored = current_traceparent();
            send.record("messaging.message.id", "1-0");
        });
        let stored = stored.unwrap();
        let spans_consumer = with_spans(|| {
            let batch = consumer_batch_span("events", "loader", 2, [stored.as_str(), "bad"]);
            let _batch = batch.enter();
            let _insert = insert_span("commerce_events").entered();
        });

        let by_name = |spans: &[opentelemetry_sdk::trace::SpanData], name: &str| {
            spans.iter().find(|s| s.name == name).cloned().unwrap()
        };
        let rpc = by_name(&spans, "marketplace.ingest.v1.IngestService/Publish");
        let send = by_name(&spans, "send events");
        assert_eq!(rpc.span_kind, SpanKind::Server);
        assert_eq!(rpc.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(attribute(&rpc, "rpc.method").as_deref(), Some("Publish"));
        assert_eq!(send.span_kind, SpanKind::Producer);
        assert_eq!(send.parent_span_id, rpc.span_context.span_id());
        assert_eq!(send.span_context.trace_id(), rpc.span_context.trace_id());
        assert_eq!(
            attribute(&send, "messaging.message.id").as_deref(),
            Some("1-0")
        );
        assert_eq!(
            attribute(&send, "messaging.system").as_deref(),
            Some("redis")
        );

        let batch = by_name(&spans_consumer, "process events");
        let insert = by_name(&spans_consumer, "INSERT commerce_events");
        assert_eq!(batch.span_kind, SpanKind::Consumer);
        assert_eq!(
            attribute(&batch, "messaging.consumer.group.name").as_deref(),
            Some("loader")
        );
        assert_eq!(
            attribute(&batch, "messaging.batch.message_count").as_deref(),
            Some("2")
        );
        assert_eq!(batch.links.len(), 1);
        assert_eq!(
            batch.links[0].span_context.span_id(),
            send.span_context.span_id()
        );
        assert_eq!(
            batch.links[0].span_context.trace_id(),
            rpc.span_context.trace_id()
        );
        assert_eq!(insert.span_kind, SpanKind::Client);
        assert_eq!(insert.parent_span_id, batch.span_context.span_id());
        assert_eq!(
            attribute(&insert, "db.system.name").as_deref(),
            Some("clickhouse")
        );
    }

    #[test]
    fn a_batch_span_links_every_well_formed_traceparent() {
        let other = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut added = 0;
        let spans = with_spans(|| {
            let span = tracing::info_span!("process events", otel.kind = "consumer");
            added = add_links(&span, [TP, "broken", other]);
            let _entered = span.enter();
        });
        assert_eq!(added, 2);
        let links: Vec<String> = spans[0]
            .links
            .iter()
            .map(|l| format!("{}-{}", l.span_context.trace_id(), l.span_context.span_id()))
            .collect();
        assert_eq!(
            links,
            [
                "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
            ]
        );
        assert_eq!(spans[0].span_kind, opentelemetry::trace::SpanKind::Consumer);
    }
}
