//! File size: with a small `--object-bytes`, segments are sealed so that every object
//! written stays within the bound, the object that filled each segment comes close to it,
//! and the segments' entry ranges cover the stream once. With a small `--segment-bytes`,
//! no segment holds more of the stream than the bound.

use std::collections::BTreeMap;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_object_bound_rolls_objects_at_the_bound() {
    const BOUND: u64 = 128 * 1024;
    let env = Env::shared();
    // small requests: an entry's worst case (all its rows in one object) is kept free below
    // the bound, so small entries let objects come closer to a small bound
    let base = e2e::event_time_base();
    let truth = env.publish_at(20_000, 0, 31, base, 10, &[]).await;
    assert_eq!(truth.accepted, 20_000);
    let date = e2e::utc_date(base);
    let mut worker = env
        .worker(&["--object-bytes", &BOUND.to_string(), "--read-count", "20"])
        .await;
    let segments = drain(&mut worker).await;
    assert!(
        segments.len() > 2,
        "the bound rolled segments: {segments:?}"
    );
    assert_eq!(env.archiver_backlog(), 0);

    // Every object, as S3 holds it, is within the bound.
    let store = env.store().await;
    let manifest = archiver::manifest::read(&store, date)
        .await
        .unwrap()
        .unwrap();
    let mut largest: BTreeMap<(String, String), u64> = BTreeMap::new();
    for listed in store.list("archive/").await.unwrap() {
        if listed.key.starts_with("archive/manifests/") {
            continue;
        }
        let body = store.get(&listed.key).await.unwrap();
        assert_eq!(body.len() as u64, listed.bytes);
        assert!(
            listed.bytes <= BOUND,
            "{} has {} bytes, over the bound {BOUND}",
            listed.key,
            listed.bytes
        );
        let o = manifest
            .objects
            .iter()
            .find(|o| o.key == listed.key)
            .unwrap_or_else(|| panic!("{} is in the manifest", listed.key));
        let slot = largest
            .entry((o.first_entry.clone(), o.last_entry.clone()))
            .or_default();
        *slot = (*slot).max(listed.bytes);
    }
    // Each segment but the last was sealed because one of its objects was full: that
    // object came within reach of the bound (the writer's estimate counts the pages being
    // filled uncompressed, so it seals somewhat early, never late).
    let ranges: Vec<(&(String, String), &u64)> = largest.iter().collect();
    let mut ordered = ranges.clone();
    ordered.sort_by_key(|((first, _), _)| consumer::source::parse_id(first).unwrap());
    let sizes: Vec<u64> = ordered.iter().map(|(_, b)| **b).collect();
    eprintln!("largest object per segment, bytes: {sizes:?}");
    for (range, bytes) in &ordered[..ordered.len() - 1] {
        assert!(
            **bytes >= BOUND / 2,
            "segment {range:?} was sealed with its largest object at {bytes} bytes"
        );
    }

    // No gap and no overlap: the ranges are disjoint and in order, and their entries add
    // up to the stream's.
    for pair in ordered.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert!(
            consumer::source::parse_id(&a.1).unwrap() < consumer::source::parse_id(&b.0).unwrap(),
            "segments overlap: {a:?} {b:?}"
        );
    }
    assert_eq!(ordered.len(), segments.len());
    assert_eq!(
        segments.iter().map(|s| s.entries).sum::<usize>(),
        20_000 / 10,
        "every entry in one segment"
    );
    let (archived, problems) = archiver::verify::archived(&store, date).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(archived.len(), 20_000, "every event archived, once");
}

/// A read asks for about `--read-bytes` of entries at the size of the largest read so far,
/// not for `--read-count` entries whatever their size: Redis holds a reply whole in its
/// memory, counted against its `maxmemory`, and the archiver reads it whole. With a budget
/// smaller than one entry, every read takes one entry (the first too: before any size is
/// known, a read asks for one), where one read of 100 would take all of them; every event is
/// still archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_ask_for_read_bytes_worth_of_entries() {
    let env = Env::shared();
    let base = e2e::event_time_base();
    let truth = env.publish_at(40_000, 0, 37, base, 1_000, &[]).await;
    assert_eq!(truth.accepted, 40_000);
    let mut worker = env
        .worker(&["--read-count", "100", "--read-bytes", "1000"])
        .await;
    let entries = env.archiver_backlog() as usize;
    assert!(entries >= 40, "{entries} entries");
    let mut reads = Vec::new();
    loop {
        match worker.step().await.unwrap() {
            archiver::worker::Outcome::Read(n) => reads.push(n),
            archiver::worker::Outcome::Idle => break,
            other => panic!("only reads until the stream is read: {other:?}"),
        }
    }
    assert_eq!(reads.iter().sum::<usize>(), entries, "{reads:?}");
    assert!(reads.iter().all(|&n| n == 1), "{reads:?}");
    let segments = drain(&mut worker).await;
    assert_eq!(
        segments.iter().map(|s| s.rows).sum::<u64>(),
        40_000,
        "{segments:?}"
    );
    assert_eq!(env.archiver_backlog(), 0);
}

