//! Per-store quotas: a store sending faster than `max_events_per_second` or
//! `max_bytes_per_second` is throttled with RetryInfo and QuotaFailure, and other stores do
//! not notice.

use std::time::{Duration, Instant};

use pipeline::proto::ingest::{Event, Region, event::Payload};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// Sends 10 events every 50 ms for `run`, i.e. 200 events/s, twice the limited store's quota.
async fn send_for(
    gateway: &TestGateway,
    token: &'static str,
    store: &'static str,
    run: Duration,
) -> (u64, Vec<tonic::Status>) {
    let mut client = gateway.client().await;
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    let (mut accepted, mut refused) = (0, vec![]);
    while started.elapsed() < run {
        ticker.tick().await;
        let events = (0..10).map(|_| probe(store, Region::Europe)).collect();
        match client.publish(authed(token, request(0, events))).await {
            Ok(response) => accepted += u64::from(response.into_inner().accepted),
            Err(status) => refused.push(status),
        }
    }
    (accepted, refused)
}

/// A refusal to retry later: RESOURCE_EXHAUSTED with `reason`, a RetryInfo delay within the
/// second of burst, and a QuotaFailure on `subject` saying `quota`.
fn assert_throttled(status: &tonic::Status, reason: &str, subject: &str, quota: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, reason);
    let delay = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    let failure = details.quota_failure().expect("QuotaFailure");
    assert_eq!(failure.violations[0].subject, subject);
    assert_eq!(failure.violations[0].description, quota);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_its_quota_is_throttled_while_others_pass() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let run = Duration::from_secs(2);
    let started = Instant::now();
    let ((limited_ok, limited_refused), (other_ok, other_refused)) = tokio::join!(
        send_for(&gateway, LIMITED_TOKEN, "limited", run),
        send_for(&gateway, EU_TOKEN, "eu-1", run),
    );
    let elapsed = started.elapsed().as_secs_f64();

    assert!(other_refused.is_empty(), "{other_refused:?}");
    assert!(
        other_ok >= 300,
        "the unlimited store sent only {other_ok} events"
    );

    assert!(
        !limited_refused.is_empty(),
        "no request of the limited store was refused"
    );
    // the quota plus one second of burst is the most the limiter can let through
    let most = f64::from(LIMITED_QUOTA) * (elapsed + 1.0);
    assert!(
        (limited_ok as f64) <= most && limited_ok >= u64::from(LIMITED_QUOTA),
        "limited store got {limited_ok} events accepted in {elapsed:.1} s"
    );
    for status in &limited_refused {
        assert_throttled(
            status,
            "STORE_QUOTA_EXCEEDED",
            "store:limited",
            "at most 100 events per second",
        );
    }
    assert_eq!(
        gateway.stream_len().await,
        (limited_ok + other_ok) / 10,
        "one entry per accepted request, none for refused ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_quota_is_refused_without_retry_info() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let events = (0..=LIMITED_QUOTA)
        .map(|_| probe("limited", Region::Europe))
        .collect();
    let status = client
        .publish(authed(LIMITED_TOKEN, request(0, events)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("split it"), "{status:?}");
    let details = status.get_error_details();
    assert!(details.retry_info().is_none());
    assert!(details.quota_failure().is_some());
    assert_eq!(gateway.stream_len().await, 0);
}

/// `n` valid events of store `heavy`, each about 290 bytes (a 200-byte probe target).
fn heavy_events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| {
            let mut event = probe("heavy", Region::Europe);
            if let Some(Payload::Probe(p)) = &mut event.payload {
                p.target = format!("https://shop.example/{}", "t".repeat(180));
            }
            event
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_its_byte_quota_is_throttled_and_a_larger_request_must_be_split() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let batch = request(0, heavy_events(20));
    let bytes = batch.encoded_len() as u64;
    assert!(
        bytes < HEAVY_BYTE_QUOTA && bytes * 10 > 2 * HEAVY_BYTE_QUOTA,
        "{bytes}"
    );

    // ten requests back to back: twice the quota's second of burst
    let started = Instant::now();
    let (mut accepted, mut refused) = (0u64, vec![]);
    for _ in 0..10 {
        match client.publish(authed(HEAVY_TOKEN, batch.clone())).await {
            Ok(_) => accepted += 1,
            Err(status) => refused.push(status),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(accepted >= 1, "the first request fits the quota");
    // one second of burst plus what refilled meanwhile is the most that can pass
    let most = HEAVY_BYTE_QUOTA as f64 * (elapsed + 1.0);
    assert!(
        (accepted * bytes) as f64 <= most,
        "{accepted} requests of {bytes} bytes passed in {elapsed:.2} s"
    );
    assert!(!refused.is_empty(), "no request was refused");
    for status in &refused {
        let quota = format!("at most {HEAVY_BYTE_QUOTA} bytes per second");
        assert_throttled(status, "STORE_BYTE_QUOTA_EXCEEDED", "store:heavy", &quota);
    }
    assert_eq!(gateway.stream_len().await, accepted);

    // more bytes than a whole second's quota: no waiting helps
    let status = client
        .publish(authed(HEAVY_TOKEN, request(0, heavy_events(80))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(
        details.error_info().unwrap().reason,
        "BATCH_ABOVE_STORE_BYTE_QUOTA"
    );
    assert!(details.retry_info().is_none());
    assert!(status.message().contains("split it"), "{status:?}");

    // another store is not metered by bytes
    let mut other = gateway.client().await;
    for _ in 0..10 {
        other
            .publish(authed(EU_TOKEN, request(0, eu_events(200))))
            .await
            .expect("eu-1 has no quota");
    }
    assert_eq!(gateway.stream_len().await, accepted + 10);
}

/// A request refused for an event above the event limit (`EVENT_TOO_LARGE`) is refused before
/// the quota is asked, as one with too many events is: it costs the store none of its
/// allowance, so the same events sent right after without it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_for_an_oversized_event_spends_no_quota() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let events: Vec<Event> = (0..LIMITED_QUOTA)
        .map(|_| probe("limited", Region::Europe))
        .collect();
    let mut with_large = events.clone();
    if let Some(Payload::Probe(p)) = &mut with_large[0].payload {
        p.target = "a".repeat(pipeline::validate::MAX_EVENT_BYTES);
    }
    let status = client
        .publish(authed(LIMITED_TOKEN, request(0, with_large)))
        .await
        .unwrap_err();
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "EVENT_TOO_LARGE"
    );
    let response = client
        .publish(authed(LIMITED_TOKEN, request(1, events)))
        .await
        .expect("the whole second's allowance is left")
        .into_inner();
    assert_eq!(response.accepted, LIMITED_QUOTA);
}
