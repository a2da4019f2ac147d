//! One Publish is one trace across the Redis hop: the store's `traceparent` parents the
//! gateway's SERVER span, whose PRODUCER span's context travels in the stream entry, and the
//! consumer's CONSUMER batch span links to it, with the ClickHouse insert as its child.
//!
//! The same for a batch sent through the `client` crate over PublishStream (a SERVER span per
//! request, child of the caller's span), and a failure of the gateway's own marks its span
//! as an error. Every span names the build's `service.version`.
//!
//! A test binary of its own because it installs the process-wide tracing subscriber.

use e2e as helpers;

use std::time::Duration;

use opentelemetry_otlp::WithExportConfig;
use pipeline::proto::ingest::{
    CommerceEvent, Event, Money, ProbeResult, PublishRequest, event::Payload,
    ingest_service_client::IngestServiceClient,
};
use testkit::otlp::SpanKind;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const TOKEN: &str = "trace-test-token";
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_is_traced_from_the_call_to_the_insert() {
    let receiver = testkit::otlp::OtlpReceiver::start().await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.endpoint())
        .build()
        .unwrap();
    let provider = pipeline::telemetry::tracer_provider("e2e", Some(exporter));
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(pipeline::telemetry::otel_layer(&provider, "e2e"))
        .try_init()
        .unwrap();

    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("trace");
    let database = testkit::unique_name("trace");
    let stores = format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
        gateway::auth::token_sha256(TOKEN)
    );
    let gateway = helpers::start_gateway(&redis.url(), &stream, &stores, &[]).await;

    let event_id = "9a4d3c2b-1e0f-4a5b-8c7d-6e5f4a3b2c1d";
    let mut request = tonic::Request::new(PublishRequest {
        sequence: 1,
        all_or_nothing: true,
        events: vec![Event {
            event_id: event_id.into(),
            occurred_at: Some(prost_types_timestamp(helpers::event_time_base())),
            store_id: "eu-1".into(),
            region: 1,
            payload: Some(Payload::Commerce(CommerceEvent {
                r#type: 1,
                product_id: 1,
                category_id: 2,
                seller_id: 3,
                price: Some(Money {
                    currency_code: "EUR".into(),
                    units: 5,
                    nanos: 0,
                }),
                quantity: 1,
                user_id: 4,
                session_id: "s".into(),
                ..Default::default()
            })),
        }],
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let mut client = IngestServiceClient::connect(gateway.url()).await.unwrap();
    assert_eq!(
        client.publish(request).await.unwrap().into_inner().accepted,
        1
    );

    let settings = helpers::consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let db = helpers::clickhouse(&ch.url(), &database);
    helpers::consume_until(&mut worker, Duration::from_secs(30), || async {
        db.query("SELECT count() FROM commerce_events")
            .fetch_one::<u64>()
            .await
            .unwrap()
            == 1
    })
    .await
    .unwrap();

    // The client crate carries its caller's trace: a batch sent through `client::Client`
    // inside a span of the store's own is served as a child of that span. Its own gateway
    // and stream, so the spans above stay the only ones of `stream`.
    let client_stream = testkit::unique_name("trace-client");
    let client_gateway = helpers::start_gateway(&redis.url(), &client_stream, &stores, &[]).await;
    let config = client::Config::new(client_gateway.url(), TOKEN);
    let mut store_client = client::Client::new(
        config.channel().unwrap(),
        TOKEN,
        client::SendOptions::default(),
    )
    .unwrap();
    let store_span = tracing::info_span!("store checkout");
    let store_context =
        pipeline::trace::traceparent_of(&store_span).expect("the store's span has a trace context");
    for _ in 0..2 {
        let ack = store_client
            .send(&client::Batch::new(&[probe_event()]))
            .instrument(store_span.clone())
            .await
            .unwrap();
        assert_eq!(ack.accepted, 1);
    }
    drop((store_span, store_client));
    client_gateway.shutdown().await.unwrap();

    // A failure of the gateway's own (its Redis is gone) marks the SERVER span as an error.
    let mut lost_redis = testkit::Redis::start().unwrap();
    let failing = helpers::start_gateway(&lost_redis.url(), &stream, &stores, &[]).await;
    lost_redis.stop().unwrap();
    let mut failing_client = IngestServiceClient::connect(failing.url()).await.unwrap();
    let status = loop {
        let mut request = tonic::Request::new(PublishRequest {
            sequence: 1,
            all_or_nothing: false,
            events: vec![probe_event()],
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        match failing_client.publish(request).await {
            Err(status) => break status,
            // the health watch has not noticed yet
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    failing.shutdown().await.unwrap();
    gateway.shutdown().await.unwrap();
    // Shutting the provider down exports what is buffered; the export needs a free runtime
    // worker, so it must not block this one.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();

    let spans = receiver
        .wait_for(
            |s| s.iter().any(|s| s.name == "INSERT commerce_events"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let find = |kind: SpanKind, name_part: &str| {
        spans
            .iter()
            .find(|s| s.kind == kind && s.name.contains(name_part))
            .unwrap_or_else(|| panic!("no {kind:?} span named like {name_part:?} in {spans:#?}"))
    };
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.name.ends_with("IngestService/Publish"))
        .unwrap_or_else(|| panic!("no SERVER span of Publish in {spans:#?}"));
    assert_eq!(
        server.trace_id, INCOMING_TRACE,
        "the store's traceparent is honoured"
    );
    assert_eq!(server.parent_span_id.as_deref(), Some(INCOMING_SPAN));
    assert_eq!(server.attribute("rpc.grpc.status_code"), Some("0"));

    let producer = find(SpanKind::Producer, &stream);
    assert_eq!(producer.trace_id, INCOMING_TRACE);
    assert_eq!(
        producer.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
    assert_eq!(producer.attribute("messaging.system"), Some("redis"));
    assert!(producer.attribute("messaging.message.id").is_some());

    let consumer = find(SpanKind::Consumer, &stream);
    assert!(
        consumer
            .links
            .iter()
            .any(|l| l.trace_id == INCOMING_TRACE && l.span_id == producer.span_id),
        "the batch span links to the producer span: {consumer:#?}"
    );
    assert_eq!(consumer.attribute("messaging.system"), Some("redis"));
    assert_eq!(
        consumer.attribute("messaging.destination.name"),
        Some(stream.as_str())
    );
    assert_eq!(
        consumer.attribute("messaging.batch.message_count"),
        Some("1")
    );
    assert_eq!(
        consumer.attribute("messaging.consumer.group.name"),
        Some("loader")
    );

    let insert = find(SpanKind::Client, "INSERT commerce_events");
    assert_eq!(
        insert.parent_span_id.as_deref(),
        Some(consumer.span_id.as_str())
    );
    assert_eq!(insert.trace_id, consumer.trace_id);

    assert_eq!(server.status, None, "an OK call has no error status");
    assert_eq!(
        server.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "spans name the build that made them"
    );

    // one SERVER span per PublishStream request, each a child of the client's caller
    let (store_trace, store_span_id) = trace_and_span(&store_context);
    let streamed: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server && s.name.ends_with("IngestService/PublishStream"))
        .collect();
    assert_eq!(streamed.len(), 2, "a span per request: {streamed:#?}");
    for span in &streamed {
        assert_eq!(
            span.trace_id, store_trace,
            "the client sent its caller's trace"
        );
        assert_eq!(span.parent_span_id.as_deref(), Some(store_span_id));
        assert_eq!(span.attribute("rpc.grpc.status_code"), Some("0"));
    }
    assert_ne!(streamed[0].span_id, streamed[1].span_id);
    let client_producer = find(SpanKind::Producer, &client_stream);
    assert_eq!(client_producer.trace_id, store_trace);

    let unavailable = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.attribute("rpc.grpc.status_code") == Some("14"))
        .unwrap_or_else(|| panic!("no SERVER span of the UNAVAILABLE call in {spans:#?}"));
    assert!(
        unavailable
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with("error: ") && s.contains("redis")),
        "a server failure is an error span: {unavailable:#?}"
    );
}

/// `00-<trace id>-<span id>-<flags>` → (trace id, span id).
fn trace_and_span(traceparent: &str) -> (&str, &str) {
    let mut parts = traceparent.split('-').skip(1);
    (parts.next().unwrap(), parts.next().unwrap())
}

/// A valid probe of store eu-1, stamped now.
fn probe_event() -> Event {
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Some(std::time::SystemTime::now().into()),
        store_id: "eu-1".into(),
        region: 1,
        payload: Some(Payload::Probe(ProbeResult {
            target: "checkout".into(),
            up: true,
            status_code: 200,
            response_time_ms: 12,
            ..ProbeResult::default()
        })),
    }
}

fn prost_types_timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}
