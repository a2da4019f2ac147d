//! `simulator bench-latency`, the received → queryable probe that `scripts/bench` quotes,
//! finds every marker it publishes on the real gateway, consumer and ClickHouse 18.16.
//! (It once aliased `toString(event_id) AS event_id`, which 18.16 then compared with the
//! UUIDs of the `IN` list: every poll failed, and the bench reported every marker as lost.)

use std::time::Duration;

use clap::Parser;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_times_every_marker_it_publishes() {
    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("latency");
    let database = testkit::unique_name("latency");
    let gateway = start_fleet_gateway(&redis.url(), &stream, 1, "latency-secret").await;
    let settings = consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let worker = consumer::Worker::connect(&settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(worker.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "bench-latency",
        "--gateway",
        &gateway.url(),
        "--clickhouse-url",
        &ch.url(),
        "--database",
        &database,
        "--stores-per-region",
        "1",
        "--token-secret",
        "latency-secret",
        "--duration",
        "2",
        "--interval-ms",
        "100",
    ])
    .unwrap();
    let simulator::config::Command::BenchLatency(args) = settings.command else {
        unreachable!()
    };
    let result: serde_json::Value =
        serde_json::from_str(&simulator::bench::latency(&args).await.unwrap()).unwrap();
    stop.send(()).unwrap();
    consumer.await.unwrap().unwrap();
    gateway.shutdown().await.unwrap();

    assert_eq!(result["markers"], 20, "{result}");
    assert_eq!(result["refused"], 0, "{result}");
    assert_eq!(result["not_seen_within_30s"], 0, "{result}");
    assert!(result["last_poll_error"].is_null(), "{result}");
    let (p50, p99) = (
        result["p50_ms"].as_u64().unwrap(),
        result["p99_ms"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99, "{result}");

    // one [sent, accepted, queryable] per marker, in the order sent, every marker seen: the
    // quantiles are of its third column, and a Publish ends before its marker is queryable
    let timeline = result["timeline_ms"].as_array().unwrap();
    assert_eq!(timeline.len(), 20, "{result}");
    let mut latencies = Vec::new();
    let mut last_sent = 0;
    for marker in timeline {
        let [sent, accepted, queryable] = [0, 1, 2].map(|i| marker[i].as_u64().unwrap());
        assert!(sent >= last_sent, "{result}");
        assert!(accepted <= queryable, "{result}");
        last_sent = sent;
        latencies.push(queryable);
    }
    // 20 markers sent 100 ms apart over the 2 s
    assert!(last_sent >= 1800, "{result}");
    latencies.sort_unstable();
    assert_eq!(
        latencies[19],
        result["max_ms"].as_u64().unwrap(),
        "{result}"
    );
    assert!(
        latencies.contains(&p50) && latencies.contains(&p99),
        "{result}"
    );
}
