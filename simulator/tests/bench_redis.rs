//! `simulator bench-redis` against a real Redis: `--keep` leaves the entries for a consumer to
//! drain, as the gateway writes them, and `--distinct` makes every entry's events its own
//! (scripts/bench-consumer-callgrind and scripts/bench-drain), where without it one entry is
//! written again and again.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use fred::prelude::*;
use pipeline::entry::Fields;
use simulator::config::BenchRedisArgs;

/// Queues 3,000 events in entries of 1,000 into a stream of its own; the event ids of each
/// entry, decoded as the consumer decodes them.
async fn queued(distinct: bool) -> Vec<Vec<String>> {
    let redis = testkit::shared_redis();
    let stream = testkit::unique_name("bench-redis");
    let args = BenchRedisArgs {
        redis_url: redis.url(),
        stream_key: stream.clone(),
        batch_size: 1_000,
        events: 3_000,
        in_flight: 4,
        keep: true,
        append: false,
        distinct,
    };
    let report: serde_json::Value =
        serde_json::from_str(&simulator::bench::redis(&args).await.unwrap()).unwrap();
    assert_eq!(report["entries"], 3);
    assert_eq!(report["events"], 3_000);

    let client = Client::new(Config::from_url(&redis.url()).unwrap(), None, None, None);
    client.init().await.unwrap();
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        client.xrange_values(&stream, "-", "+", None).await.unwrap();
    let _: i64 = client.del(&stream).await.unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let batch = Fields::from_pairs(fields).decode().unwrap();
            assert_eq!(batch.events.len(), 1_000);
            batch.events.into_iter().map(|e| e.event_id).collect()
        })
        .collect()
}

#[tokio::test]
async fn distinct_entries_hold_events_of_their_own() {
    let entries = queued(true).await;
    assert_eq!(entries.len(), 3);
    let ids: BTreeSet<&String> = entries.iter().flatten().collect();
    assert_eq!(ids.len(), 3_000, "every event its own id");
}

#[tokio::test]
async fn without_distinct_one_entry_is_written_again_and_again() {
    let entries = queued(false).await;
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|ids| *ids == entries[0]));
}

/// `--append` adds to what the stream holds (small entries before large ones in
/// `scripts/bench-drain`); without it the stream is replaced.
#[tokio::test]
async fn append_adds_after_the_streams_entries_and_without_it_they_are_replaced() {
    let redis = testkit::shared_redis();
    let stream = testkit::unique_name("bench-redis-append");
    let args = |batch_size: usize, events: u64, append: bool| BenchRedisArgs {
        redis_url: redis.url(),
        stream_key: stream.clone(),
        batch_size,
        events,
        in_flight: 1,
        keep: true,
        append,
        distinct: true,
    };
    let client = Client::new(Config::from_url(&redis.url()).unwrap(), None, None, None);
    client.init().await.unwrap();
    let sizes = || async {
        let entries: Vec<(String, HashMap<String, Bytes>)> =
            client.xrange_values(&stream, "-", "+", None).await.unwrap();
        entries
            .into_iter()
            .map(|(_, fields)| Fields::from_pairs(fields).decode().unwrap().events.len())
            .collect::<Vec<_>>()
    };
    simulator::bench::redis(&args(1, 2, false)).await.unwrap();
    simulator::bench::redis(&args(500, 1_000, true))
        .await
        .unwrap();
    assert_eq!(sizes().await, [1, 1, 500, 500]);
    simulator::bench::redis(&args(500, 500, false))
        .await
        .unwrap();
    assert_eq!(sizes().await, [500]);
    let _: i64 = client.del(&stream).await.unwrap();
}
