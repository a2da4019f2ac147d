//! Every statement the project ships runs on ClickHouse 18.16 (the tests' server) and on a
//! current engine (chdb, in-process), because deployments run a current ClickHouse.

/// The reported day, and the maximal lines inserted on it.
const DAY: &str = "2026-01-15";
const LINES: u64 = 100_000;

/// (name, sql) of every migration statement, an insert of maximal lines, and every report
/// query over them, in order.
fn shipped_statements() -> Vec<(String, String)> {
    let mut out = crate::helpers::migration_statements();
    out.push((
        "largest lines".to_owned(),
        crate::helpers::largest_lines_insert(&format!("{DAY} 12:00:00"), LINES),
    ));
    // probes of every vantage, for the probe rollups' histograms to hold something
    out.push((
        "probes".to_owned(),
        format!(
            "INSERT INTO probe_results (event_id, occurred_at, received_at, region, store_id, \
                 target, up, status_code, response_time_ms, network_latency_ms, \
                 bandwidth_bytes_per_second, cpu_load, vantage_region, tls_handshake_ms, \
                 time_to_first_byte_ms) \
             SELECT generateUUIDv4(), toDateTime('{DAY} 00:00:00', 'UTC') + number * 7, \
                 toDateTime('{DAY} 00:00:00', 'UTC') + number * 7 + 1, toInt8(1 + number % 3), \
                 concat('store-', toString(number % 4)), 'home', toUInt8(number % 10 != 0), 200, \
                 toUInt32(number % 97), toUInt32(number % 13), number % 5 * 1000, \
                 (number % 10) / 10, toInt8(number % 4), toUInt32(number % 7), toUInt32(number % 11) \
             FROM numbers(1000)"
        ),
    ));
    // the day's rollups, built as the reporter builds them before it reads them
    for (name, sql) in reporter::rollup::BUILD {
        out.push((
            format!("rollup {name}"),
            reporter::rollup::render(sql, 1, DAY),
        ));
    }
    for (name, sql) in [
        ("base_state", reporter::rollup::BASE_STATE),
        ("built_state", reporter::rollup::BUILT_STATE),
    ] {
        out.push((
            format!("rollup {name}"),
            reporter::queries::render(sql, DAY),
        ));
    }
    out.push((
        "rollup build_rows".to_owned(),
        reporter::rollup::render(reporter::rollup::BUILD_ROWS, 1, DAY),
    ));
    out.push((
        "rollup record".to_owned(),
        reporter::rollup::record(DAY, Default::default(), 1, 0),
    ));
    // an hour's rollups for the dashboards (the hour of the largest lines), as `serve` builds
    // them, and the reads that decide which hours to build
    let hour = format!("{DAY} 12:00:00");
    for (name, sql) in reporter::rollup::BUILD_HOUR {
        out.push((
            format!("hourly rollup {name}"),
            reporter::rollup::render(sql, 1, &hour),
        ));
    }
    for (name, sql) in [
        ("hours_state", reporter::rollup::HOURS_STATE),
        ("hours_built", reporter::rollup::HOURS_BUILT),
    ] {
        out.push((
            format!("hourly rollup {name}"),
            reporter::queries::render(sql, &hour),
        ));
    }
    out.push((
        "hourly rollup record".to_owned(),
        reporter::rollup::record_hours(&[(hour, Default::default())], 1),
    ));
    // the day's conflict figures for the dashboards, as the report brings them up to date
    out.push((
        "conflicts window_state".to_owned(),
        reporter::rollup::window_state_query(DAY),
    ));
    out.push((
        "conflicts built_state".to_owned(),
        reporter::rollup::conflicts_built_query(DAY),
    ));
    out.push((
        "conflicts build".to_owned(),
        reporter::rollup::conflicts_statement(DAY, Default::default(), 1),
    ));
    for (name, sql) in reporter::queries::ALL {
        out.push((
            format!("report query {name}"),
            reporter::queries::render(sql, DAY),
        ));
    }
    out
}

