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

/// Runs `statements` on chdb in a session whose config declares the cluster `pipeline` (two
/// shards on 127.0.0.1 ports that nothing listens on: creating a Distributed table checks the
/// cluster exists but connects to no shard). scripts/chdb_check.py cannot be used: its
/// session has no `<remote_servers>`, and ClickHouse (26.9 as 18.16) refuses to create a
/// `Distributed(…)` table over an unknown cluster (`CLUSTER_DOESNT_EXIST`).
const CHDB_CLUSTER_CHECK: &str = r#"
import json, os, sys, tempfile
from chdb import session

statements = json.load(sys.stdin)
with tempfile.TemporaryDirectory() as tmp:
    config = os.path.join(tmp, "config.xml")
    with open(config, "w") as f:
        f.write("<clickhouse><remote_servers><pipeline>"
                "<shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>"
                "<shard><replica><host>127.0.0.1</host><port>2</port></replica></shard>"
                "</pipeline></remote_servers></clickhouse>")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    s = session.Session(data + "?config-file=" + config)
    version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
    shards = str(s.query("SELECT count() FROM system.clusters WHERE cluster = 'pipeline'", "CSV")).strip()
    s.query("CREATE DATABASE IF NOT EXISTS shipped")
    s.query("USE shipped")
    results = []
    for item in statements:
        try:
            s.query(item["sql"], "CSV")
            results.append({"name": item["name"], "ok": True})
        except Exception as e:
            results.append({"name": item["name"], "ok": False, "error": str(e)})
    engines = str(s.query("SELECT name, engine FROM system.tables WHERE database = 'shipped' ORDER BY name", "CSV"))
    s.close()
json.dump({"version": version, "shards": shards, "results": results, "engines": engines}, sys.stdout)
"#;

/// The cluster form of the migrations (`schema::cluster_statements`: `<table>_local` tables and
/// Distributed tables over them), twice as a rerun would, on a current engine. On 18.16 the
/// pipeline crate's `cluster_schema` tests run them on a real two-shard cluster.
#[test]
fn cluster_migrations_run_on_a_current_clickhouse() {
    use std::{
        io::Write,
        process::{Command, Stdio},
    };
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
    let mut child = Command::new("python3")
        .args(["-c", CHDB_CLUSTER_CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&statements).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chdb cluster check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = report["version"].as_str().unwrap();
    assert!(!version.starts_with("18."), "chdb must be a current engine");
    assert_eq!(
        report["shards"], "2",
        "chdb did not read the cluster config"
    );
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
    let engines = report["engines"].as_str().unwrap();
    for table in ["commerce_events", "probe_results", "rejected_events"] {
        assert!(
            engines.contains(&format!("\"{table}\",\"Distributed\"")),
            "{table} is not Distributed on ClickHouse {version}: {engines}"
        );
    }
}
