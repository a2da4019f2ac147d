//! The group reader (`consumer::source::Source`, which the archiver uses too).

use std::time::{Duration, Instant};

use bytes::Bytes;
use consumer::{batch::RawEntry, source::Source};
use pipeline::entry::Fields;

use crate::helpers::*;

/// A read may block for its full 5 s on an idle stream and come back empty: the archiver
/// blocks that long. It once ended every such read with the Redis client's own 5 s command
/// timeout, so an idle archiver logged an error every 5 s and, in the compose stack, kept
/// timing out after events arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_read_of_an_idle_stream_is_empty_not_a_timeout() {
    let env = Env::shared().await;
    let settings = env.settings("idle", &[]);
    let mut source =
        consumer::source::Source::connect(&settings.redis, &settings.group, &env.stream)
            .await
            .unwrap();
    // the first read after connecting re-reads this consumer's own pending entries: none
    assert!(
        source
            .read(10, 1 << 20, Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
    let started = Instant::now();
    let entries = source
        .read(10, 1 << 20, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(entries.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(4_900),
        "it blocked: {:?}",
        started.elapsed()
    );

    // and a read that blocks returns what arrives meanwhile
    let publish = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        env.publish(&event_ids(3)).await;
    };
    let (entries, ()) = tokio::join!(source.read(10, 1 << 20, Duration::from_secs(5)), publish);
    assert_eq!(entries.unwrap().len(), 1);
}

/// `len` bytes of batch, not a batch: the reader never decodes what it reads.
fn entry_of(len: usize) -> Fields {
    Fields::new(Bytes::from(vec![7u8; len]), None)
}

fn ids(entries: &[RawEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// A read asks for a count of entries sized by the largest entry seen so far, and entries
/// larger than any seen used to come back by that count: after a small first entry, a
/// count of 100 took 100 entries of 1 MiB in one reply, held whole in Redis and in the
/// reader. The server now stops at the read's bytes: the reply holds them and one entry
/// more, and the rest comes with the next reads, in order, none twice and none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_stops_at_its_bytes_whatever_the_entries_sizes() {
    let env = Env::shared().await;
    let settings = env.settings("bytes", &[]);
    let mut source = Source::connect(&settings.redis, &settings.group, &env.stream)
        .await
        .unwrap();
    let mut written = vec![env.xadd(&entry_of(100)).await];
    for _ in 0..10 {
        written.push(env.xadd(&entry_of(1 << 20)).await);
    }
    let budget = 2 << 20;
    let first = source
        .read(100, budget, Duration::from_millis(1))
        .await
        .unwrap();
    // the small entry, then large ones until 2 MiB are reached: two (the second crosses it)
    assert_eq!(first.len(), 3, "{:?}", ids(&first));
    let bytes: usize = first.iter().map(RawEntry::size).sum();
    assert!(
        bytes < budget + (1 << 20) + 100,
        "{bytes} bytes in one reply"
    );
    let mut read = ids(&first);
    loop {
        let next = source
            .read(100, budget, Duration::from_millis(1))
            .await
            .unwrap();
        if next.is_empty() {
            break;
        }
        assert!(
            next.len() <= 2,
            "{} entries of 1 MiB in one reply",
            next.len()
        );
        read.extend(ids(&next));
    }
    assert_eq!(read, written);
    // every value came whole
    assert!(
        first[1..]
            .iter()
            .all(|e| e.fields.batch.as_ref().unwrap().len() == 1 << 20)
    );
}

/// A restarted consumer re-reads its own pending entries by the same bound: in pieces of
/// the read's bytes, each entry once, in order, with its delivery count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_pending_entries_are_reread_within_the_reads_bytes() {
    let env = Env::shared().await;
    let settings = env.settings("pending", &[]);
    let mut source = Source::connect(&settings.redis, &settings.group, &env.stream)
        .await
        .unwrap();
    let mut written = Vec::new();
    for _ in 0..6 {
        written.push(env.xadd(&entry_of(512 << 10)).await);
    }
    // read, never acknowledged: pending for this consumer
    let mut read = Vec::new();
    while read.len() < written.len() {
        read.extend(ids(&source
            .read(100, 8 << 20, Duration::from_millis(1))
            .await
            .unwrap()));
    }
    assert_eq!(read, written);
    drop(source);

    let mut again = Source::connect(&settings.redis, &settings.group, &env.stream)
        .await
        .unwrap();
    let mut reread = Vec::new();
    loop {
        let entries = again
            .read(100, 1 << 20, Duration::from_millis(1))
            .await
            .unwrap();
        if entries.is_empty() {
            break;
        }
        // 1 MiB holds two entries of 512 KiB and their ids: the second crosses it
        assert!(entries.len() <= 3, "{} entries", entries.len());
        assert!(
            entries.iter().all(|e| e.deliveries == 2),
            "{:?}",
            ids(&entries)
        );
        reread.extend(ids(&entries));
    }
    assert_eq!(reread, written);
}
