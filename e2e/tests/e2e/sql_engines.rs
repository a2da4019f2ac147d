//! Every statement the project ships runs on ClickHouse 18.16 (the tests' server) and on a
//! current engine (chdb, in-process), because deployments run a current ClickHouse.

/// (name, sql) of every migration statement and every report query, in order.
fn shipped_statements() -> Vec<(String, String)> {
    let mut out = crate::helpers::migration_statements();
    for (name, sql) in reporter::queries::ALL {
        out.push((
            format!("report query {name}"),
            reporter::queries::render(sql, "2026-01-15"),
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
}
