//! PublishStream: one response per request, in order, after its events are queued; the first
//! failure ends the stream.

use std::time::Instant;

use futures::StreamExt;
use tonic::Code;

use crate::helpers::*;

/// Requests sent over one stream; 10,000 finish in a few seconds even in a debug build.
const REQUESTS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_streamed_request_is_acknowledged_once_in_order() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let requests = futures::stream::iter(0..REQUESTS).map(|seq| request(seq, eu_events(2)));
    let started = Instant::now();
    let mut responses = client
        .publish_stream(authed(EU_TOKEN, requests))
        .await
        .unwrap()
        .into_inner();
    let mut expected = 0;
    while let Some(response) = responses.next().await {
        let response = response.unwrap();
        assert_eq!(response.sequence, expected, "out of order or duplicated");
        assert_eq!(response.accepted, 2);
        expected += 1;
    }
    let took = started.elapsed();
    assert_eq!(expected, REQUESTS, "every request answered");
    assert_eq!(
        gateway.stream_len().await,
        REQUESTS,
        "one entry per request"
    );
    eprintln!(
        "publish_stream: {REQUESTS} requests in {took:?} ({:.0} requests/s)",
        REQUESTS as f64 / took.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failing_request_ends_the_stream_after_the_acknowledged_ones() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let requests: Vec<_> = (0..10)
        .map(|seq| {
            let mut req = request(seq, eu_events(1));
            if seq == 5 {
                req.events[0].store_id = "asia-1".into();
                req.all_or_nothing = true;
            }
            req
        })
        .collect();
    let mut responses = client
        .publish_stream(authed(EU_TOKEN, futures::stream::iter(requests)))
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = vec![];
    let status = loop {
        match responses.next().await {
            Some(Ok(response)) => acknowledged.push(response.sequence),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without the failure"),
        }
    };
    assert_eq!(acknowledged, [0, 1, 2, 3, 4]);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        responses.next().await.is_none(),
        "nothing after the failure"
    );
    // requests after the failing one may have been in flight and queued; never the failing one
    let len = gateway.stream_len().await;
    assert!((5..=9).contains(&len), "stream length {len}");
    let batches = gateway.batches().await;
    assert!(
        batches
            .iter()
            .all(|b| b.events.iter().all(|e| e.store_id == "eu-1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_quota_ends_with_resource_exhausted_and_retry_info() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    // 30 requests of 10 events: three times the limited store's one-second burst
    let requests = futures::stream::iter(0..30).map(|seq| {
        let events = (0..10)
            .map(|_| probe("limited", pipeline::proto::ingest::Region::Europe))
            .collect();
        request(seq, events)
    });
    let mut responses = client
        .publish_stream(authed(LIMITED_TOKEN, requests))
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = vec![];
    let status = loop {
        match responses.next().await {
            Some(Ok(response)) => acknowledged.push(response.sequence),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without refusing anything"),
        }
    };
    // in-flight requests race for the quota, so which one is refused first may vary by one
    // or two; what never varies is that the acknowledged ones are a gapless prefix
    let expected: Vec<u64> = (0..acknowledged.len() as u64).collect();
    assert_eq!(acknowledged, expected);
    assert!((8..=15).contains(&acknowledged.len()), "{acknowledged:?}");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        tonic_types::StatusExt::get_error_details(&status)
            .retry_info()
            .is_some()
    );
}
