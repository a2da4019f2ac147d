//! The prober as deployed: its principal (`role = "prober"`) at the real gateway, Redis,
//! the real consumer, and `probe_results` rows in ClickHouse with the vantage region.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Parser;
use client::{
    Config, Publisher,
    proto::{CommerceEvent, Event, ProbeResult, Region as PbRegion, event::Payload},
};

use crate::servers::{self, Reply};

const STORE_TOKEN: &str = "prober-e2e-store";
const PROBER_TOKEN: &str = "prober-e2e-prober";

/// Store eu-1 in europe, and a prober in asia.
fn stores_toml() -> String {
    format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n\n\
         [[store]]\nid = \"probe-asia\"\nregion = \"asia\"\nrole = \"prober\"\ntoken_sha256 = \"{}\"\n",
        gateway::auth::token_sha256(STORE_TOKEN),
        gateway::auth::token_sha256(PROBER_TOKEN)
    )
}

async fn start_gateway(
    redis_url: &str,
    stream: &str,
    dir: &std::path::Path,
) -> gateway::Background {
    start_gateway_on("127.0.0.1:0", redis_url, stream, dir, &[]).await
}

/// A gateway listening on `bind`, with `extra` flags (TLS).
async fn start_gateway_on(
    bind: &str,
    redis_url: &str,
    stream: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> gateway::Background {
    let stores = dir.join("stores.toml");
    std::fs::write(&stores, stores_toml()).unwrap();
    let stores = stores.display().to_string();
    let mut args = vec![
        "gateway",
        "--stores-file",
        &stores,
        "--redis-url",
        redis_url,
        "--stream-key",
        stream,
    ];
    args.extend_from_slice(extra);
    let settings = gateway::Settings::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    gateway::Background::spawn(listener, settings).unwrap()
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct Row {
    store_id: String,
    region: String,
    vantage_region: String,
    target: String,
    up: u8,
    status_code: u16,
    response_time_ms: u32,
    time_to_first_byte_ms: u32,
    tls_handshake_ms: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_clickhouse_with_the_vantage_region() {
    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("prober");
    let database = testkit::unique_name("prober");
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&redis.url(), &stream, dir.path()).await;

    let site = servers::http(|_| Reply::status_after(200, Duration::from_millis(50))).await;
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[[target]]\nname = \"home\"\nstore_id = \"eu-1\"\nregion = \"europe\"\n\
             url = \"http://{site}/\"\ninterval = \"100ms\"\njitter = \"0s\"\n"
        ),
    )
    .unwrap();
    let settings = prober::Settings::try_parse_from([
        "prober",
        "--targets-file",
        &targets.display().to_string(),
        "--region",
        "asia",
        "--gateway",
        &gateway.url(),
        "--token",
        PROBER_TOKEN,
    ])
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        prober::run::run(&settings, async {
            let _ = stopped.await;
        })
        .await
    });

    let consumer = consumer::Settings::try_parse_from([
        "consumer",
        "--redis-url",
        &redis.url(),
        "--stream-key",
        &stream,
        "--clickhouse-url",
        &ch.url(),
        "--clickhouse-database",
        &database,
        "--consumer-name",
        "c1",
        "--batch-age",
        "100ms",
    ])
    .unwrap();
    let mut worker = consumer::Worker::connect(&consumer).await.unwrap();
    let client = clickhouse::Client::default()
        .with_url(ch.url())
        .with_database(&database)
        .with_validation(false);
    let rows = || async {
        client
            .query(
                "SELECT store_id, toString(region) AS region, toString(vantage_region) AS \
                 vantage_region, target, up, status_code, response_time_ms, \
                 time_to_first_byte_ms, tls_handshake_ms FROM probe_results FINAL",
            )
            .fetch_all::<Row>()
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let loaded = loop {
        worker.step().await.unwrap();
        worker.flush().await.unwrap();
        let loaded = rows().await;
        if loaded.len() >= 3 {
            break loaded;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {loaded:?} loaded in 60 s"
        );
    };
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    gateway.shutdown().await.unwrap();

    for row in &loaded {
        assert_eq!(
            (
                &*row.store_id,
                &*row.region,
                &*row.vantage_region,
                &*row.target
            ),
            ("eu-1", "europe", "asia", "home"),
            "{row:?}"
        );
        assert_eq!(
            (row.up, row.status_code, row.tls_handshake_ms),
            (1, 200, 0),
            "{row:?}"
        );
        // the site answers after 50 ms
        assert!(row.time_to_first_byte_ms >= 50, "{row:?}");
        assert!(row.response_time_ms >= row.time_to_first_byte_ms, "{row:?}");
    }

    // ...and on into the day's report: the Asia → Europe cell of the vantage matrix holds
    // the prober's probes, and Europe's own stability leaves them out (taken from afar).
    let day: String = client
        .query("SELECT toString(toDate(max(occurred_at))) FROM probe_results")
        .fetch_one()
        .await
        .unwrap();
    let of_day: u64 = client
        .query("SELECT count() FROM probe_results FINAL WHERE toDate(occurred_at) = toDate(?)")
        .bind(&day)
        .fetch_one()
        .await
        .unwrap();
    let date = time::Date::parse(
        &day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let fetched = reporter::fetch::fetch(&client, date, 7).await.unwrap();
    let report =
        reporter::build::marketplace(&fetched, &reporter::build::Options::default()).unwrap();
    let cells: Vec<(&str, &str, u64, u64)> = report
        .vantage_matrix
        .iter()
        .map(|c| (&*c.row.vantage, &*c.row.region, c.row.probes, c.row.up))
        .collect();
    assert!(of_day >= 1);
    assert_eq!(cells, [("asia", "europe", of_day, of_day)]);
    assert!(report.vantage_matrix[0].row.ttfb_p95_ms >= 50.0);
    assert!(
        report.stability.is_empty(),
        "no probe was taken inside Europe: {:?}",
        report.stability
    );
}

/// Publishes `events` with `token` and returns each refused event's violated fields.
async fn refused_fields(url: &str, token: &str, events: &[Event]) -> Vec<Vec<(String, String)>> {
    let refused = Arc::new(Mutex::new(Vec::new()));
    let sink = refused.clone();
    let mut config = Config::new(url, token);
    // one batch, so that the violations' indexes are the events'
    config.linger = Duration::from_secs(30);
    let publisher = Publisher::with_outcomes(config, move |_batch, outcome| {
        let ack = outcome.as_ref().expect("the batch is answered");
        for r in &ack.rejected {
            sink.lock().unwrap().push(
                r.violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect(),
            );
        }
    })
    .unwrap();
    for e in events {
        publisher.publish(e).await.unwrap();
    }
    let stats = publisher.close().await.unwrap();
    assert_eq!(stats.acknowledged + stats.rejected, events.len() as u64);
    Arc::into_inner(refused).unwrap().into_inner().unwrap()
}

fn probe(store_id: &str, region: PbRegion, vantage: PbRegion) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Some(std::time::SystemTime::now().into()),
        store_id: store_id.into(),
        region: region as i32,
        payload: Some(Payload::Probe(ProbeResult {
            target: "home".into(),
            up: true,
            status_code: 200,
            response_time_ms: 80,
            vantage_region: vantage as i32,
            ..ProbeResult::default()
        })),
    }
}

