//! Per-store quotas: a store sending faster than `max_events_per_second` is throttled with
//! RetryInfo and QuotaFailure, and other stores do not notice.

use std::time::{Duration, Instant};

use pipeline::proto::ingest::Region;
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
    // the quota plus one second of burst is the most governor can let through
    let most = f64::from(LIMITED_QUOTA) * (elapsed + 1.0);
    assert!(
        (limited_ok as f64) <= most && limited_ok >= u64::from(LIMITED_QUOTA),
        "limited store got {limited_ok} events accepted in {elapsed:.1} s"
    );
    for status in &limited_refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let details = status.get_error_details();
        let delay = details
            .retry_info()
            .and_then(|r| r.retry_delay)
            .expect("RetryInfo with a delay");
        assert!(
            delay > Duration::ZERO && delay <= Duration::from_secs(1),
            "{delay:?}"
        );
        let quota = details.quota_failure().expect("QuotaFailure");
        assert_eq!(quota.violations[0].subject, "store:limited");
        assert!(
            quota.violations[0]
                .description
                .contains("100 events per second")
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
