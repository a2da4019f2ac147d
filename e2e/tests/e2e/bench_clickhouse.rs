//! `simulator bench-clickhouse`, the ClickHouse reference `scripts/bench` quotes, on a real
//! ClickHouse 18.16: it loads every row, with the ids and in the format it was asked for,
//! into a scratch database that it drops at the end.

use std::collections::HashSet;

use clap::Parser;
use simulator::{bench::IdSource, config::BenchIds};

async fn run(
    ch_url: &str,
    database: &str,
    ids: &str,
    format: &str,
    rows: usize,
    singles: usize,
) -> serde_json::Value {
    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "bench-clickhouse",
        "--clickhouse-url",
        ch_url,
        "--database",
        database,
        "--rows",
        &rows.to_string(),
        "--single-inserts",
        &singles.to_string(),
        "--ids",
        ids,
        "--format",
        format,
        "--block-rows",
        "1000",
    ])
    .unwrap();
    let simulator::config::Command::BenchClickhouse(args) = settings.command else {
        unreachable!()
    };
    serde_json::from_str(&simulator::bench::clickhouse(&args).await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_clickhouse_reference_loads_its_rows_and_drops_its_database() {
    let ch = testkit::shared_clickhouse();
    let client = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false);
    for (ids, format, singles) in [
        ("random", "native", 0),
        ("random", "rowbinary", 0),
        ("random-sorted", "native", 0),
        ("sequential", "rowbinary", 20),
    ] {
        let database = testkit::unique_name("bench_raw");
        let result = run(&ch.url(), &database, ids, format, 5_000, singles).await;
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

#[test]
fn sequential_ids_ascend_and_random_ids_are_distinct_version_4_uuids() {
    let mut sequential = IdSource::new(BenchIds::Sequential, 1_000);
    let ids: Vec<_> = (0..1_000).map(|i| sequential.id(i)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // ClickHouse 18.16 orders UUIDs by their high 64 bits, then the low: the same high half
    // for all, so the low half, which counts, orders them
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

    // the same random ids, in the key's order
    let mut sorted = IdSource::new(BenchIds::RandomSorted, 1_000);
    let sorted: Vec<_> = (0..1_000).map(|i| sorted.id(i)).collect();
    assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        sorted.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}
