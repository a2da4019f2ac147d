//! Each service's Prometheus endpoint (`METRICS_LISTEN`) shows correct values after a known
//! workload: events accepted and rejected by region, refusals by reason, RPC latency, rows
//! inserted per table, insert latency and batch sizes, report runs and failures, and the
//! client crate's counters of a store backend that installs the same recorder.
//!
//! A test binary of its own because it installs the process-wide metrics recorder, through
//! the same `pipeline::telemetry::init` the binaries call.

use e2e as helpers;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use pipeline::proto::ingest::{
    CommerceEvent, Event, Money, PublishRequest, event::Payload,
    ingest_service_client::IngestServiceClient,
};

const TOKEN: &str = "metrics-test-token";

fn event(i: usize, valid: bool) -> Event {
    Event {
        event_id: format!("7c9e6679-7425-40de-944b-e07fc1f9{i:04x}"),
        occurred_at: Some(prost_types::Timestamp {
            seconds: helpers::event_time_base(),
            nanos: 0,
        }),
        store_id: "eu-1".into(),
        region: 1,
        payload: Some(Payload::Commerce(CommerceEvent {
            r#type: 4,
            product_id: 1,
            category_id: 2,
            seller_id: 3,
            // an invalid event: quantity 0 on a purchase
            quantity: if valid { 2 } else { 0 },
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 3,
                nanos: 0,
            }),
            user_id: 4,
            session_id: "s".into(),
            ..Default::default()
        })),
    }
}

