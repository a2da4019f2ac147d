//! An in-process OTLP/gRPC trace receiver, so tests can assert on the spans a service exports.
//!
//! It stands in for Tempo or an OpenTelemetry collector: a tonic server implementing the OTLP
//! `TraceService` on `127.0.0.1:0` that keeps every span it receives, flattened into
//! [`ReceivedSpan`] (ids as lowercase hex, attribute values as strings) so that assertions do
//! not need the protobuf types. Point a service at it with [`OtlpReceiver::endpoint`].

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::span,
};
use tokio::sync::oneshot;

/// The kind of a received span, as OTLP defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The exporter did not say (receivers may treat it as internal).
    Unspecified,
    /// An operation inside a service.
    Internal,
    /// The server side of an RPC, e.g. the gateway handling `Publish`.
    Server,
    /// The client side of an RPC.
    Client,
    /// A message sent to a broker, e.g. the gateway's `XADD`.
    Producer,
    /// Messages received from a broker, e.g. the consumer's batch.
    Consumer,
}

impl SpanKind {
    fn from_otlp(kind: i32) -> SpanKind {
        match span::SpanKind::try_from(kind) {
            Ok(span::SpanKind::Internal) => SpanKind::Internal,
            Ok(span::SpanKind::Server) => SpanKind::Server,
            Ok(span::SpanKind::Client) => SpanKind::Client,
            Ok(span::SpanKind::Producer) => SpanKind::Producer,
            Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
            Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
        }
    }
}

/// A link from a span to another span context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedLink {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
}

/// One span as the receiver got it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that exported the span, so a test that runs several
    /// services in one process can still tell whose span it is.
    pub service: String,
    /// The span name.
    pub name: String,
    /// The span kind.
    pub kind: SpanKind,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Links to other spans, e.g. a consumer batch span's links to the producer spans.
    pub links: Vec<ReceivedLink>,
    /// Span attributes; values rendered as text (`true`, `42`, `a,b` for arrays).
    pub attributes: BTreeMap<String, String>,
    /// Attributes of the resource that exported the span (`service.version`, …).
    pub resource: BTreeMap<String, String>,
    /// The span's status: `None` when unset, `Some("ok")`, or `Some("error: <message>")`.
    pub status: Option<String>,
}

impl ReceivedSpan {
    /// The value of an attribute, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running OTLP/gRPC trace receiver; dropping it stops the server.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Stops the server when dropped (the sender's drop resolves the shutdown future).
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound: the test cannot run without it.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the otlp receiver");
        let addr = listener.local_addr().expect("bound address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Collector {
            spans: spans.clone(),
        })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("otlp receiver stopped: {err}");
            }
        });
        OtlpReceiver {
            addr,
            spans,
            _stop: stop,
        }
    }

    /// The endpoint to give an OTLP/gRPC exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("span list lock").clone()
    }

    /// Waits until `done` accepts the spans received so far and returns them; fails after
    /// `timeout` with the names of the spans that did arrive.
    ///
    /// Exporters send in batches on their own schedule, so tests wait rather than read once.
    pub async fn wait_for<F>(
        &self,
        mut done: F,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedSpan>>
    where
        F: FnMut(&[ReceivedSpan]) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!("timed out after {timeout:?} waiting for spans; received {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The gRPC service: flattens and stores what exporters send.
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for s in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    kind: SpanKind::from_otlp(s.kind),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: (!s.parent_span_id.is_empty())
                        .then(|| hex::encode(&s.parent_span_id)),
                    links: s
                        .links
                        .iter()
                        .map(|l| ReceivedLink {
                            trace_id: hex::encode(&l.trace_id),
                            span_id: hex::encode(&l.span_id),
                        })
                        .collect(),
                    attributes: attributes(&s.attributes),
                    resource: resource.clone(),
                    status: s.status.as_ref().and_then(|status| match status.code {
                        1 => Some("ok".to_owned()),
                        2 => Some(format!("error: {}", status.message)),
                        _ => None,
                    }),
                });
            }
        }
        self.spans
            .lock()
            .map_err(|_| tonic::Status::internal("span list lock poisoned"))?
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

/// An attribute value as text: tests compare strings, whatever type the exporter chose.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::ArrayValue(a)) => a.values.iter().map(text).collect::<Vec<_>>().join(","),
        Some(Value::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    kv.value.as_ref().map(text).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{
        KeyValue,
        trace::{Link, SpanContext, SpanKind as OtelKind, TraceContextExt, Tracer, TracerProvider},
    };
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receives_spans_exported_over_otlp_grpc() {
        let receiver = OtlpReceiver::start().await;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.endpoint())
            .build()
            .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("otlp-test")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("testkit");

        let linked = SpanContext::new(
            opentelemetry::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            opentelemetry::SpanId::from_hex("b7ad6b7169203331").unwrap(),
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            Default::default(),
        );
        let (parent_trace, parent_span) = tracer.in_span("parent", |cx| {
            let parent = cx.span().span_context().clone();
            tracer
                .span_builder("child")
                .with_kind(OtelKind::Consumer)
                .with_attributes([
                    KeyValue::new("messaging.system", "redis"),
                    KeyValue::new("messaging.batch.message_count", 3_i64),
                ])
                .with_links(vec![Link::with_context(linked.clone())])
                .start_with_context(&tracer, &cx);
            (parent.trace_id().to_string(), parent.span_id().to_string())
        });
        // force_flush blocks until the batch processor's thread has exported, and that
        // export needs the runtime's other worker, so it must not run on this one.
        let flushed = tokio::task::spawn_blocking(move || {
            let result = provider.force_flush();
            (provider, result)
        })
        .await
        .unwrap();
        flushed.1.unwrap();

        let spans = receiver
            .wait_for(|spans| spans.len() >= 2, Duration::from_secs(10))
            .await
            .unwrap();
        let child = spans.iter().find(|s| s.name == "child").unwrap();
        let parent = spans.iter().find(|s| s.name == "parent").unwrap();
        assert_eq!(child.service, "otlp-test");
        assert_eq!(child.kind, SpanKind::Consumer);
        assert_eq!(parent.kind, SpanKind::Internal);
        assert_eq!(parent.parent_span_id, None);
        assert_eq!(
            (parent.trace_id.as_str(), parent.span_id.as_str()),
            (parent_trace.as_str(), parent_span.as_str())
        );
        assert_eq!(child.trace_id, parent_trace);
        assert_eq!(child.parent_span_id.as_deref(), Some(parent_span.as_str()));
        assert_eq!(
            child.links,
            vec![ReceivedLink {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
            }]
        );
        assert_eq!(child.attribute("messaging.system"), Some("redis"));
        assert_eq!(child.attribute("messaging.batch.message_count"), Some("3"));
        flushed.0.shutdown().unwrap();
    }
}
