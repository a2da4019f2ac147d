//! What the end-to-end tests share: starting the services in-process against the test
//! harness's servers, reading the stream, ClickHouse and S3 back, and the SQL checks run on
//! both ClickHouse generations. The tests themselves are in `tests/`: the `e2e` binary, and
//! `metrics` and `trace`, which have a binary each because they install process-wide state.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use fred::interfaces::{ClientLike, StreamsInterface};
use pipeline::{entry::Fields, proto::queue::QueuedBatch};

/// A gateway running in this process until dropped, with its stores file.
pub struct Gateway {
    pub addr: SocketAddr,
    server: gateway::Background,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Sends the shutdown signal and waits for the server to drain.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(self.server.shutdown().await?)
    }
}

/// Starts a gateway on a free port for the simulated fleet of `per_region` stores in each
/// region, their tokens derived from `secret` (`simulator run --token-secret`).
pub async fn start_fleet_gateway(
    redis_url: &str,
    stream_key: &str,
    per_region: usize,
    secret: &str,
) -> Gateway {
    let fleet = simulator::fleet::fleet(per_region, secret);
    start_gateway(
        redis_url,
        stream_key,
        &simulator::fleet::stores_file(&fleet),
        &[],
    )
    .await
}

/// Starts a gateway on a free port, with the given stores file text and extra flags.
pub async fn start_gateway(
    redis_url: &str,
    stream_key: &str,
    stores_toml: &str,
    extra: &[&str],
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let stores: PathBuf = dir.path().join("stores.toml");
    std::fs::write(&stores, stores_toml).unwrap();
    let mut args = vec![
        "gateway".to_owned(),
        "--stores-file".into(),
        stores.display().to_string(),
        "--redis-url".into(),
        redis_url.into(),
        "--stream-key".into(),
        stream_key.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let settings = gateway::Settings::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = gateway::Background::spawn(listener, settings).unwrap();
    Gateway {
        addr: server.addr(),
        server,
        _dir: dir,
    }
}

/// Consumer settings for the harness's servers, with extra flags.
pub fn consumer_settings(
    redis_url: &str,
    stream_key: &str,
    clickhouse_url: &str,
    database: &str,
    extra: &[&str],
) -> consumer::Settings {
    let mut args = vec![
        "consumer",
        "--redis-url",
        redis_url,
        "--stream-key",
        stream_key,
        "--clickhouse-url",
        clickhouse_url,
        "--clickhouse-database",
        database,
        "--consumer-name",
        "c1",
        "--batch-age",
        "200ms",
    ];
    args.extend_from_slice(extra);
    consumer::Settings::try_parse_from(args).unwrap()
}

/// Every batch in the stream, decoded, in stream order.
pub async fn stream_batches(redis_url: &str, stream_key: &str) -> Vec<QueuedBatch> {
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(redis_url).unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> = client
        .xrange_values(stream_key, "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| Fields::from_pairs(fields).decode().unwrap())
        .collect()
}

/// A time for simulated events: recent enough for the gateway, and at least 3 minutes
/// after midnight UTC so that every event of a run falls on the same day.
pub fn event_time_base() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let midnight = now - now.rem_euclid(86_400);
    (now - 30).max(midnight + 180)
}

/// The UTC date of a Unix second.
pub fn utc_date(unix: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .date()
}

/// A ClickHouse client for one database of the shared server.
pub fn clickhouse(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
}

/// Steps the consumer until `done` says so, at most `timeout`.
pub async fn consume_until<F, Fut>(
    worker: &mut consumer::Worker,
    timeout: Duration,
    mut done: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        worker.step().await?;
        if matches!(
            worker.flush().await?,
            consumer::Outcome::Flushed(_) | consumer::Outcome::Idle
        ) && done().await
        {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "consumer did not finish in {timeout:?}"
        );
    }
}

/// A report store on the test S3 server, with static credentials (SeaweedFS accepts any).
pub async fn report_store(endpoint: &str, bucket: &str) -> reporter::store::ReportStore {
    use aws_config::BehaviorVersion;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .load()
        .await;
    let args = reporter::config::S3Args {
        s3_bucket: bucket.to_owned(),
        s3_force_path_style: true,
        s3_create_bucket: false,
    };
    reporter::store::ReportStore::new(&config, &args.bucket())
        .await
        .unwrap()
}

