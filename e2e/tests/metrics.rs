//! Each service's Prometheus endpoint (`METRICS_LISTEN`) shows correct values after a known
//! workload: events accepted and rejected by region, refusals by reason, RPC latency, rows
//! inserted per table, insert latency and batch sizes, report runs and failures, and the
//! client crate's counters of a store backend that installs the same recorder. A real
//! Prometheus then scrapes it: every dashboard query runs, and every alert rule evaluates.
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
    // the successful run built the day's rollups first (the failed one stopped before)
    assert!(sample(&body, "reporter_rollup_build_seconds_count", &[]) >= 1.0);
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

    // A real Prometheus scrapes the same endpoint: every Prometheus panel of the dashboards
    // is a query it accepts, the ones on the workload's metrics return data, and every alert
    // rule evaluates without error.
    let prometheus = Prometheus::start(port);
    prometheus.wait_for_samples("gateway_store_requests_total");
    let mut answered = 0;
    for (panel, expr) in dashboard_exprs() {
        let result = prometheus.query(&expr);
        assert_eq!(
            result["status"], "success",
            "{panel}: {expr} was refused: {result}"
        );
        answered += usize::from(
            result["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
        );
    }
    assert!(
        answered >= 10,
        "only {answered} panel queries returned data"
    );
    let rules = prometheus.get("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    let rules: Vec<&serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(rules.len() >= 7, "alerts.yml loaded: {rules:?}");
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    gateway.shutdown().await.unwrap();
}

/// Every Prometheus query of the dashboards (panel title, expression), with Grafana's
/// variables replaced as Grafana would for "All" and a five-minute range.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = testkit::repo_root().join("deploy/grafana/dashboards");
    let mut exprs = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let expr = expr
                        .replace("$__rate_interval", "1m")
                        .replace("$__range", "5m")
                        .replace("$store", ".*")
                        .replace("$region", ".*");
                    exprs.push((panel["title"].as_str().unwrap().to_owned(), expr));
                }
            }
        }
    }
    assert!(!exprs.is_empty());
    exprs
}

/// A Prometheus server (Debian's, scripts/install.sh) scraping one endpoint every second
/// with deploy/prometheus/alerts.yml loaded; killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = testkit::repo_root().join("deploy/prometheus/alerts.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = testkit::free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/install.sh)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// GET `path_and_query`, the JSON answer (any HTTP status: the API explains errors).
    fn get(&self, path_and_query: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
    }

    fn query(&self, expr: &str) -> serde_json::Value {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.get(&format!("/api/v1/query?query={encoded}"))
    }

    /// Waits until Prometheus is up and has scraped `metric` a few times (rates need two).
    fn wait_for_samples(&self, metric: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.query(&format!("count_over_time({metric}[1m])"))["data"]["result"]
                    .as_array()
                    .and_then(|r| r.first())
                    .and_then(|s| s["value"][1].as_str()?.parse::<u32>().ok())
                    .is_some_and(|n| n >= 3);
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus never scraped {metric}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
