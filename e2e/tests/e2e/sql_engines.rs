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

/// The cluster form of the migrations (`schema::cluster_statements`: `<table>_local` tables and
/// Distributed tables over them), twice as a rerun would, on a current engine. On 18.16 the
/// pipeline crate's `cluster_schema` tests run them on a real two-shard cluster.
#[test]
fn cluster_migrations_run_on_a_current_clickhouse() {
    let mut statements = Vec::new();
    for run in 1..=2 {
        for m in pipeline::schema::MIGRATIONS {
            let stmts = pipeline::schema::cluster_statements(m.sql, "shipped", "pipeline")
                .unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
            for (i, sql) in stmts.into_iter().enumerate() {
                let name = format!(
                    "run {run}: cluster migration {} ({}) statement {}",
                    m.version,
                    m.name,
                    i + 1
                );
                statements.push(serde_json::json!({ "name": name, "sql": sql }));
            }
        }
    }
    // A session whose config declares the cluster: ClickHouse (26.9 as 18.16) refuses a
    // Distributed table over an unknown cluster (`CLUSTER_DOESNT_EXIST`).
    let report = crate::helpers::chdb_check(&["--cluster", "pipeline"], &statements);
    let version = report["version"].as_str().unwrap();
    assert_eq!(report["shards"], 2, "chdb did not read the cluster config");
    let failed: Vec<_> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "cluster statements failing on ClickHouse {version}: {failed:#?}"
    );
    let tables = report["tables"].as_array().unwrap();
    for table in ["commerce_events", "probe_results", "rejected_events"] {
        assert!(
            tables.contains(&serde_json::json!([table, "Distributed"])),
            "{table} is not Distributed on ClickHouse {version}: {tables:?}"
        );
    }
}