/// Runs `{"name", "sql"}` statements in order on a current ClickHouse engine (chdb, through
/// `scripts/chdb_check.py`); returns the engine's version and one `{"name", "ok", "error"?}`
/// per statement. Fails unless the script ran, the engine is current (not 18.x) and every
/// statement has a result.
pub fn run_on_chdb(statements: &[serde_json::Value]) -> (String, Vec<serde_json::Value>) {
    let report = chdb_check(&[], statements);
    let version = report["version"].as_str().unwrap().to_owned();
    let results = report["results"].as_array().unwrap().clone();
    (version, results)
}

/// `scripts/chdb_check.py` with `args` (e.g. `--cluster NAME`) over `statements`: its whole
/// report (`version`, `results`, `tables`, and `shards` with `--cluster`), after checking
/// that the script ran, the engine is current (not 18.x) and every statement has a result.
pub fn chdb_check(args: &[&str], statements: &[serde_json::Value]) -> serde_json::Value {
    use std::{
        io::Write,
        process::{Command, Stdio},
    };
    let script = testkit::repo_root().join("scripts/chdb_check.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(statements).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chdb_check.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = report["version"].as_str().unwrap();
    assert!(
        !version.starts_with("18."),
        "chdb must be a current engine, got {version}"
    );
    assert_eq!(
        report["results"].as_array().unwrap().len(),
        statements.len()
    );
    report
}

/// (name, sql) of every migration statement, in the order they are applied.
pub fn migration_statements() -> Vec<(String, String)> {
    pipeline::schema::MIGRATIONS
        .iter()
        .flat_map(|m| {
            pipeline::schema::statements(m.sql)
                .into_iter()
                .enumerate()
                .map(move |(i, stmt)| {
                    (
                        format!("migration {} ({}) statement {}", m.version, m.name, i + 1),
                        stmt,
                    )
                })
        })
        .collect()
}

/// Purchases at the largest line total the validation rules accept (the largest price, a
/// quantity that reaches `MAX_LINE_TOTAL_UNITS`), `lines` of them in JPY at `at` (UTC,
/// `YYYY-MM-DD hh:mm:ss`):
/// an `INSERT` that runs on 18.16 and on a current engine. Their sum, `lines` × 1e12 units,
/// is far past what Int64 nanos hold; [`largest_lines_revenue`] is its exact text.
pub fn largest_lines_insert(at: &str, lines: u64) -> String {
    use pipeline::validate::{MAX_LINE_TOTAL_UNITS, MAX_PRICE_UNITS};
    format!(
        "INSERT INTO commerce_events (event_id, occurred_at, received_at, region, store_id, \
         type, product_id, category_id, category_code, brand, seller_id, currency, price, \
         quantity, user_id, session_id) \
         SELECT generateUUIDv4(), toDateTime('{at}', 'UTC'), toDateTime('{at}', 'UTC'), 'asia', 'asia-1', 'purchase', 1 + number % 7, \
         1, 'machines', 'b', 1, 'JPY', toDecimal64({MAX_PRICE_UNITS}, 9), {}, number + 1, 's' \
         FROM numbers({lines})",
        MAX_LINE_TOTAL_UNITS / MAX_PRICE_UNITS
    )
}

/// The exact sum of [`largest_lines_insert`]'s lines, in whole units.
pub fn largest_lines_revenue(lines: u64) -> i128 {
    i128::from(lines) * i128::from(pipeline::validate::MAX_LINE_TOTAL_UNITS)
}

/// A new, empty database on the shared ClickHouse, and a client bound to it.
pub async fn fresh_database(prefix: &str) -> (String, clickhouse::Client) {
    let ch = testkit::shared_clickhouse();
    let db = testkit::unique_name(prefix);
    clickhouse(&ch.url(), "default")
        .query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    let client = clickhouse(&ch.url(), &db);
    (db, client)
}