#[tokio::test]
async fn shipped_sql_runs_on_clickhouse_18_16() {
    let (_, client) = crate::helpers::fresh_database("sql").await;
    for (name, sql) in shipped_statements() {
        client
            .query(&sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{name} fails on 18.16: {e}"));
    }
    // 1e5 lines of 1e12 units: 1e17 units, exact to the nano
    let revenue: String = client
        .query(&format!(
            "SELECT revenue FROM ({}) WHERE currency = 'JPY' AND purchases = {LINES}",
            reporter::queries::render(reporter::queries::REVENUE, DAY)
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        reporter::money::parse_nanos(&revenue),
        Some(crate::helpers::largest_lines_revenue(LINES) * 1_000_000_000)
    );
}

#[test]
fn shipped_sql_runs_on_a_current_clickhouse() {
    let statements: Vec<serde_json::Value> = shipped_statements()
        .into_iter()
        .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    let (version, results) = crate::helpers::run_on_chdb(&statements);
    let results = &results;
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "statements failing on ClickHouse {version}: {failed:#?}"
    );
    let revenue = results
        .iter()
        .find(|r| r["name"] == "report query revenue")
        .unwrap();
    let expected = crate::helpers::largest_lines_revenue(LINES);
    assert_eq!(
        revenue["output"].as_str().unwrap().trim(),
        format!("JPY\t{expected}\t{LINES}"),
        "the current engine prints decimals without trailing zeros"
    );
}

/// The replicated form of the migrations (`schema::replicated_statement`: `Replicated…MergeTree`
/// with the explicit ZooKeeper path and replica), one server and a shard of a cluster, on a
/// current engine. chdb has no ZooKeeper or Keeper, so it cannot create such a table: it
/// parses each statement (`EXPLAIN AST`) and must find the replicated engine with its two
/// arguments first; the non-replicated forms run for real above. On 18.16 the pipeline
/// crate's `replicated_schema` tests create them on real replicas.
#[test]
fn replicated_migrations_parse_on_a_current_clickhouse() {
    let mut statements = Vec::new();
    for m in pipeline::schema::MIGRATIONS {
        let single = pipeline::schema::statements(m.sql);
        let cluster = pipeline::schema::cluster_statements(m.sql, "shipped", "pipeline").unwrap();
        for (layout, stmts) in [("single", single), ("cluster", cluster)] {
            for (i, stmt) in stmts.iter().enumerate() {
                let sql = pipeline::schema::replicated_statement(stmt, "shipped");
                let name = format!("{layout} migration {} statement {}", m.version, i + 1);
                statements.push(serde_json::json!({ "name": name, "sql": format!("EXPLAIN AST {sql}"), "replicated": sql.contains("ENGINE = Replicated") }));
            }
        }
    }
    let (version, results) = crate::helpers::run_on_chdb(&statements);
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "replicated statements that do not parse on ClickHouse {version}: {failed:#?}"
    );
    let mut replicated = 0;
    for (statement, result) in statements.iter().zip(&results) {
        if statement["replicated"] == true {
            let ast = result["output"].as_str().unwrap();
            assert!(
                ast.contains("Function Replicated")
                    && ast.contains(r"Literal \'/clickhouse/tables/{shard}/shipped/"),
                "{}: {ast}",
                statement["name"]
            );
            replicated += 1;
        }
    }
    // migration 1's three tables, migration 2's two, migration 4's three and migration 5's
    // two, migration 6's one, migration 7's three, migrations 8's and 9's one each, in both
    // layouts
    assert_eq!(replicated, 32);
}

