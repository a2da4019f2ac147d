//! The harness against the real servers: each one starts, does real work, and survives the
//! restarts that other crates' crash tests rely on

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{
    ClickHouse, Redis, RedisOptions, S3, eventually, shared_clickhouse, shared_redis, shared_s3,
    unique_bucket, unique_name,
};

/// Set in the environment of the helper process of `watchdog_kills_servers_of_a_killed_test`.
const HELPER_ENV: &str = "TESTKIT_WATCHDOG_HELPER";

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[test]
fn redis_sets_and_gets() {
    let redis = shared_redis();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    let key = unique_name("harness");
    assert_eq!(redis.cli(&["SET", &key, "hello"]).unwrap(), "OK");
    assert_eq!(redis.cli(&["GET", &key]).unwrap(), "hello");
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "appendonly"]).unwrap(),
        "appendonly\nyes"
    );
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "appendfsync"]).unwrap(),
        "appendfsync\neverysec"
    );
}

#[test]
fn redis_error_reply_is_an_error() {
    let err = shared_redis().cli(&["INCR", "a", "b"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("wrong number of arguments"),
        "{err:#}"
    );
}

#[test]
fn shared_servers_are_started_once() {
    assert!(std::ptr::eq(shared_redis(), shared_redis()));
    assert_eq!(shared_redis().port(), shared_redis().port());
}

#[test]
fn redis_kill_and_restart_keeps_aof_data_written_with_appendfsync_always() {
    let mut redis = Redis::start_with(RedisOptions {
        appendfsync_always: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let port = redis.port();
    redis.cli(&["XADD", "events", "*", "kind", "view"]).unwrap();
    redis.cli(&["SET", "counter", "41"]).unwrap();
    redis.cli(&["INCR", "counter"]).unwrap();

    redis.kill().unwrap();
    assert!(!accepts_connections(port), "killed redis still listens");
    redis.restart().unwrap();

    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["GET", "counter"]).unwrap(), "42");
    assert_eq!(redis.cli(&["XLEN", "events"]).unwrap(), "1");
}

#[test]
fn redis_graceful_stop_persists_everysec_writes() {
    let mut redis = Redis::start().unwrap();
    redis.cli(&["SET", "k", "v"]).unwrap();
    redis.stop().unwrap();
    assert!(redis.cli(&["PING"]).is_err(), "stopped redis still answers");
    redis.restart().unwrap();
    assert_eq!(redis.cli(&["GET", "k"]).unwrap(), "v");
}

#[test]
fn redis_maxmemory_rejects_writes_instead_of_evicting() {
    let redis = Redis::start_with(RedisOptions {
        maxmemory: Some("2mb".to_string()),
        ..RedisOptions::default()
    })
    .unwrap();
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "maxmemory-policy"]).unwrap(),
        "maxmemory-policy\nnoeviction"
    );
    let value = "x".repeat(100_000);
    let mut written = 0;
    let err = loop {
        match redis.cli(&["SET", &format!("k{written}"), &value]) {
            Ok(_) => written += 1,
            Err(err) => break err,
        }
        assert!(written < 100, "2mb limit never hit");
    };
    assert!(format!("{err:#}").contains("OOM"), "{err:#}");
    assert!(written > 0);
    // noeviction: every acknowledged write is still there
    assert_eq!(redis.cli(&["DBSIZE"]).unwrap(), written.to_string());
}

#[test]
fn clickhouse_creates_inserts_and_counts() {
    let ch = shared_clickhouse();
    assert_eq!(ch.url(), format!("http://127.0.0.1:{}", ch.http_port()));
    assert!(ch.query("SELECT version()").unwrap().starts_with("18.16"));
    let db = unique_name("harness");
    ch.query(&format!("CREATE DATABASE {db}")).unwrap();
    ch.query(&format!(
        "CREATE TABLE {db}.events (id UInt64, kind String) ENGINE = MergeTree ORDER BY id"
    ))
    .unwrap();
    ch.query(&format!(
        "INSERT INTO {db}.events SELECT number, 'view' FROM system.numbers LIMIT 1000"
    ))
    .unwrap();
    ch.query(&format!("INSERT INTO {db}.events VALUES (1000, 'buy')"))
        .unwrap();
    assert_eq!(
        ch.query(&format!("SELECT count() FROM {db}.events"))
            .unwrap(),
        "1001"
    );
    assert_eq!(
        ch.query(&format!(
            "SELECT kind, count() FROM {db}.events GROUP BY kind ORDER BY kind"
        ))
        .unwrap(),
        "buy\t1\nview\t1000"
    );
}

#[test]
fn clickhouse_error_carries_the_server_message() {
    let err = shared_clickhouse().query("SELEC 1").unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("Code: 62") && text.contains("Syntax error"),
        "{text}"
    );
}