/// A segment's entries stay in Redis until it is written, so `--segment-bytes` bounds what
/// one holds of the stream, whatever the objects' bound and the roll period (an hour here):
/// each segment holds at most the bound, all but the last were sealed because the next entry
/// would have passed it, and every event is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_holds_at_most_segment_bytes_of_the_stream() {
    const BOUND: usize = 64 * 1024;
    let env = Env::shared();
    let base = e2e::event_time_base();
    let truth = env.publish_at(4_000, 0, 41, base, 100, &[]).await;
    assert_eq!(truth.accepted, 4_000);
    let date = e2e::utc_date(base);
    let mut worker = env
        .worker(&["--segment-bytes", &BOUND.to_string(), "--roll-every", "1h"])
        .await;
    let segments = drain(&mut worker).await;
    assert!(
        segments.len() > 2,
        "the bound sealed segments: {segments:?}"
    );
    assert_eq!(env.archiver_backlog(), 0);
    assert_eq!(
        sealed_at_bound(&segments, BOUND, "the stream"),
        4_000 / 100,
        "every entry in one segment"
    );
    let store = env.store().await;
    let (archived, problems) = archiver::verify::archived(&store, date).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(archived.len(), 4_000, "every event archived, once");
}

/// The bound is the archiver's, not each shard's: an archiver of every shard of a stream on
/// one Redis holds at most `--segment-bytes` of it in all, each shard worker sealing at its
/// equal share. With two shards, every segment holds at most half the bound, each shard's
/// segments but its last were sealed for want of room in that half, and every event is
/// archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_share_the_segment_bound() {
    const BOUND: usize = 128 * 1024;
    let env = Env::shared();
    let base = e2e::event_time_base();
    let shards = ["--stream-shards", "2"];
    let truth = env.publish_at(4_000, 0, 43, base, 100, &shards).await;
    assert_eq!(truth.accepted, 4_000);
    let date = e2e::utc_date(base);
    let args = [
        shards[0],
        shards[1],
        "--segment-bytes",
        &BOUND.to_string(),
        "--roll-every",
        "1h",
    ];
    let manifests = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    let mut entries = 0;
    for index in 0..2 {
        let mut worker = env.shard_worker(index, &args, manifests.clone()).await;
        let segments = drain(&mut worker).await;
        assert!(
            segments.len() > 1,
            "shard {index}: the bound sealed segments: {segments:?}"
        );
        entries += sealed_at_bound(&segments, BOUND / 2, &format!("shard {index}"));
    }
    assert_eq!(entries, 4_000 / 100, "every entry in one segment");
    let store = env.store().await;
    let (archived, problems) = archiver::verify::archived(&store, date).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(archived.len(), 4_000, "every event archived, once");
}

/// Checks that every segment of `segments` (of `what`) holds at most `bound` bytes of the
/// stream, and that each but the last was sealed because its next entry would have passed
/// the bound; returns their entries. The entries are of about one size (100 events each),
/// several to a segment and none alone above the bound: a segment sealed for want of room
/// is then within two entries of it.
fn sealed_at_bound(segments: &[archiver::worker::Archived], bound: usize, what: &str) -> usize {
    let entry = segments[0].stream_bytes / segments[0].entries;
    assert!(entry < bound / 4, "{what}: entries of {entry} bytes");
    for s in segments {
        assert!(
            s.stream_bytes <= bound,
            "{what}: {s:?} holds more than {bound} bytes"
        );
    }
    for s in &segments[..segments.len() - 1] {
        assert!(
            s.stream_bytes + 2 * entry > bound,
            "{what}: {s:?} was sealed with room for more entries"
        );
    }
    segments.iter().map(|s| s.entries).sum()
}
