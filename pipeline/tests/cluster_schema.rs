//! Cluster mode against a real two-shard ClickHouse 18.16 cluster (`testkit::ClickHouseCluster`):
//! migrations on every shard, inserts through the Distributed tables with the client of a
//! cluster-configured `ClickHouseArgs`, duplicates of one event on one shard only.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use clap::Parser;
use pipeline::config::{ClickHouseArgs, ClickHouseArgsError};
use pipeline::rows::{
    COMMERCE_TABLE, CommerceRow, PROBE_TABLE, ProbeRow, REJECTED_TABLE, RejectSource, RejectedRow,
};
use pipeline::schema::{self, MigrationError};
use testkit::ClickHouseCluster;

/// One cluster for every test of this binary; each test uses its own database.
fn cluster() -> &'static ClickHouseCluster {
    static SHARED: OnceLock<ClickHouseCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        ClickHouseCluster::start()
            .unwrap_or_else(|err| panic!("failed to start clickhouse cluster: {err:#}"))
    })
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

fn parse(args: &[&str]) -> Result<ClickHouseArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
        .map(|cli| cli.clickhouse)
}

/// Arguments for `database` on the shared cluster, as a service would get them.
fn cluster_args(database: &str) -> ClickHouseArgs {
    let cluster = cluster();
    let urls: Vec<String> = cluster.shards().iter().map(|s| s.url()).collect();
    parse(&[
        "--clickhouse-url",
        &urls[0],
        "--clickhouse-database",
        database,
        "--clickhouse-cluster",
        cluster.name(),
        "--clickhouse-shard-urls",
        &urls.join(","),
    ])
    .unwrap()
}

/// `sql` on shard `i`, one output line per row.
fn on_shard(i: usize, sql: &str) -> Vec<String> {
    let out = cluster().shards()[i].query(sql).unwrap();
    out.lines().map(str::to_owned).collect()
}

/// The `i`th test event id, a canonical UUID.
fn id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn commerce_row(event_id: &str, received_at: u32) -> CommerceRow<'static> {
    CommerceRow {
        event_id: event_id.parse().unwrap(),
        occurred_at: 1_768_435_200, // 2026-01-15 00:00:00 UTC
        received_at,
        region: 1,
        store_id: "store-1",
        r#type: 4,
        product_id: 7,
        category_id: 3,
        category_code: "electronics.phone",
        brand: "acme",
        seller_id: 11,
        currency: "EUR",
        price: 19_990_000_000,
        quantity: 1,
        user_id: 42,
        session_id: "session-1",
    }
}