#[test]
fn clickhouse_native_port_answers_clickhouse_client() {
    let ch = shared_clickhouse();
    let output = Command::new("clickhouse-client")
        .args(["--host", "127.0.0.1", "--port", &ch.tcp_port().to_string()])
        .args(["--query", "SELECT 40 + 2"])
        .output()
        .expect("clickhouse-client runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
}

#[test]
fn clickhouse_stop_and_restart_keeps_data() {
    let mut ch = ClickHouse::start().unwrap();
    let (http, tcp) = (ch.http_port(), ch.tcp_port());
    ch.query("CREATE TABLE default.kept (n UInt32) ENGINE = MergeTree ORDER BY n")
        .unwrap();
    ch.query("INSERT INTO default.kept VALUES (1), (2), (3)")
        .unwrap();

    ch.stop().unwrap();
    assert!(ch.query("SELECT 1").is_err(), "stopped clickhouse answers");
    ch.restart().unwrap();
    assert_eq!((ch.http_port(), ch.tcp_port()), (http, tcp));
    assert_eq!(ch.query("SELECT sum(n) FROM default.kept").unwrap(), "6");

    ch.kill().unwrap();
    ch.restart().unwrap();
    assert_eq!(ch.query("SELECT count() FROM default.kept").unwrap(), "3");
}

#[test]
fn s3_bucket_and_objects_via_aws_cli_or_raw_http() {
    let s3 = shared_s3();
    let bucket = unique_bucket();
    let aws = Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if aws {
        let home = tempfile::tempdir().unwrap();
        let access_key = unique_name("key");
        let run = |args: &[&str]| {
            let output = Command::new("aws")
                .arg("--endpoint-url")
                .arg(s3.endpoint())
                .args(args)
                // any credentials are accepted: a fresh key proves nothing is configured
                .env("AWS_ACCESS_KEY_ID", &access_key)
                .env("AWS_SECRET_ACCESS_KEY", "any")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                // a developer's ~/.aws must not change what the test does
                .env("AWS_CONFIG_FILE", home.path().join("config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    home.path().join("credentials"),
                )
                .output()
                .unwrap();
            assert!(output.status.success(), "aws {args:?}: {output:?}");
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let file = home.path().join("report.csv");
        std::fs::write(&file, "seller,total\na,1\n").unwrap();
        run(&["s3", "mb", &format!("s3://{bucket}")]);
        run(&[
            "s3",
            "cp",
            file.to_str().unwrap(),
            &format!("s3://{bucket}/daily/report.csv"),
        ]);
        let listing = run(&["s3", "ls", &format!("s3://{bucket}/daily/")]);
        assert!(listing.contains("report.csv"), "{listing}");
    } else {
        s3.create_bucket(&bucket).unwrap();
        s3.put_object(&bucket, "daily/report.csv", b"seller,total\na,1\n")
            .unwrap();
    }
    assert_eq!(s3.list_keys(&bucket).unwrap(), ["daily/report.csv"]);
    assert_eq!(
        s3.get_object(&bucket, "daily/report.csv").unwrap(),
        b"seller,total\na,1\n"
    );
    assert!(s3.get_object(&bucket, "missing").is_err());
}

#[test]
fn s3_stop_releases_the_port_and_drop_removes_the_data() {
    let mut s3 = S3::start().unwrap();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).unwrap();
    s3.put_object(&bucket, "a.txt", b"a").unwrap();
    assert_eq!(s3.list_keys(&bucket).unwrap(), ["a.txt"]);
    let (port, dir) = (s3.port(), s3.dir());
    s3.stop().unwrap();
    assert!(!accepts_connections(port), "stopped weed still listens");
    assert!(dir.is_dir(), "stop must keep the data");
    drop(s3);
    assert!(!dir.exists(), "drop must remove the data");
}

#[tokio::test]
async fn eventually_returns_the_value_or_names_what_timed_out() {
    let started = Instant::now();
    let value = eventually(Duration::from_secs(5), "the third poll", || async {
        Ok((started.elapsed() > Duration::from_millis(120)).then_some(7))
    })
    .await
    .unwrap();
    assert_eq!(value, 7);

    let err = eventually::<(), _, _>(Duration::from_millis(200), "a miracle", || async {
        anyhow::bail!("still nothing")
    })
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("a miracle") && text.contains("still nothing"),
        "{text}"
    );
}

/// Not a test: the process that `watchdog_kills_servers_of_a_killed_test` starts and kills.
#[test]
#[ignore = "helper process, started by watchdog_kills_servers_of_a_killed_test"]
fn watchdog_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let redis = Redis::start().unwrap();
    println!("READY {} {}", redis.port(), redis.dir().display());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test]
async fn watchdog_kills_servers_of_a_killed_test() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "watchdog_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("READY "))
        .expect("helper prints READY");
    let mut parts = ready.split_whitespace().skip(1);
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    assert!(accepts_connections(port) && dir.is_dir());

    // SIGKILL: no destructor runs in the helper, only the watchdog can clean up
    helper.kill().unwrap();
    helper.wait().unwrap();

    eventually(Duration::from_secs(10), "orphaned redis to go away", || {
        let gone = !accepts_connections(port) && !dir.exists();
        async move { Ok(gone.then_some(())) }
    })
    .await
    .unwrap();
}