/// The cluster form of the migrations (`schema::cluster_statements`: `<table>_local` tables and
/// Distributed tables over them), twice as a rerun would, on a current engine. On 18.16 the
/// pipeline crate's `cluster_schema` tests run them on a real two-shard cluster.
#[test]
fn cluster_migrations_run_on_a_current_clickhouse() {
    let mut statements = Vec::new();
    for m in pipeline::schema::MIGRATIONS {
        let stmts = pipeline::schema::cluster_statements(m.sql, "shipped", "pipeline")
            .unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
        for (i, sql) in stmts.into_iter().enumerate() {
            let name = format!(
                "cluster migration {} ({}) statement {}",
                m.version,
                m.name,
                i + 1
            );
            statements.push(serde_json::json!({ "name": name, "sql": sql }));
        }
        // a rerun repeats the idempotent migrations and skips the others by their check
        if m.done_when.is_none() {
            for (i, sql) in pipeline::schema::cluster_statements(m.sql, "shipped", "pipeline")
                .unwrap()
                .into_iter()
                .enumerate()
            {
                let name = format!(
                    "rerun of cluster migration {} statement {}",
                    m.version,
                    i + 1
                );
                statements.push(serde_json::json!({ "name": name, "sql": sql }));
            }
        }
    }
    for m in pipeline::schema::MIGRATIONS {
        if let Some(check) = m.done_when {
            let name = format!("migration {} in place", m.version);
            statements.push(serde_json::json!({ "name": name, "sql": check }));
        }
    }
    // A session whose config declares the cluster: ClickHouse (26.9 as 18.16) refuses a
    // Distributed table over an unknown cluster (`CLUSTER_DOESNT_EXIST`).
    let report = crate::helpers::chdb_check(&["--cluster", "pipeline"], &statements);
    let version = report["version"].as_str().unwrap();
    assert_eq!(report["shards"], 2, "chdb did not read the cluster config");
    // The rerun's `ADD COLUMN`s find their columns: the migration runner counts exactly
    // that failure as applied (`schema::already_applied`), and so does this test.
    let sql_of = |name: &serde_json::Value| {
        statements.iter().find(|s| s["name"] == *name).unwrap()["sql"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let results = report["results"].as_array().unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .filter(|r| {
            let error = r["error"].as_str().unwrap_or_default();
            !(r["name"].as_str().unwrap().starts_with("rerun")
                && pipeline::schema::already_applied(&sql_of(&r["name"]), error))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "cluster statements failing on ClickHouse {version}: {failed:#?}"
    );
    for r in results
        .iter()
        .filter(|r| r["name"].as_str().unwrap().ends_with("in place"))
    {
        assert_eq!(r["output"].as_str().unwrap().trim(), "1", "{r}");
    }
    let tables = report["tables"].as_array().unwrap();
    for table in ["commerce_events", "probe_results", "rejected_events"] {
        assert!(
            tables.contains(&serde_json::json!([table, "Distributed"])),
            "{table} is not Distributed on ClickHouse {version}: {tables:?}"
        );
    }
}

/// Rows of migration 1 (two stores sharing each id on one day), then migration 2, on a
/// current engine, one server and one shard of a cluster: every row moves, column by
/// column, and both stores' events count. On 18.16 the pipeline crate's `cluster_schema`
/// tests move the same rows on a real server and a real two-shard cluster.
#[test]
fn migration_2_moves_rows_of_migration_1_on_a_current_clickhouse() {
    let rows = include_str!("../../../pipeline/tests/fixtures/rows_of_0001.sql");
    let [first, second, ..] = pipeline::schema::MIGRATIONS else {
        panic!("this test moves rows from migration 1 to migration 2")
    };
    let moved = |suffix: &str| {
        let checksum = |table: &str| {
            format!(
                "(SELECT (count(), sum(cityHash64(toString(event_id), store_id, occurred_at, \
                 received_at, toString(price), quantity, user_id))) FROM {table}{suffix})"
            )
        };
        vec![
            (
                "moved rows".to_owned(),
                format!(
                    "SELECT count(), uniqExact(store_id, event_id), \
                     countIf(event_id = toUUID('00000000-0000-4000-8000-000000000007')) \
                     FROM commerce_events{suffix} FINAL"
                ),
            ),
            (
                "moved every column".to_owned(),
                format!(
                    "SELECT {} = {}, (SELECT count() FROM probe_results{suffix} FINAL)",
                    checksum("commerce_events"),
                    checksum("commerce_events_0001")
                ),
            ),
        ]
    };
    for cluster in [false, true] {
        let mut statements: Vec<(String, String)> = Vec::new();
        let migration = |m: &pipeline::schema::Migration, statements: &mut Vec<_>| {
            let stmts = if cluster {
                pipeline::schema::cluster_statements(m.sql, "shipped", "pipeline").unwrap()
            } else {
                pipeline::schema::statements(m.sql)
            };
            for (i, sql) in stmts.into_iter().enumerate() {
                statements.push((format!("migration {} statement {}", m.version, i + 1), sql));
            }
        };
        migration(first, &mut statements);
        // A current engine collapses rows of one key within an insert block
        // (`optimize_on_insert`): under migration 1 it drops the second store's events as they
        // arrive, before any migration can save them. Off here so that the move itself is what
        // is checked.
        statements.push((
            "rows as 18.16 keeps them".to_owned(),
            "SET optimize_on_insert = 0".to_owned(),
        ));
        for sql in pipeline::schema::statements(rows) {
            // a cluster's rows are on its shards' local tables; this session is one shard
            let sql = if cluster {
                sql.replace(
                    "INSERT INTO commerce_events",
                    "INSERT INTO commerce_events_local",
                )
                .replace(
                    "INSERT INTO probe_results",
                    "INSERT INTO probe_results_local",
                )
            } else {
                sql
            };
            statements.push(("rows of migration 1".to_owned(), sql));
        }
        migration(second, &mut statements);
        statements.extend(moved(if cluster { "_local" } else { "" }));
        let statements: Vec<serde_json::Value> = statements
            .into_iter()
            .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
            .collect();
        let args: &[&str] = if cluster {
            &["--cluster", "pipeline"]
        } else {
            &[]
        };
        let report = crate::helpers::chdb_check(args, &statements);
        let version = report["version"].as_str().unwrap();
        let results = report["results"].as_array().unwrap();
        let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
        assert!(
            failed.is_empty(),
            "moving failed on ClickHouse {version} (cluster {cluster}): {failed:#?}"
        );
        let output = |name: &str| {
            let r = results.iter().find(|r| r["name"] == name).unwrap();
            r["output"].as_str().unwrap().trim().to_owned()
        };
        // 200 events of 200 identities, the shared id once per store
        assert_eq!(output("moved rows"), "200\t200\t2", "cluster {cluster}");
        assert_eq!(output("moved every column"), "1\t30", "cluster {cluster}");
    }
}

/// The consumer's Native blocks (`pipeline::native`), one row of each event table, read by
/// a current engine with the types their headers name, and inserted into the migrated
/// tables: every value reads back as the row had it (18.16: pipeline test
/// `native_and_rowbinary_inserts_of_the_same_rows_read_back_the_same`).
#[test]
fn native_blocks_load_on_a_current_clickhouse() {
    use pipeline::{
        native::{Block, NativeRow},
        rows::{CommerceRow, ProbeRow, RejectedRow},
    };
    fn block<R: NativeRow>(row: &R) -> bytes::Bytes {
        let mut block = Block::new::<R>();
        block.push(row);
        block.take()
    }
    let id = "f81d4fae-7dec-41d0-a765-00a0c91e6bf6".parse().unwrap();
    let at = 1_768_435_200; // 2026-01-15 00:00:00 UTC
    let blocks = [
        (
            "commerce_events",
            block(&CommerceRow {
                event_id: id,
                occurred_at: at,
                received_at: at + 1,
                region: 2,
                store_id: "store-1",
                r#type: 4,
                product_id: 7,
                category_id: 3,
                category_code: "electronics.phone",
                brand: "acme",
                seller_id: 11,
                currency: "EUR",
                price: 19_990_000_000,
                quantity: 2,
                user_id: u64::MAX,
                session_id: "session-1",
            }),
            "f81d4fae-7dec-41d0-a765-00a0c91e6bf6\t2026-01-15 00:00:00\t2026-01-15 00:00:01\tamerica\t\
             store-1\tpurchase\t7\t3\telectronics.phone\tacme\t11\tEUR\t19.99\t2\t\
             18446744073709551615\tsession-1",
        ),
        (
            "probe_results",
            block(&ProbeRow {
                event_id: id,
                occurred_at: at,
                received_at: at,
                region: 3,
                store_id: "store-2",
                target: "https://shop.example/",
                up: 1,
                status_code: 503,
                response_time_ms: 120,
                network_latency_ms: 30,
                bandwidth_bytes_per_second: 1_000_000,
                cpu_load: 0.25,
                vantage_region: 1,
                tls_handshake_ms: 12,
                time_to_first_byte_ms: 80,
            }),
            "f81d4fae-7dec-41d0-a765-00a0c91e6bf6\t2026-01-15 00:00:00\t2026-01-15 00:00:00\tasia\t\
             store-2\thttps://shop.example/\t1\t503\t120\t30\t1000000\t0.25\teurope\t12\t80",
        ),
        (
            "rejected_events",
            block(&RejectedRow {
                event_id: "not-a-uuid",
                occurred_at: 0,
                received_at: at,
                region: 0,
                store_id: "store-3",
                source: 2,
                reason: "bad",
                raw: b"raw\x01",
                delivery_count: 3,
                stream_entry_id: "1768435200000-0",
            }),
            "not-a-uuid\t1970-01-01 00:00:00\t2026-01-15 00:00:00\tunspecified\tstore-3\tconsumer\t\
             bad\traw\u{1}\t3\t1768435200000-0",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut statements: Vec<serde_json::Value> = crate::helpers::migration_statements()
        .into_iter()
        .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    for (table, bytes, _) in &blocks {
        let path = dir.path().join(format!("{table}.native"));
        std::fs::write(&path, bytes).unwrap();
        statements.push(serde_json::json!({
            "name": format!("insert {table}"),
            "sql": format!("INSERT INTO {table} SELECT * FROM file('{}', Native)", path.display()),
        }));
        statements.push(serde_json::json!({
            "name": format!("read {table}"),
            "sql": format!("SELECT * FROM {table}"),
        }));
    }
    let (version, results) = crate::helpers::run_on_chdb(&statements);
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "failing on ClickHouse {version}: {failed:#?}"
    );
    for (table, _, expected) in blocks {
        let read = results
            .iter()
            .find(|r| r["name"] == format!("read {table}"))
            .unwrap();
        assert_eq!(
            read["output"].as_str().unwrap().trim_end(),
            expected,
            "{table}"
        );
    }
}
