//! Logging, tracing and metrics, initialised in one place for every binary.
//!
//! Logs go through `tracing`, filtered by `RUST_LOG` (default `info`), as text or JSON; JSON
//! lines carry the `trace_id` and `span_id` of the span they were logged in (text lines do
//! not). `tracing` spans are also OpenTelemetry spans (`tracing-opentelemetry`), exported over
//! OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set. Everything else about tracing is the SDK's standard `OTEL_*` variables, which it
//! reads itself: `OTEL_SERVICE_NAME` (default: the service name given to [`init`]),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`,
//! `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`.
//! Context travels as W3C `traceparent` (see [`crate::trace`]).
//! Prometheus metrics are served on `METRICS_LISTEN` when set.

use opentelemetry::{Key, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{LevelFilter, Targets},
    fmt::{
        self, FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::{Format, Json, Writer},
    },
    prelude::*,
    registry::LookupSpan,
};

use crate::config::{LogFormat, TelemetryArgs};

/// Why telemetry could not start; each is a setup mistake the binary reports and exits on.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("failed to build the otlp span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// Another global subscriber is installed already.
    #[error(transparent)]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    /// The metrics endpoint cannot be served (the address is taken, say).
    #[error(transparent)]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// Keeps telemetry alive; dropping it exports the spans still buffered and stops the
/// tracer provider. Drop it inside the Tokio runtime (at the end of `main`): the OTLP
/// exporter sends through it.
#[must_use = "dropping the guard stops telemetry"]
pub struct Guard {
    tracer_provider: SdkTracerProvider,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(err) = self.tracer_provider.shutdown() {
            // The subscriber may already be gone at this point of shutdown.
            eprintln!("failed to flush traces: {err}");
        }
    }
}

/// Installs the global subscriber (logs and OpenTelemetry spans), the W3C propagator and,
/// if configured, the metrics endpoint.
pub fn init(service: &'static str, args: &TelemetryArgs) -> Result<Guard, TelemetryError> {
    let exporter = if otlp_traces_configured() {
        Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(TelemetryError::Exporter)?,
        )
    } else {
        None
    };
    let exporting = exporter.is_some();
    let tracer_provider = tracer_provider(service, exporter);
    // The Rust SDK ignores OTEL_PROPAGATORS; W3C TraceContext is what every hop speaks.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout is the commands' output (the reporter prints the keys it
    // wrote, the simulator its summary), which scripts read.
    let text = matches!(args.log_format, LogFormat::Text)
        .then(|| fmt::layer().with_target(false).with_writer(std::io::stderr));
    let json = matches!(args.log_format, LogFormat::Json).then(|| json_layer(std::io::stderr));
    // The filter goes on last, outermost: a callsite it disables is then disabled for good
    // (tracing caches that). Beneath the log layer, with the OpenTelemetry layer's own
    // filter also in the stack, a callsite the filter disables stays "sometimes" and every
    // hit asks the filter again: h2's trace events, per frame, were ~2 % of the gateway's
    // instructions at RUST_LOG=warn (docs/BENCHMARKS.md).
    tracing_subscriber::registry()
        .with(otel_layer(&tracer_provider, service))
        .with(text)
        .with(json)
        .with(filter)
        .try_init()?;
    if exporting {
        tracing::info!("exporting traces over otlp");
    }

    if let Some(addr) = args.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            // Histograms rather than the default summaries: buckets aggregate across
            // replicas (histogram_quantile over every consumer), quantiles do not.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            )?
            .with_http_listener(addr)
            .add_global_label("service", service)
            .install()?;
        tracing::info!(%addr, "serving prometheus metrics");
    }
    Ok(Guard { tracer_provider })
}

/// Whether an OTLP trace endpoint is configured.
///
/// This is the one place below `config.rs` that reads the environment: the OTEL_* variables
/// are the OpenTelemetry SDK's own configuration, read by the SDK itself, and the exporter
/// would otherwise fall back to `localhost:4317` and log export errors forever on every
/// machine without a collector. Without an endpoint no exporter is built.
fn otlp_traces_configured() -> bool {
    exporter_wanted(|name| std::env::var(name).ok())
}

fn exporter_wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled
        && (set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT)
            || set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT))
}

