//! `simulator run --reuse-requests`, the benchmark's cheap load: a few requests drawn once
//! and sent again and again with fresh ids. On a real gateway and Redis: every event the
//! gateway queued has an id of its own, the events repeat but for their ids, and the ground
//! truth is exactly what counting the queued events gives.

use std::collections::BTreeSet;

use clap::Parser;
use simulator::truth::Truth;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_requests_queue_fresh_ids_and_a_truth_that_counts_every_send() {
    let redis = testkit::shared_redis();
    let stream = testkit::unique_name("reused");
    let gateway = start_fleet_gateway(&redis.url(), &stream, 1, "reuse-secret").await;
    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "run",
        "--gateway",
        &gateway.url(),
        "--stores-per-region",
        "1",
        "--token-secret",
        "reuse-secret",
        "--total",
        "2100",
        "--batch-size",
        "250",
        "--reuse-requests",
        "3",
        "--concurrency",
        "1",
        "--rate",
        "0",
        "--quiet",
    ])
    .unwrap();
    let simulator::config::Command::Run(args) = settings.command else {
        unreachable!()
    };
    let truth = simulator::send::run(&args).await.unwrap();
    assert_eq!((truth.sent, truth.accepted), (2100, 2100), "{truth:?}");
    let ids: BTreeSet<&String> = truth.accepted_ids.iter().collect();
    assert_eq!(ids.len(), 2100, "an id sent twice");

    // one entry per request: eight of the three reused ones, then a last one of 100 drawn anew
    let batches = stream_batches(&redis.url(), &stream).await;
    assert_eq!(batches.len(), 9);
    let events: Vec<_> = batches.iter().flat_map(|b| &b.events).collect();
    let queued: Vec<&String> = events.iter().map(|e| &e.event_id).collect();
    assert_eq!(
        queued,
        truth.accepted_ids.iter().collect::<Vec<_>>(),
        "queued in the order sent"
    );
    // the same three requests' events over and over, but for their ids
    let contents: BTreeSet<Vec<u8>> = events
        .iter()
        .take(2000)
        .map(|e| {
            let mut e = (*e).clone();
            e.event_id.clear();
            prost::Message::encode_to_vec(&e)
        })
        .collect();
    assert_eq!(contents.len(), 3 * 250);
    for (k, batch) in batches.iter().take(8).enumerate() {
        assert_eq!(batch.store_id, batches[k % 3].store_id, "request {k}");
    }

    // the truth the run kept is the truth of what was queued
    let mut expected = Truth::default();
    for event in &events {
        expected.accept(event);
    }
    expected.sent = truth.sent;
    assert_eq!(
        serde_json::to_value(&expected).unwrap(),
        serde_json::to_value(&truth).unwrap()
    );
    assert_eq!(expected.accepted_ids, truth.accepted_ids);
}