#[tokio::test]
async fn the_gateway_holds_a_prober_to_probes_of_known_stores_from_its_region() {
    let redis = testkit::shared_redis();
    let stream = testkit::unique_name("prober-rules");
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&redis.url(), &stream, dir.path()).await;
    let url = gateway.url();

    // a probe of eu-1 from asia: accepted
    let good = probe("eu-1", PbRegion::Europe, PbRegion::Asia);
    assert_eq!(
        refused_fields(&url, PROBER_TOKEN, &[good]).await,
        Vec::<Vec<_>>::new()
    );

    let sale = Event {
        payload: Some(Payload::Commerce(CommerceEvent::default())),
        ..probe("eu-1", PbRegion::Europe, PbRegion::Asia)
    };
    let refused = refused_fields(
        &url,
        PROBER_TOKEN,
        &[
            sale,
            probe("us-9", PbRegion::America, PbRegion::Asia),
            probe("eu-1", PbRegion::Asia, PbRegion::Asia),
            probe("eu-1", PbRegion::Europe, PbRegion::Europe),
            // a prober is not a store another prober may probe
            probe("probe-asia", PbRegion::Asia, PbRegion::Asia),
        ],
    )
    .await;
    let fields: Vec<Vec<&str>> = refused
        .iter()
        .map(|r| r.iter().map(|(f, _)| f.as_str()).collect())
        .collect();
    assert_eq!(fields[0][0], "events[0].commerce", "{refused:?}");
    assert_eq!(
        refused[0][0].1,
        "is not allowed: prober \"probe-asia\" may publish probe results only"
    );
    assert_eq!(fields[1], ["events[1].store_id"]);
    assert!(refused[1][0].1.contains("not a known store"), "{refused:?}");
    assert_eq!(fields[2], ["events[2].region"]);
    assert_eq!(fields[3], ["events[3].probe.vantage_region"]);
    assert_eq!(fields[4], ["events[4].store_id"]);

    // the store itself still sends its own probes, with or without a vantage region
    let own = probe("eu-1", PbRegion::Europe, PbRegion::Unspecified);
    assert_eq!(
        refused_fields(&url, STORE_TOKEN, &[own]).await,
        Vec::<Vec<_>>::new()
    );
    gateway.shutdown().await.unwrap();
}

