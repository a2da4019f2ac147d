//! Replicated mode (issue #18) against real ClickHouse 18.16 replicas coordinated by ZooKeeper
//! (`testkit::ReplicatedClickHouse`, one shard, two replicas): the migrations on every
//! replica, idempotent on each, migration 2's move of a migration-1 database, a replica down
//! at start, a replica added to a running deployment, and a non-replicated database refused.

use std::time::{Duration, Instant};

use clap::Parser;
use pipeline::config::ClickHouseArgs;
use pipeline::schema::{self, MigrationError};
use testkit::{ClickHouse, ReplicatedClickHouse};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

/// Replicated arguments for `database` over `urls`, as a consumer would get them.
fn args(urls: &str, database: &str) -> ClickHouseArgs {
    Cli::try_parse_from([
        "test",
        "--clickhouse-url",
        urls,
        "--clickhouse-database",
        database,
        "--clickhouse-replicated",
    ])
    .unwrap()
    .clickhouse
}

fn query(node: &ClickHouse, sql: &str) -> String {
    node.query(sql).unwrap()
}

/// Each event table's engine on `node`, `name engine` per line.
fn engines(node: &ClickHouse, database: &str) -> String {
    query(
        node,
        &format!(
            "SELECT name, engine FROM system.tables WHERE database = '{database}' \
             AND name IN ('commerce_events', 'probe_results', 'rejected_events', \
             'commerce_daily', 'audience_daily', 'rollup_builds', 'probe_daily', 'probe_minutes', \
             'conflicts_daily') ORDER BY name"
        ),
    )
}

/// Polls `sql` on `node` until it returns `want`.
fn eventually(node: &ClickHouse, sql: &str, want: &str) {
    let start = Instant::now();
    loop {
        let got = node.query(sql).unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{sql}: {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Migration 1 only, an event on one replica, then the rest: every replica gets
/// `Replicated…MergeTree` tables (the explicit path and replica; the rollups of migrations 4 and 5 too),
/// migration 2 moves the event on each, migration 3's `ALTER`, which reaches the other
/// replica through ZooKeeper, counts as applied there, and a second run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_replicated_tables_on_every_replica_and_repeat_as_no_ops() {
    let replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let nodes = replicas.nodes();
    let database = testkit::unique_name("replicated");
    let args = args(&replicas.urls(), &database);
    assert_eq!(schema::migrate_configured_to(&args, 1).await.unwrap(), [1]);
    query(
        &nodes[0],
        &format!(
            "INSERT INTO {database}.commerce_events (event_id, occurred_at, store_id) \
             VALUES ('5f0c7a52-58a4-4b4e-9d7a-0c7e3c1f2a9b', 1768435201, 'eu-1')"
        ),
    );
    let count = format!("SELECT count() FROM {database}.commerce_events FINAL");
    eventually(&nodes[1], &count, "1");

    assert_eq!(
        schema::migrate_configured(&args).await.unwrap(),
        [2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    for node in nodes {
        let engines = engines(node, &database);
        assert_eq!(
            engines
                .lines()
                .filter(|l| l.contains("\tReplicated"))
                .count(),
            9,
            "{engines}"
        );
        eventually(node, &count, "1");
        let create = query(node, &format!("SHOW CREATE TABLE {database}.probe_results"));
        assert!(
            create.contains(&format!(
                "ReplicatedReplacingMergeTree(\\'/clickhouse/tables/{{shard}}/{database}/probe_results_0002\\', \\'{{replica}}\\', received_at)"
            )),
            "{create}"
        );
        assert!(create.contains("time_to_first_byte_ms"), "{create}");
    }
    assert!(schema::migrate_configured(&args).await.unwrap().is_empty());
    // the moved event is the same row on both replicas, under its UUID
    for node in nodes {
        eventually(
            node,
            &format!("SELECT toString(event_id) FROM {database}.commerce_events FINAL"),
            "5f0c7a52-58a4-4b4e-9d7a-0c7e3c1f2a9b",
        );
    }
}

/// A replica down while the consumer starts is skipped (the consumer starts and loads
/// through the other); when it is back, the next start migrates it. A node that never had
/// the database (a replica added later) gets the tables as the other has them, and fetches
/// their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_at_start_is_migrated_when_back_and_catches_up() {
    let mut replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let database = testkit::unique_name("replicated");
    let args = args(&replicas.urls(), &database);
    tokio::task::block_in_place(|| replicas.node_mut(1).kill()).unwrap();
    assert_eq!(
        schema::migrate_configured(&args).await.unwrap(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    let nodes = replicas.nodes();
    query(
        &nodes[0],
        &format!(
            "INSERT INTO {database}.commerce_events (event_id, occurred_at, store_id) \
             VALUES ('5f0c7a52-58a4-4b4e-9d7a-0c7e3c1f2a9b', 1768435201, 'eu-1')"
        ),
    );
    tokio::task::block_in_place(|| replicas.node_mut(1).restart()).unwrap();
    let nodes = replicas.nodes();
    assert_eq!(engines(&nodes[1], &database), "");
    // the returning replica had no table: it gets the other's, with its migrations recorded
    assert!(schema::migrate_configured(&args).await.unwrap().is_empty());
    assert_eq!(engines(&nodes[1], &database), engines(&nodes[0], &database));
    eventually(
        &nodes[1],
        &format!("SELECT count() FROM {database}.commerce_events FINAL"),
        "1",
    );
    let every_version: Vec<String> = schema::MIGRATIONS
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    eventually(
        &nodes[1],
        &format!("SELECT DISTINCT version FROM {database}.schema_migrations ORDER BY version"),
        &every_version.join("\n"),
    );
    // both down: nothing to migrate is an error, not a silent start
    let mut replicas = replicas;
    tokio::task::block_in_place(|| {
        replicas.node_mut(0).kill()?;
        replicas.node_mut(1).kill()
    })
    .unwrap();
    let err = schema::migrate_configured(&args).await.unwrap_err();
    assert!(err.unreachable(), "{err}");
}

/// A database migrated before replication was switched on keeps its rows on one server:
/// replicated mode refuses it instead of loading into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_without_replicas_is_refused_in_replicated_mode() {
    let replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let node = &replicas.nodes()[0];
    let database = testkit::unique_name("single");
    let single = Cli::try_parse_from([
        "test",
        "--clickhouse-url",
        &node.url(),
        "--clickhouse-database",
        &database,
    ])
    .unwrap()
    .clickhouse;
    schema::migrate_configured(&single).await.unwrap();
    let err = schema::migrate_configured(&args(&node.url(), &database))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MigrationError::OnShard { source, .. }
            if matches!(**source, MigrationError::NotReplicated { .. })),
        "{err}"
    );
}