#[tokio::test]
async fn migrating_a_cluster_twice_creates_local_and_distributed_tables_on_every_shard() {
    let db = testkit::unique_name("cluster_migrate");
    let args = cluster_args(&db);

    assert_eq!(
        schema::migrate_configured(&args).await.unwrap(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!(
        schema::migrate_configured(&args).await.unwrap(),
        Vec::<u32>::new(),
        "the second run applies nothing"
    );
    // A run that died before recording migration 3 runs its ALTERs again: each fails only
    // because its column is there, which the runner counts as applied.
    let m3 = schema::MIGRATIONS.iter().find(|m| m.version == 3).unwrap();
    for shard in args.shard_clients() {
        let shard = shard.with_database(&db);
        for stmt in schema::cluster_statements(m3.sql, &db, cluster().name()).unwrap() {
            let err = shard.query(&stmt).execute().await.unwrap_err().to_string();
            assert!(schema::already_applied(&stmt, &err), "{stmt}: {err}");
        }
    }

    for shard in 0..2 {
        let tables = on_shard(
            shard,
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name"
            ),
        );
        assert_eq!(
            tables,
            [
                "arrivals_minutes\tDistributed",
                "arrivals_minutes_local\tReplacingMergeTree",
                "audience_daily\tDistributed",
                "audience_daily_local\tReplacingMergeTree",
                "category_hourly\tDistributed",
                "category_hourly_local\tReplacingMergeTree",
                "commerce_daily\tDistributed",
                "commerce_daily_local\tReplacingMergeTree",
                "commerce_events\tDistributed",
                "commerce_events_0001_local\tReplacingMergeTree",
                "commerce_events_local\tReplacingMergeTree",
                "commerce_hourly\tDistributed",
                "commerce_hourly_local\tReplacingMergeTree",
                "conflicts_daily\tDistributed",
                "conflicts_daily_local\tReplacingMergeTree",
                "probe_daily\tDistributed",
                "probe_daily_local\tReplacingMergeTree",
                "probe_hourly\tDistributed",
                "probe_hourly_local\tReplacingMergeTree",
                "probe_minutes\tDistributed",
                "probe_minutes_local\tReplacingMergeTree",
                "probe_results\tDistributed",
                "probe_results_0001_local\tReplacingMergeTree",
                "probe_results_local\tReplacingMergeTree",
                "rejected_events\tDistributed",
                "rejected_events_local\tMergeTree",
                "rollup_builds\tDistributed",
                "rollup_builds_local\tReplacingMergeTree",
                "rollup_hour_builds\tDistributed",
                "rollup_hour_builds_local\tReplacingMergeTree",
                "schema_migrations\tReplacingMergeTree",
            ],
            "shard {}",
            shard + 1
        );
        assert_eq!(
            on_shard(
                shard,
                &format!("SELECT version, name FROM {db}.schema_migrations FINAL ORDER BY version")
            ),
            [
                "1\tevents",
                "2\tidentity",
                "3\tprobe_phases",
                "4\trollups",
                "5\tprobe_rollups",
                "6\tconflict_rollup",
                "7\thourly_rollups",
                "8\tarrival_rollup",
                "9\tcategory_rollup",
                "10\tbuild_rows"
            ],
            "shard {}",
            shard + 1
        );
        // the local table is the single-server table under another name
        let create = on_shard(
            shard,
            &format!("SHOW CREATE TABLE {db}.commerce_events_local"),
        );
        let create = create.join("\n");
        assert!(
            create.contains("ReplacingMergeTree(received_at)")
                && create.contains("ORDER BY (toDate(occurred_at), event_id, store_id)")
                && create.contains("event_id UUID"),
            "{create}"
        );
        let create = on_shard(shard, &format!("SHOW CREATE TABLE {db}.commerce_events")).join("\n");
        assert!(
            create.contains(&format!(
                "Distributed(\\'pipeline\\', \\'{db}\\', \\'commerce_events_local\\', cityHash64(toString(event_id)))"
            )),
            "{create}"
        );
    }
}

#[tokio::test]
async fn rows_spread_over_the_shards_and_each_event_counts_once_with_final() {
    let db = testkit::unique_name("cluster_insert");
    let args = cluster_args(&db);
    schema::migrate_configured(&args).await.unwrap();
    let client = args.client();

    let ids: Vec<String> = (0..250).map(id).collect();
    // first insert: events 0..200
    let mut insert = client
        .insert::<CommerceRow<'_>>(COMMERCE_TABLE)
        .await
        .unwrap();
    for id in &ids[..200] {
        insert
            .write(&commerce_row(id, 1_768_435_201))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    // second insert, as after a store's retry or a redelivered entry: events 0..10 again, with
    // a later received_at, and the new events 200..250
    let mut insert = client
        .insert::<CommerceRow<'_>>(COMMERCE_TABLE)
        .await
        .unwrap();
    for id in ids[..10].iter().chain(&ids[200..]) {
        insert
            .write(&commerce_row(id, 1_768_435_300))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    // insert_distributed_sync=1: once the inserts returned, every row is in a shard's local
    // table, none is waiting in a Distributed table's queue
    let local_counts: Vec<u64> = (0..2)
        .map(|i| {
            on_shard(
                i,
                &format!("SELECT count() FROM {db}.commerce_events_local"),
            )[0]
            .parse()
            .unwrap()
        })
        .collect();
    assert_eq!(local_counts.iter().sum::<u64>(), 260, "{local_counts:?}");
    assert!(
        local_counts.iter().all(|&n| n > 0),
        "rows on both shards: {local_counts:?}"
    );

    // each event id is on exactly one shard, both copies of a duplicated one included
    let on: Vec<BTreeSet<String>> = (0..2)
        .map(|i| {
            on_shard(
                i,
                &format!("SELECT DISTINCT event_id FROM {db}.commerce_events_local"),
            )
            .into_iter()
            .collect()
        })
        .collect();
    assert!(on[0].is_disjoint(&on[1]), "an event id on both shards");
    assert_eq!(on[0].len() + on[1].len(), 250);
    for (i, id) in ids[..10].iter().enumerate() {
        let shard = usize::from(on[1].contains(id));
        assert_eq!(
            on_shard(
                shard,
                &format!("SELECT count() FROM {db}.commerce_events_local WHERE event_id = '{id}'")
            ),
            ["2"],
            "duplicate {i} has both copies on shard {}",
            shard + 1
        );
    }

    // queries through the Distributed table, as the reporter's
    let count = |sql: String| {
        let client = client.clone();
        async move { client.query(&sql).fetch_one::<u64>().await.unwrap() }
    };
    assert_eq!(
        count(format!("SELECT count() FROM {COMMERCE_TABLE}")).await,
        260
    );
    assert_eq!(
        count(format!("SELECT count() FROM {COMMERCE_TABLE} FINAL")).await,
        250,
        "FINAL counts each event once"
    );
    assert_eq!(
        count(format!(
            "SELECT count() FROM {COMMERCE_TABLE} FINAL WHERE received_at = 1768435300"
        ))
        .await,
        60,
        "the later copy of each duplicate is the one kept"
    );
}

#[tokio::test]
async fn the_client_waits_for_every_shard_so_an_insert_fails_while_one_is_down() {
    // its own cluster: this test stops a shard
    let mut cluster = ClickHouseCluster::start().unwrap();
    let db = testkit::unique_name("cluster_down");
    let urls: Vec<String> = cluster.shards().iter().map(|s| s.url()).collect();
    let args = parse(&[
        "--clickhouse-url",
        &urls[0],
        "--clickhouse-database",
        &db,
        "--clickhouse-cluster",
        cluster.name(),
        "--clickhouse-shard-urls",
        &urls.join(","),
    ])
    .unwrap();
    schema::migrate_configured(&args).await.unwrap();
    let client = args.client();
    assert_eq!(
        client
            .query("SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'")
            .fetch_one::<String>()
            .await
            .unwrap(),
        "1"
    );

    cluster.shard_mut(1).stop().unwrap();
    let ids: Vec<String> = (0..50).map(id).collect();
    let insert_all = |client: clickhouse::Client| {
        let ids = &ids;
        async move {
            let mut insert = client.insert::<CommerceRow<'_>>(COMMERCE_TABLE).await?;
            for id in ids {
                insert.write(&commerce_row(id, 1_768_435_201)).await?;
            }
            insert.end().await
        }
    };
    // the consumer acknowledges after the insert returns: it must not return Ok while some
    // rows only wait in shard 1's queue for shard 2
    assert!(
        insert_all(client).await.is_err(),
        "an insert succeeded with a shard down"
    );
    // the control: without the setting ClickHouse accepts the rows and forwards them later
    let asynchronous = args.server_client().with_database(&db);
    insert_all(asynchronous).await.unwrap();
}

#[tokio::test]
async fn probes_and_rejected_rows_insert_through_their_distributed_tables() {
    let db = testkit::unique_name("cluster_other");
    let args = cluster_args(&db);
    schema::migrate_configured(&args).await.unwrap();
    let client = args.client();

    let ids: Vec<String> = (0..40).map(id).collect();
    let mut probes = client.insert::<ProbeRow<'_>>(PROBE_TABLE).await.unwrap();
    for id in ids.iter().chain(&ids[..5]) {
        probes
            .write(&ProbeRow {
                event_id: id.parse().unwrap(),
                occurred_at: 1_768_435_200,
                received_at: 1_768_435_201,
                region: 2,
                store_id: "store-1",
                target: "checkout",
                up: 1,
                status_code: 200,
                response_time_ms: 120,
                network_latency_ms: 30,
                bandwidth_bytes_per_second: 1_000_000,
                cpu_load: 0.5,
                vantage_region: 3,
                tls_handshake_ms: 40,
                time_to_first_byte_ms: 90,
            })
            .await
            .unwrap();
    }
    probes.end().await.unwrap();

    let entries: Vec<String> = (0..40).map(|i| format!("1768435200000-{i}")).collect();
    let mut rejected = client
        .insert::<RejectedRow<'_>>(REJECTED_TABLE)
        .await
        .unwrap();
    for entry in &entries {
        rejected
            .write(&RejectedRow {
                event_id: "",
                occurred_at: 0,
                received_at: 1_768_435_200,
                region: 0,
                store_id: "",
                source: RejectSource::Consumer as i8,
                reason: "undecodable stream entry",
                raw: b"\xff\x00",
                delivery_count: 1,
                stream_entry_id: entry,
            })
            .await
            .unwrap();
    }
    rejected.end().await.unwrap();

    let count = |sql: String| {
        let client = client.clone();
        async move { client.query(&sql).fetch_one::<u64>().await.unwrap() }
    };
    assert_eq!(
        count(format!("SELECT count() FROM {PROBE_TABLE}")).await,
        45
    );
    assert_eq!(
        count(format!("SELECT count() FROM {PROBE_TABLE} FINAL")).await,
        40
    );
    // migration 3's columns, added to the local tables and to the Distributed one
    assert_eq!(
        count(format!(
            "SELECT count() FROM {PROBE_TABLE} FINAL WHERE vantage_region = 'asia' \
             AND tls_handshake_ms = 40 AND time_to_first_byte_ms = 90"
        ))
        .await,
        40
    );
    assert_eq!(
        count(format!("SELECT count() FROM {REJECTED_TABLE}")).await,
        40
    );
    for table in ["probe_results_local", "rejected_events_local"] {
        for shard in 0..2 {
            let n: u64 = on_shard(shard, &format!("SELECT count() FROM {db}.{table}"))[0]
                .parse()
                .unwrap();
            assert!(n > 0, "{table} has rows on shard {}", shard + 1);
        }
    }
}

#[tokio::test]
async fn a_database_migrated_for_one_server_is_refused_in_cluster_mode() {
    let db = testkit::unique_name("cluster_single");
    let args = cluster_args(&db);
    let shard1 = &args.shard_clients()[0];
    schema::migrate(shard1, &db).await.unwrap();

    let err = schema::migrate_configured(&args).await.unwrap_err();
    let MigrationError::OnShard { shard: 1, source } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(
        matches!(**source, MigrationError::NotDistributed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not Distributed"), "{err}");
}

#[test]
fn cluster_and_shard_urls_go_together() {
    // on the command line, clap refuses one without the other
    let err = parse(&["--clickhouse-shard-urls", "http://a:8123,http://b:8123"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(err.to_string().contains("--clickhouse-cluster"), "{err}");
    let err = parse(&["--clickhouse-cluster", "pipeline"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(err.to_string().contains("--clickhouse-shard-urls"), "{err}");

    // neither: one server, as before
    let single = parse(&[]).unwrap();
    assert_eq!(single.validate(), Ok(()));
    assert_eq!(single.cluster(), None);
    assert!(single.shard_clients().is_empty());

    // both: split on commas
    let both = parse(&[
        "--clickhouse-cluster",
        "pipeline",
        "--clickhouse-shard-urls",
        "http://a:8123,http://b:8123",
    ])
    .unwrap();
    assert_eq!(both.validate(), Ok(()));
    assert_eq!(both.cluster(), Some("pipeline"));
    assert_eq!(
        both.clickhouse_shard_urls,
        ["http://a:8123", "http://b:8123"]
    );
    assert_eq!(both.shard_clients().len(), 2);

    // arguments built in code are checked by validate(), and by migrate_configured
    let mut args = single.clone();
    args.clickhouse_shard_urls = vec!["http://a:8123".into()];
    assert_eq!(
        args.validate(),
        Err(ClickHouseArgsError::ShardUrlsWithoutCluster)
    );
    let mut args = single.clone();
    args.clickhouse_cluster = Some("pipeline".into());
    assert_eq!(
        args.validate(),
        Err(ClickHouseArgsError::ClusterWithoutShardUrls)
    );
    let message = args.validate().unwrap_err().to_string();
    assert!(message.contains("CLICKHOUSE_SHARD_URLS"), "{message}");
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(schema::migrate_configured(&args))
        .unwrap_err();
    assert!(
        matches!(
            err,
            MigrationError::Args(ClickHouseArgsError::ClusterWithoutShardUrls)
        ),
        "{err}"
    );
    let err = parse(&[
        "--clickhouse-cluster",
        "pipeline",
        "--clickhouse-shard-urls",
        "http://a:8123,",
    ])
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(err, ClickHouseArgsError::Empty);
}

/// The same rules apply to the environment fallbacks. Environment variables are process-wide,
/// so the check runs in a child process: this test binary, rerun for this test only.
#[test]
fn cluster_and_shard_urls_from_the_environment_go_together() {
    const CHILD: &str = "PIPELINE_CLUSTER_ENV_CHILD";
    match std::env::var(CHILD).as_deref() {
        Ok("shard_urls_only") => {
            let err = parse(&[]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
            return;
        }
        Ok("both") => {
            let args = parse(&[]).unwrap();
            assert_eq!(args.cluster(), Some("pipeline"));
            assert_eq!(
                args.clickhouse_shard_urls,
                ["http://a:8123", "http://b:8123"]
            );
            return;
        }
        _ => {}
    }
    for (case, vars) in [
        (
            "shard_urls_only",
            &[("CLICKHOUSE_SHARD_URLS", "http://a:8123,http://b:8123")][..],
        ),
        (
            "both",
            &[
                ("CLICKHOUSE_SHARD_URLS", "http://a:8123,http://b:8123"),
                ("CLICKHOUSE_CLUSTER", "pipeline"),
            ][..],
        ),
    ] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cluster_and_shard_urls_from_the_environment_go_together",
                "--quiet",
            ])
            .env(CHILD, case)
            .env_remove("CLICKHOUSE_CLUSTER")
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "case {case}");
    }
}

/// Rows as migration 1 stored them (`event_id` text), in plain SQL because the row types
/// follow the latest schema: 100 ids, each used by two stores on the same day, at the largest
/// line total, and 30 probes. Shared with the e2e test that runs the move on chdb.
const ROWS_OF_0001: &str = include_str!("fixtures/rows_of_0001.sql");

/// A checksum of every column of every row of an event table, with the id as text so that
/// a table of migration 1 and one of migration 2 compare.
fn checksum(table: &str) -> String {
    let columns = if table.contains("probe_results") {
        "store_id, occurred_at, received_at, toString(region), target, up, status_code, \
         response_time_ms, network_latency_ms, bandwidth_bytes_per_second, cpu_load"
    } else {
        "store_id, occurred_at, received_at, toString(region), toString(type), product_id, \
         category_id, category_code, brand, seller_id, currency, toString(price), quantity, \
         user_id, session_id"
    };
    format!("SELECT count(), sum(cityHash64(toString(event_id), {columns})) FROM {table}")
}

async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.unwrap()
}

/// What a database of migration 1 filled with the rows above holds after migration 2,
/// through `client` (the tables services use).
async fn check_moved(client: &clickhouse::Client) {
    assert_eq!(
        count(client, "SELECT count() FROM commerce_events").await,
        200
    );
    // migration 1 keyed by (day, event_id) and so merged the two stores' events with FINAL;
    // migration 2 keeps both
    assert_eq!(
        count(client, "SELECT count() FROM commerce_events FINAL").await,
        200
    );
    assert_eq!(
        count(client, "SELECT count() FROM probe_results FINAL").await,
        30
    );
    let shared = "SELECT count() FROM commerce_events FINAL \
                  WHERE event_id = toUUID('00000000-0000-4000-8000-000000000007')";
    assert_eq!(
        count(client, shared).await,
        2,
        "both stores keep the shared id"
    );
    let revenue: String = client
        .query("SELECT toString(sum(toDecimal128(price, 9) * quantity)) FROM commerce_events FINAL")
        .fetch_one()
        .await
        .unwrap();
    // 200 lines of 1e12 units
    assert!(revenue.starts_with("200000000000000"), "{revenue}");
}

/// A database of migration 1 with the rows above; `FINAL` shows the bug migration 2 fixes.
async fn fill_0001(client: &clickhouse::Client) {
    for sql in schema::statements(ROWS_OF_0001) {
        client.query(&sql).execute().await.unwrap();
    }
    assert_eq!(
        count(client, "SELECT count() FROM commerce_events FINAL").await,
        100,
        "under migration 1 the second store's events replace the first's"
    );
}

/// A database of migration 1 with the rows above on the shared server: the server, the
/// database's name, a client without and one with the database.
async fn single_server_of_0001(
    prefix: &str,
) -> (
    &'static testkit::ClickHouse,
    String,
    clickhouse::Client,
    clickhouse::Client,
) {
    let ch = testkit::shared_clickhouse();
    let db = testkit::unique_name(prefix);
    let server = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false);
    assert_eq!(schema::migrate_to(&server, &db, 1).await.unwrap(), [1]);
    let client = server.clone().with_database(&db);
    fill_0001(&client).await;
    (ch, db, server, client)
}

#[tokio::test]
async fn migration_2_moves_a_single_server_database_of_migration_1_without_losing_rows() {
    let (ch, db, server, client) = single_server_of_0001("move_single").await;
    let before = ch
        .query(&format!(
            "{} FORMAT TSV",
            checksum(&format!("{db}.commerce_events"))
        ))
        .unwrap();
    let probes = ch
        .query(&format!(
            "{} FORMAT TSV",
            checksum(&format!("{db}.probe_results"))
        ))
        .unwrap();

    assert_eq!(schema::migrate_to(&server, &db, 2).await.unwrap(), [2]);
    check_moved(&client).await;
    // every row, column by column, and the old tables stay for the operator to drop
    for (table, expected) in [("commerce_events", &before), ("probe_results", &probes)] {
        for t in [table.to_owned(), format!("{table}_0001")] {
            let sum = ch
                .query(&format!("{} FORMAT TSV", checksum(&format!("{db}.{t}"))))
                .unwrap();
            assert_eq!(&sum, expected, "{t}");
        }
    }
    assert!(
        schema::migrate_to(&server, &db, 2)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_migration_2_left_unrecorded_is_recorded_without_a_second_copy() {
    let (_, db, server, client) = single_server_of_0001("move_again").await;
    // a run that died after the RENAME, before recording the version
    for stmt in schema::statements(schema::MIGRATIONS[1].sql) {
        client.query(&stmt).execute().await.unwrap();
    }
    assert_eq!(schema::migrate_to(&server, &db, 2).await.unwrap(), [2]);
    check_moved(&client).await;
    let versions: Vec<u32> = client
        .query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(versions, [1, 2]);
}

#[tokio::test]
async fn migration_2_moves_a_cluster_of_migration_1_without_losing_rows() {
    let db = testkit::unique_name("move_cluster");
    let args = cluster_args(&db);
    assert_eq!(schema::migrate_configured_to(&args, 1).await.unwrap(), [1]);
    let client = args.client();
    fill_0001(&client).await;
    let sums = |table: &str| -> Vec<Vec<String>> {
        (0..2)
            .map(|i| {
                on_shard(
                    i,
                    &format!("{} FORMAT TSV", checksum(&format!("{db}.{table}"))),
                )
            })
            .collect()
    };
    let commerce = sums("commerce_events_local");
    let probes = sums("probe_results_local");
    assert!(
        commerce.iter().all(|s| !s[0].starts_with("0\t")),
        "both shards hold rows: {commerce:?}"
    );

    assert_eq!(schema::migrate_configured_to(&args, 2).await.unwrap(), [2]);
    check_moved(&client).await;
    // each shard kept its own rows, every column of them, and the moved-away tables
    assert_eq!(sums("commerce_events_local"), commerce);
    assert_eq!(sums("commerce_events_0001_local"), commerce);
    assert_eq!(sums("probe_results_local"), probes);
    assert_eq!(sums("probe_results_0001_local"), probes);
    assert!(
        schema::migrate_configured_to(&args, 2)
            .await
            .unwrap()
            .is_empty()
    );

    // a later copy of a migrated event goes to the shard that holds the first, where FINAL
    // collapses it: placement by the id's text did not change
    let mut insert = client
        .insert::<CommerceRow<'_>>(COMMERCE_TABLE)
        .await
        .unwrap();
    let mut row = commerce_row(&id(7), 1_768_471_300);
    row.store_id = "store-0";
    row.occurred_at = 1_768_471_200; // 2026-01-15 10:00:00
    insert.write(&row).await.unwrap();
    insert.end().await.unwrap();
    let copies: Vec<String> = (0..2)
        .map(|i| {
            on_shard(
                i,
                &format!(
                    "SELECT count() FROM {db}.commerce_events_local \
                     WHERE event_id = toUUID('{}') AND store_id = 'store-0'",
                    id(7)
                ),
            )[0]
            .clone()
        })
        .collect();
    assert!(copies == ["2", "0"] || copies == ["0", "2"], "{copies:?}");
    assert_eq!(
        count(&client, "SELECT count() FROM commerce_events FINAL").await,
        200
    );
}

#[tokio::test]
async fn two_consumers_starting_at_once_both_migrate_a_database_of_migration_1() {
    let (_, db, server, client) = single_server_of_0001("move_race").await;
    // whichever RENAME comes second fails, and its run finds the migration in place
    // 18.16 can deadlock here (schema.rs, module doc): fail with that, not hang the run
    let both = async { tokio::join!(schema::migrate(&server, &db), schema::migrate(&server, &db)) };
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(180), both)
        .await
        .expect("two migration runs at once deadlocked 18.16 (schema.rs, module doc)");
    a.unwrap();
    b.unwrap();
    // both may have copied before either renamed: the copies collapse
    assert_eq!(
        count(&client, "SELECT count() FROM commerce_events FINAL").await,
        200
    );
    assert_eq!(
        count(&client, "SELECT count() FROM probe_results FINAL").await,
        30
    );
    assert!(
        schema::migrate_to(&server, &db, 2)
            .await
            .unwrap()
            .is_empty()
    );
}
