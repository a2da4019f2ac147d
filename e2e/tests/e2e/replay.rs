//! Replay: the shipped sample of the public e-commerce behaviour dataset, replayed through
//! the gateway, lands in ClickHouse with the file's counts per event type.

use std::{collections::BTreeMap, time::Duration};

use clap::Parser;

use crate::helpers::*;

#[derive(clickhouse::Row, serde::Deserialize)]
struct TypeCount {
    kind: String,
    events: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_sample_lands_with_the_files_counts_per_type() {
    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("replay");
    let database = testkit::unique_name("replay");
    let gateway = start_fleet_gateway(&redis.url(), &stream, 2, "replay-secret").await;

    let sample = testkit::repo_root().join("simulator/data/sample.csv");
    let text = std::fs::read_to_string(&sample).unwrap();
    let mut in_file: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        *in_file
            .entry(line.split(',').nth(1).unwrap().to_owned())
            .or_default() += 1;
    }
    let rows: u64 = in_file.values().sum();

    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "replay",
        "--file",
        sample.to_str().unwrap(),
        "--gateway",
        &gateway.url(),
        "--stores-per-region",
        "2",
        "--token-secret",
        "replay-secret",
        "--batch-size",
        "200",
        "--rate",
        "0",
        "--quiet",
    ])
    .unwrap();
    let simulator::config::Command::Replay(args) = settings.command else {
        unreachable!()
    };
    let truth = simulator::replay::run(&args).await.unwrap();
    assert_eq!(
        (truth.sent, truth.accepted),
        (rows, rows),
        "every row accepted"
    );

    let settings = consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let client = clickhouse(&ch.url(), &database);
    let counts = || async {
        client
            .query("SELECT toString(type) AS kind, count() AS events FROM commerce_events FINAL GROUP BY kind ORDER BY kind")
            .fetch_all::<TypeCount>()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.events))
            .collect::<BTreeMap<String, u64>>()
    };
    consume_until(&mut worker, Duration::from_secs(60), || async {
        counts().await.values().sum::<u64>() >= rows
    })
    .await
    .unwrap();
    assert_eq!(counts().await, in_file);
    gateway.shutdown().await.unwrap();
}