/// The tracer provider: a batch exporter when given one, otherwise none at all.
///
/// Without an exporter spans are still created, so logs carry trace ids and a request's
/// `traceparent` still travels through the stream entry; they are dropped when they end.
/// Sampler and limits come from the SDK's reading of the OTEL_* variables.
pub fn tracer_provider(
    service: &'static str,
    exporter: Option<opentelemetry_otlp::SpanExporter>,
) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource(service));
    match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter),
        None => builder,
    }
    .build()
}

/// The SDK's resource (it reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES), named after
/// `service` and carrying this build's `service.version` unless those variables set them.
fn resource(service: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name(service);
    }
    if detected
        .get(&Key::from_static_str("service.version"))
        .is_none()
    {
        // every crate of the workspace has the same version
        builder = builder.with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
    }
    builder.build()
}

/// The layer turning `tracing` spans into OpenTelemetry spans.
pub fn otel_layer<S>(provider: &SdkTracerProvider, service: &'static str) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // The exporter's own gRPC client logs through `tracing`; exporting those spans would
    // make every export produce more spans to export.
    let not_the_exporter = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(not_the_exporter)
}

/// JSON log lines (one object per line, event fields flattened) with `trace_id`/`span_id`.
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .event_format(WithTraceIds(fmt::format().json().flatten_event(true)))
        .with_writer(writer)
}

/// The JSON event format, with the OpenTelemetry ids of the current span added in front, so
/// a log line leads to its trace in Tempo.
struct WithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.lookup_current().and_then(|span| {
            let extensions = span.extensions();
            let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
            let trace_id = data.trace_id()?;
            (trace_id != opentelemetry::TraceId::INVALID).then(|| (trace_id, data.span_id()))
        });
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => {
                write!(writer, "{{\"trace_id\":\"{trace_id}\",")?;
                if let Some(span_id) = span_id {
                    write!(writer, "\"span_id\":\"{span_id}\",")?;
                }
                writer.write_str(rest)
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_otlp::WithExportConfig as _;
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::Duration,
    };

    #[test]
    fn an_exporter_is_built_only_for_a_configured_endpoint() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            exporter_wanted(move |name| map.get(name).cloned())
        };
        assert!(!env(&[]));
        assert!(!env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(!env(&[("OTEL_SERVICE_NAME", "gateway")]));
        assert!(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317")]));
        assert!(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://tempo:4317"
        )]));
        assert!(!env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]));
        assert!(!env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]));
    }

    /// Collects what a fmt layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_ids_of_their_span() {
        let provider = tracer_provider("test", None);
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(otel_layer(&provider, "test"))
            .with(json_layer(buffer.clone()));
        let mut ids = String::new();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("Publish");
            let _entered = span.enter();
            ids = crate::trace::current_traceparent().unwrap();
            tracing::info!(events = 3, "queued");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
        // traceparent = 00-<trace id>-<span id>-01
        let (trace_id, span_id) = (&ids[3..35], &ids[36..52]);
        assert!(
            lines[1].starts_with(&format!(
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\","
            )),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("\"message\":\"queued\""), "{}", lines[1]);
        assert!(lines[1].contains("\"events\":3"), "{}", lines[1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_exported_over_otlp_with_the_service_name_and_kind() {
        let receiver = testkit::otlp::OtlpReceiver::start().await;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.endpoint())
            .build()
            .unwrap();
        let provider = tracer_provider("gateway", Some(exporter));
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider, "gateway"));
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        tracing::subscriber::with_default(subscriber, || {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            let span = tracing::info_span!("Publish", otel.kind = "server", rpc.system = "grpc");
            span.set_parent(crate::trace::context_from_traceparent(incoming))
                .unwrap();
            let _entered = span.enter();
        });
        // shutdown exports what is buffered and waits for it; the export needs the other
        // runtime worker, so it must not block this one.
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
        let spans = receiver
            .wait_for(|spans| !spans.is_empty(), Duration::from_secs(10))
            .await
            .unwrap();
        let span = &spans[0];
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            assert_eq!(span.service, "gateway");
        }
        assert_eq!(span.name, "Publish");
        assert_eq!(span.kind, testkit::otlp::SpanKind::Server);
        assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(span.attribute("rpc.system"), Some("grpc"));
    }
}
