//! The simulator binary honours `LOG_FORMAT` and `METRICS_LISTEN` like every service, and
//! keeps its telemetry for the whole run: while it sends to a real gateway, its `/metrics`
//! shows the client crate's counters, and every log line is JSON.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;

const SECRET: &str = "telemetry-test";

/// The value of the unlabelled-or-labelled sample `name` in a scrape of `port`, if served.
fn scraped(port: u16, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_and_serves_metrics_while_it_runs() {
    let simulator = env!("CARGO_BIN_EXE_simulator");
    let stores = Command::new(simulator)
        .args([
            "stores-file",
            "--token-secret",
            SECRET,
            "--stores-per-region",
            "1",
        ])
        .output()
        .unwrap();
    assert!(stores.status.success());
    let dir = tempfile::tempdir().unwrap();
    let stores_file = dir.path().join("stores.toml");
    std::fs::write(&stores_file, &stores.stdout).unwrap();

    let redis = testkit::shared_redis();
    let settings = gateway::Settings::try_parse_from([
        "gateway",
        "--stores-file",
        &stores_file.display().to_string(),
        "--redis-url",
        &redis.url(),
        "--stream-key",
        &testkit::unique_name("simulator-telemetry"),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway::Background::spawn(listener, settings).unwrap();

    let port = testkit::free_port();
    let mut child = Command::new(simulator)
        .args(["run", "--gateway", &format!("http://{}", gateway.addr())])
        .args(["--token-secret", SECRET, "--stores-per-region", "1"])
        .args(["--duration", "5", "--rate", "200", "--quiet"])
        .env("LOG_FORMAT", "json")
        .env("METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // while it runs, its endpoint counts what the gateway acknowledged
    let deadline = Instant::now() + Duration::from_secs(20);
    let acknowledged = loop {
        match scraped(port, "client_events_acknowledged_total") {
            Some(n) if n > 0.0 => break n,
            _ if Instant::now() > deadline => panic!("no acknowledged events on :{port}/metrics"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(acknowledged > 0.0);
    let sent = scraped(port, "client_events_sent_total").expect("sent counter");
    assert!(
        sent >= acknowledged,
        "sent {sent} < acknowledged {acknowledged}"
    );

    let out = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (child.wait_with_output().unwrap(), stderr)
    })
    .await
    .unwrap();
    let (output, stderr) = out;
    assert!(output.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("accepted"),
        "the summary stays on stdout"
    );
    let logs: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("serving prometheus metrics")),
        "{stderr}"
    );
    for line in logs {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    gateway.shutdown().await.unwrap();
}
