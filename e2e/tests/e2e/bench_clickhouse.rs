//! `simulator bench-clickhouse`, the ClickHouse reference `scripts/bench` quotes, on a real
//! ClickHouse 18.16: it loads every row, with the ids and in the format it was asked for,
//! into a scratch database that it drops at the end.

use std::collections::HashSet;

use clap::Parser;
use pipeline::native::EventKey;
use simulator::{bench::IdSource, config::BenchIds};

async fn run(
    ch_url: &str,
    database: &str,
    ids: &str,
    format: &str,
    rows: usize,
    singles: usize,
    extra: &[&str],
) -> serde_json::Value {
    let rows = rows.to_string();
    let singles = singles.to_string();
    let mut argv = vec![
        "simulator",
        "bench-clickhouse",
        "--clickhouse-url",
        ch_url,
        "--database",
        database,
        "--rows",
        &rows,
        "--single-inserts",
        &singles,
        "--ids",
        ids,
        "--format",
        format,
        "--block-rows",
        "1000",
    ];
    argv.extend_from_slice(extra);
    let settings = simulator::Settings::try_parse_from(argv).unwrap();
    let simulator::config::Command::BenchClickhouse(args) = settings.command else {
        unreachable!()
    };
    serde_json::from_str(&simulator::bench::clickhouse(&args).await.unwrap()).unwrap()
}

/// A client of the server at `url`, for the tests' own queries.
fn client_of(url: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_validation(false)
}

#[tokio::test]
async fn the_clickhouse_reference_loads_its_rows_and_drops_its_database() {
    let ch = testkit::shared_clickhouse();
    let client = client_of(&ch.url());
    for (ids, format, singles) in [
        ("random", "native", 0),
        ("random", "rowbinary", 0),
        ("random-sorted", "native", 0),
        ("random-each-sorted", "native", 0),
        ("sequential", "rowbinary", 20),
    ] {
        let database = testkit::unique_name("bench_raw");
        let result = run(&ch.url(), &database, ids, format, 5_000, singles, &[]).await;
        assert_eq!(result["ids"], ids, "{result}");
        assert_eq!(result["format"], format, "{result}");
        assert!(
            result["bulk_query_cpu_microseconds_per_row"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{result}"
        );
        assert_eq!(result["bulk_rows"], 5_000, "{result}");
        assert_eq!(result["loaded_rows"], 5_000, "{result}");
        assert!(
            result["bulk_rows_per_second"].as_f64().unwrap() > 0.0,
            "{result}"
        );
        assert_eq!(result["single_inserts"], singles, "{result}");
        // no single insert, no rate (not a division by zero)
        assert_eq!(
            result["single_rows_per_second"].is_null(),
            singles == 0,
            "{result}"
        );
        let left: u64 = client
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(&database)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(left, 0, "{database} was not dropped");
    }
}

/// The reference's rows are the load's: by default the commerce rows of every store of the
/// fleet, as `scripts/bench` passes its stores and batch; `one-store` keeps the old pool of one
/// store's 10,000 rows. The counts are the server's, of the rows it loaded.
#[tokio::test]
async fn the_reference_rows_come_from_the_loads_fleet_or_from_one_store() {
    let ch = testkit::shared_clickhouse();
    let fleet_args = [
        "--stores-per-region",
        "2",
        "--batch",
        "100",
        "--pool-rows",
        "3000",
    ];
    let fleet = run(
        &ch.url(),
        &testkit::unique_name("bench_raw"),
        "random",
        "native",
        5_000,
        0,
        &fleet_args,
    )
    .await;
    assert_eq!(fleet["rows_from"], "fleet", "{fleet}");
    assert_eq!(fleet["pool_rows"], 3_000, "{fleet}");
    assert_eq!(fleet["loaded_rows"], 5_000, "{fleet}");
    // 2 stores in each of the 3 regions, in turn, 100 events each: 3,000 rows need them all
    assert_eq!(fleet["loaded_stores"], 6, "{fleet}");

    let one = run(
        &ch.url(),
        &testkit::unique_name("bench_raw"),
        "random",
        "native",
        5_000,
        0,
        &["--rows-from", "one-store"],
    )
    .await;
    assert_eq!(one["rows_from"], "one-store", "{one}");
    assert_eq!(one["loaded_rows"], 5_000, "{one}");
    assert_eq!(one["loaded_stores"], 1, "{one}");
    // the 10,000 generated commerce events that pass the rules
    let pool = one["pool_rows"].as_u64().unwrap();
    assert!(pool > 9_000 && pool <= 10_000, "{one}");
}

#[test]
fn sequential_ids_ascend_and_random_ids_are_distinct_version_4_uuids() {
    let mut sequential = IdSource::new(BenchIds::Sequential, 1_000);
    let ids: Vec<_> = (0..1_000).map(|i| sequential.id(i)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // ClickHouse orders UUIDs by their last 8 bytes, then the first 8: the same first half
    // for all, so the last half orders them in both orders
    assert!(
        ids.iter()
            .all(|id| id.as_u64_pair().0 == ids[0].as_u64_pair().0)
    );

    let mut random = IdSource::new(BenchIds::Random, 1_000);
    let ids: Vec<_> = (0..1_000).map(|i| random.id(i)).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert!(ids.iter().all(|id| id.get_version_num() == 4));
    assert!(
        !ids.windows(2).all(|w| w[0] < w[1]),
        "random ids came sorted"
    );
    // seeded: the same ids on every run
    let mut again = IdSource::new(BenchIds::Random, 1_000);
    assert_eq!(again.id(0), ids[0]);

    // the same random ids, in ClickHouse's order of UUIDs (the server's own word on it:
    // `random_sorted_ids_come_in_the_servers_order`)
    let mut sorted = IdSource::new(BenchIds::RandomSorted, 1_000);
    let sorted: Vec<_> = (0..1_000).map(|i| sorted.id(i)).collect();
    assert!(
        sorted
            .windows(2)
            .all(|w| EventKey::new(0, &w[0]) < EventKey::new(0, &w[1]))
    );
    assert_eq!(
        sorted.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}

/// `--ids random-sorted` must send its ids in the order the server sorts them, or the server
/// sorts them as it sorts random ones and the reference measures nothing of what sorting
/// saves: until 2026-12-04 they went in the order of their 16 bytes, and a real 18.16 counted
/// none of their parts as already sorted. Here the server orders the same ids itself.
#[tokio::test]
async fn random_sorted_ids_come_in_the_servers_order() {
    let ch = testkit::shared_clickhouse();
    let client = client_of(&ch.url());
    let mut source = IdSource::new(BenchIds::RandomSorted, 2_000);
    let ours: Vec<String> = (0..2_000).map(|i| source.id(i).to_string()).collect();
    // the ids in the order the generator drew them, for the server to sort
    let mut random = IdSource::new(BenchIds::Random, 2_000);
    let drawn: Vec<String> = (0..2_000).map(|i| random.id(i).to_string()).collect();
    assert_ne!(drawn, ours, "the drawn ids came sorted already");
    let list = drawn
        .iter()
        .map(|id| format!("toUUID('{id}')"))
        .collect::<Vec<_>>()
        .join(",");
    let servers: Vec<String> = client
        .query(&format!(
            "SELECT toString(id) FROM (SELECT arrayJoin([{list}]) AS id) ORDER BY id"
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(servers, ours);
}
