//! Each probe against a server that did something known, its figures checked against what
//! the server did. Tolerance: lower bounds are exact (a figure cannot be below what the
//! server waited; ms are truncated, so the bound is the server's delay in whole ms); upper
//! bounds are generous (the server's delay plus 5 s), since the shared 2-core machine may
//! stall any process for a while: they catch a wrong phase, not a slow machine.

use std::time::Duration;

use pipeline::region::Region;
use prober::{
    measure::Http,
    probe::{Verdict, probe},
    targets::{self, Target},
};

use crate::servers::{self, Reply};

/// Slack of every upper bound.
const SLACK_MS: u32 = 5_000;

fn target(url: &str, extra: &str) -> Target {
    targets::parse(&format!(
        "[[target]]\nname = \"checkout\"\nstore_id = \"eu-1\"\nregion = \"europe\"\n\
         url = \"{url}\"\ntimeout = \"10s\"\n{extra}"
    ))
    .unwrap()
    .remove(0)
}

fn http() -> Http {
    Http::new(None).unwrap()
}

#[tokio::test]
async fn a_delayed_answer_is_up_with_its_delay_in_first_byte_and_response_time() {
    let delay = Duration::from_millis(300);
    let addr = servers::http(move |_| Reply::status_after(200, delay)).await;
    let p = probe(
        &http(),
        &target(&format!("http://{addr}/health"), ""),
        Region::Asia,
    )
    .await;
    let r = &p.result;
    assert_eq!(
        (p.verdict, r.up, r.status_code),
        (Verdict::Up, true, 200),
        "{p:?}"
    );
    assert_eq!(r.vantage_region, Region::Asia.to_proto() as i32);
    assert_eq!(r.tls_handshake_ms, 0, "plain http has no handshake");
    // the server answered only after its delay, and the connect came before the request
    assert!(
        (300..300 + SLACK_MS).contains(&r.time_to_first_byte_ms),
        "{r:?}"
    );
    assert!(r.response_time_ms >= r.time_to_first_byte_ms, "{r:?}");
    assert!(
        r.network_latency_ms <= r.time_to_first_byte_ms - 300,
        "{r:?}"
    );
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

#[tokio::test]
async fn a_500_is_down_with_its_status() {
    let addr = servers::http(|_| Reply::status_after(500, Duration::ZERO)).await;
    let p = probe(
        &http(),
        &target(&format!("http://{addr}/"), ""),
        Region::Europe,
    )
    .await;
    assert_eq!(p.verdict, Verdict::UnexpectedStatus);
    assert_eq!((p.result.up, p.result.status_code), (false, 500));
    assert!(p.result.response_time_ms < SLACK_MS);
    assert_eq!(p.problems, ["status 500 instead of 200"]);
    // and an expected 500 (say, a health check that must fail) is up
    let p = probe(
        &http(),
        &target(&format!("http://{addr}/"), "expected_status = 500\n"),
        Region::Europe,
    )
    .await;
    assert_eq!((p.verdict, p.result.up), (Verdict::Up, true));
}

#[tokio::test]
async fn a_dropped_connection_is_down_without_a_status() {
    let addr = servers::http(|_| Reply::Drop).await;
    let p = probe(
        &http(),
        &target(&format!("http://{addr}/"), ""),
        Region::Europe,
    )
    .await;
    assert_eq!(p.verdict, Verdict::Error, "{p:?}");
    assert_eq!((p.result.up, p.result.status_code), (false, 0));
    assert_eq!(
        p.result.time_to_first_byte_ms, 0,
        "no response head arrived"
    );
    assert!(p.problems[0].contains("no response"), "{:?}", p.problems);
    // a refused connection too: nothing listens on this port once the listener is gone
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = probe(
        &http(),
        &target(&format!("http://{closed}/"), ""),
        Region::Europe,
    )
    .await;
    assert_eq!((p.verdict, p.result.status_code), (Verdict::Error, 0));
    assert!(p.problems[0].contains("connecting to"), "{:?}", p.problems);
}

#[tokio::test]
async fn a_timeout_is_down_with_the_timeout_as_response_time() {
    let addr = servers::http(|_| Reply::Silent).await;
    let t = target(&format!("http://{addr}/"), "").clone();
    let t = Target {
        timeout: Duration::from_millis(400),
        ..t
    };
    let p = probe(&http(), &t, Region::Europe).await;
    assert_eq!(p.verdict, Verdict::Timeout);
    let r = &p.result;
    assert_eq!(
        (r.up, r.status_code, r.response_time_ms),
        (false, 0, 400),
        "{r:?}"
    );
    // the connect happened before the silence, and is kept
    assert!(r.network_latency_ms <= 400);
    assert_eq!(r.time_to_first_byte_ms, 0);
}

#[tokio::test]
async fn a_slow_payload_gives_its_bandwidth_and_the_load_endpoint_its_load() {
    // 5 chunks of 20,000 bytes, each after 200 ms: 100,000 bytes in at least 1 s
    let addr = servers::http(|path| match path {
        "/payload" => Reply::Answer {
            status: 200,
            delay: Duration::ZERO,
            chunks: 5,
            chunk: 20_000,
            pause: Duration::from_millis(200),
        },
        "/load" => Reply::Json(r#"{"cpu_load": 0.42}"#),
        _ => Reply::status_after(200, Duration::ZERO),
    })
    .await;
    let t = target(
        &format!("http://{addr}/"),
        &format!("payload_url = \"http://{addr}/payload\"\nload_url = \"http://{addr}/load\"\n"),
    );
    let p = probe(&http(), &t, Region::America).await;
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let bps = p.result.bandwidth_bytes_per_second;
    // at most what the server allowed (100,000 bytes / 1 s); at least the same bytes
    // over 1 s plus the slack
    assert!(bps <= 100_000, "{bps}");
    assert!(
        bps >= 100_000 * 1000 / (1000 + u64::from(SLACK_MS)),
        "{bps}"
    );
    assert_eq!(p.result.cpu_load, 0.42);
}

#[tokio::test]
async fn a_bad_load_answer_leaves_the_probe_up_and_says_why() {
    let addr = servers::http(|path| match path {
        "/load" => Reply::Json(r#"{"cpu_load": 7}"#),
        _ => Reply::status_after(200, Duration::ZERO),
    })
    .await;
    let t = target(
        &format!("http://{addr}/"),
        &format!("load_url = \"http://{addr}/load\"\n"),
    );
    let p = probe(&http(), &t, Region::America).await;
    assert_eq!((p.verdict, p.result.cpu_load), (Verdict::Up, 0.0));
    assert_eq!(p.problems, ["load: cpu_load 7 is not within 0..=1"]);
}

#[tokio::test]
async fn tls_targets_time_the_handshake_apart_and_unknown_cas_are_down() {
    let dir = tempfile::tempdir().unwrap();
    let certs = testkit::tls::certificates(dir.path()).unwrap();
    let delay = Duration::from_millis(200);
    let addr = servers::https(&certs.cert, &certs.key, move |_| {
        Reply::status_after(200, delay)
    })
    .await;
    let url = format!("https://localhost:{}/health", addr.port());
    let trusting = Http::new(Some(&certs.ca)).unwrap();
    let p = probe(&trusting, &target(&url, ""), Region::Europe).await;
    assert_eq!(p.verdict, Verdict::Up, "{:?}", p.problems);
    let r = &p.result;
    // the phases nest: connect, then handshake, then the server's delay before the head
    assert!(
        r.network_latency_ms + r.tls_handshake_ms <= r.time_to_first_byte_ms - 200,
        "{r:?}"
    );
    assert!(
        (200..200 + SLACK_MS).contains(&r.time_to_first_byte_ms),
        "{r:?}"
    );
    assert!(r.response_time_ms >= r.time_to_first_byte_ms);

    // the system's roots do not know the test CA: the handshake fails, the probe is down
    let p = probe(&http(), &target(&url, ""), Region::Europe).await;
    assert_eq!(
        (p.verdict, p.result.status_code),
        (Verdict::Error, 0),
        "{p:?}"
    );
    assert!(p.problems[0].contains("TLS handshake"), "{:?}", p.problems);
}