/// GET http://127.0.0.1:port/metrics, the body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `name` carrying every label pair in `labels` (`key="value"`).
fn sample(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| l.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_a_known_workload() {
    let port = testkit::free_port();
    let args = pipeline::config::TelemetryArgs {
        log_format: pipeline::config::LogFormat::Text,
        metrics_listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
    };
    let _telemetry = pipeline::telemetry::init("e2e", &args).unwrap();

    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("metrics");
    let database = testkit::unique_name("metrics");
    let stores = format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
        gateway::auth::token_sha256(TOKEN)
    );
    let gateway = helpers::start_gateway(&redis.url(), &stream, &stores, &[]).await;
    let mut client = IngestServiceClient::connect(gateway.url()).await.unwrap();
    let publish = |events: Vec<Event>, token: &str| {
        let mut request = tonic::Request::new(PublishRequest {
            sequence: 0,
            events,
            all_or_nothing: false,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    // 10 valid and 2 invalid events in two requests, and one unauthenticated call.
    let first = client
        .publish(publish((0..6).map(|i| event(i, i != 5)).collect(), TOKEN))
        .await
        .unwrap();
    let second = client
        .publish(publish((6..12).map(|i| event(i, i != 11)).collect(), TOKEN))
        .await
        .unwrap();
    assert_eq!(first.get_ref().accepted + second.get_ref().accepted, 10);
    assert!(
        client
            .publish(publish(vec![event(99, true)], "wrong"))
            .await
            .is_err()
    );

    let settings = helpers::consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let db = helpers::clickhouse(&ch.url(), &database);
    helpers::consume_until(&mut worker, Duration::from_secs(30), || async {
        db.query("SELECT count() FROM rejected_events")
            .fetch_one::<u64>()
            .await
            .unwrap()
            == 2
    })
    .await
    .unwrap();

    // One report run over the same data, and one that fails (no such bucket).
    let s3 = testkit::shared_s3();
    let bucket = testkit::unique_bucket();
    s3.create_bucket(&bucket).unwrap();
    let store = helpers::report_store(&s3.endpoint(), &bucket).await;
    let date = helpers::utc_date(helpers::event_time_base());
    let (_, keys) = reporter::run::run(&db, &store, date).await.unwrap();
    let missing = helpers::report_store(&s3.endpoint(), &testkit::unique_bucket()).await;
    assert!(reporter::run::run(&db, &missing, date).await.is_err());

    let body = scrape(port);
    let europe = r#"region="europe""#;
    assert_eq!(
        sample(&body, "gateway_events_accepted_total", &[europe]),
        10.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "gateway_events_rejected_total", &[europe]),
        2.0
    );
    assert_eq!(
        sample(
            &body,
            "gateway_requests_refused_total",
            &[r#"reason="unauthenticated""#]
        ),
        1.0
    );
    let publish_ok = [r#"method="Publish""#, r#"code="ok""#];
    assert_eq!(
        sample(&body, "gateway_rpc_duration_seconds_count", &publish_ok),
        2.0
    );
    let publish_unauth = [r#"method="Publish""#, r#"code="unauthenticated""#];
    assert_eq!(
        sample(&body, "gateway_rpc_duration_seconds_count", &publish_unauth),
        1.0
    );
    assert!(
        body.contains("gateway_rpc_duration_seconds_bucket{"),
        "rpc latency is a histogram"
    );
    assert_eq!(
        sample(
            &body,
            "consumer_rows_inserted_total",
            &[r#"table="commerce_events""#]
        ),
        10.0
    );
    assert_eq!(
        sample(
            &body,
            "consumer_rows_inserted_total",
            &[r#"table="rejected_events""#]
        ),
        2.0
    );
    assert!(sample(&body, "consumer_insert_duration_seconds_count", &[]) >= 1.0);
    assert!(
        body.contains("consumer_insert_duration_seconds_bucket{"),
        "insert latency is a histogram"
    );
    assert_eq!(
        sample(&body, "consumer_batch_entries_sum", &[]),
        2.0,
        "two entries loaded"
    );
    assert_eq!(sample(&body, "consumer_dead_letters_total", &[]), 0.0);
    assert_eq!(
        sample(&body, "reporter_runs_total", &[r#"outcome="ok""#]),
        1.0
    );
    assert_eq!(
        sample(&body, "reporter_runs_total", &[r#"outcome="error""#]),
        1.0
    );
    assert_eq!(
        sample(&body, "reporter_objects_written_total", &[]),
        keys.len() as f64
    );
    assert_eq!(
        sample(&body, "reporter_run_duration_seconds_count", &[]),
        2.0
    );
    assert!(
        body.contains(r#"service="e2e""#),
        "every sample names its service"
    );
    // what the alert rules read (deploy/prometheus/alerts.yml)
    assert_eq!(
        sample(
            &body,
            "gateway_store_requests_total",
            &[r#"store="eu-1""#, r#"outcome="ok""#]
        ),
        2.0,
        "two requests of eu-1 queued"
    );
    assert_eq!(
        sample(&body, "consumer_load_delay_seconds_count", &[]),
        2.0,
        "one delay per loaded entry"
    );
    let last_success = sample(&body, "reporter_last_success_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 300.0..=now).contains(&last_success),
        "the successful run's time: {last_success}"
    );

    // The client crate's counters reach the recorder the application installed: 4 valid and
    // 1 invalid event through a spooling publisher; 3 to a port where nobody listens, with two
    // attempts (one retry, then given up); 2 with a token the gateway does not know.
    let spool = tempfile::tempdir().unwrap();
    let mut config = client::Config::new(gateway.url(), TOKEN);
    config.spool = Some(client::SpoolConfig {
        dir: spool.path().into(),
        max_bytes: 1 << 20,
    });
    let publisher = client::Publisher::start(config).unwrap();
    for i in 0..5 {
        publisher.publish(&event(100 + i, i != 4)).await.unwrap();
    }
    let stats = publisher.close().await.unwrap();
    assert_eq!((stats.acknowledged, stats.rejected), (4, 1));

    let mut config =
        client::Config::new(format!("http://127.0.0.1:{}", testkit::free_port()), TOKEN);
    config.send.timeout = Duration::from_secs(2);
    config.send.retry = client::RetryPolicy {
        backoff: pipeline::retry::Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        max_attempts: Some(2),
    };
    let nobody = client::Publisher::start(config).unwrap();
    for i in 0..3 {
        nobody.publish(&event(200 + i, true)).await.unwrap();
    }
    assert_eq!(nobody.close().await.unwrap().failed, 3);

    let stranger = client::Publisher::start(client::Config::new(gateway.url(), "wrong")).unwrap();
    for i in 0..2 {
        stranger.publish(&event(300 + i, true)).await.unwrap();
    }
    assert_eq!(stranger.close().await.unwrap().failed, 2);

    let body = scrape(port);
    for (name, expected) in [
        ("client_events_sent_total", 10.0),
        ("client_events_acknowledged_total", 4.0),
        ("client_events_rejected_total", 1.0),
        ("client_events_retried_total", 3.0),
        ("client_events_failed_total", 5.0),
        ("client_events_spooled_total", 5.0),
    ] {
        assert_eq!(sample(&body, name, &[]), expected, "{name} in:\n{body}");
    }
    gateway.shutdown().await.unwrap();
}