/// As on a Terraform gateway node: the prober reaches its gateway at an address its
/// certificate does not name (there `https://gateway:50051`, here 127.0.0.2), and checks the
/// certificate against the name it does carry (`PROBER_GATEWAY_TLS_DOMAIN`).
#[tokio::test]
async fn a_prober_reaches_a_tls_gateway_by_address_with_the_certificate_s_name() {
    let redis = testkit::shared_redis();
    let stream = testkit::unique_name("prober-tls");
    let dir = tempfile::tempdir().unwrap();
    // for localhost and 127.0.0.1 only
    let certs = testkit::tls::certificates(dir.path()).unwrap();
    let (cert, key, ca) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
        certs.ca.display().to_string(),
    );
    let gateway = start_gateway_on(
        "127.0.0.2:0",
        &redis.url(),
        &stream,
        dir.path(),
        &["--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
    let endpoint = format!("https://127.0.0.2:{}", gateway.addr().port());
    let settings = |extra: &[&str]| {
        let mut args = vec![
            "prober",
            "--targets-file",
            "unused.toml",
            "--region",
            "asia",
            "--gateway",
            &endpoint,
            "--token",
            PROBER_TOKEN,
            "--gateway-ca-file",
            &ca,
        ];
        args.extend_from_slice(extra);
        prober::Settings::try_parse_from(args).unwrap()
    };
    let deliver = |settings: prober::Settings| async move {
        let mut config = prober::run::publisher_config(&settings).unwrap();
        config.send.retry.max_attempts = Some(1);
        let publisher = Publisher::start(config).unwrap();
        publisher
            .publish(&probe("eu-1", PbRegion::Europe, PbRegion::Asia))
            .await
            .unwrap();
        publisher.close().await.unwrap()
    };

    let named = settings(&["--gateway-tls-domain", "localhost"]);
    assert_eq!(named.gateway_tls_domain.as_deref(), Some("localhost"));
    let stats = deliver(named).await;
    assert_eq!((stats.acknowledged, stats.failed), (1, 0), "{stats:?}");
    let queued = redis.cli(&["XLEN", &stream]).unwrap();
    assert_eq!(queued.trim(), "1", "the probe is in the stream");

    // without the name, the certificate does not match 127.0.0.2: nothing is delivered
    let stats = deliver(settings(&[])).await;
    assert_eq!((stats.acknowledged, stats.failed), (0, 1), "{stats:?}");
    gateway.shutdown().await.unwrap();

    // the name alone means nothing without a CA to check the certificate against
    let err = prober::Settings::try_parse_from([
        "prober",
        "--targets-file",
        "t.toml",
        "--region",
        "asia",
        "--token",
        "t",
        "--gateway-tls-domain",
        "localhost",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("--gateway-ca-file"), "{err}");
}
