//! The consumer's memory follows `CONSUMER_BATCH_BYTES`, not the backlog: the real binary
//! drains a backlog many times its batch, of entries as large as the gateway writes, and its
//! peak resident set (`VmHWM`) stays far below the backlog.

use std::time::Duration;

use pipeline::proto::ingest::event::Payload;

use crate::{
    helpers::{Env, event_ids, loaded, queued_batch},
    supervise::Running,
};

const ENTRIES: usize = 320;
const EVENTS_PER_ENTRY: usize = 1_000;
const BATCH_BYTES: usize = 8 << 20;
/// Twelve batches' worth, where the backlog is about 146 MiB: the test build peaked at
/// 63 MiB when this was written (docs/BENCHMARKS.md, "The consumer's memory").
const PEAK_RSS_MIB: u64 = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_many_batches_large_drains_in_the_memory_of_a_few_batches() {
    let env = Env::shared().await;
    let mut backlog = 0;
    for entry in 0..ENTRIES {
        let mut batch = queued_batch(&event_ids(EVENTS_PER_ENTRY));
        for (i, event) in batch.events.iter_mut().enumerate() {
            if let Some(Payload::Commerce(c)) = &mut event.payload {
                // every text as long as the rules allow, each its own
                let text = |what: &str| {
                    let unique = format!("{what}-{entry}-{i}-");
                    unique.clone() + &"x".repeat(pipeline::validate::MAX_TEXT_LEN - unique.len())
                };
                c.session_id = text("session");
                c.brand = text("brand");
                c.category_code = text("category");
            }
        }
        backlog += pipeline::entry::encode_batch(&batch).len();
        env.publish_batch(&batch).await;
    }
    assert!(
        backlog > PEAK_RSS_MIB as usize * (1 << 20),
        "the backlog ({backlog} bytes) is far larger than the bound"
    );

    let batch_bytes = BATCH_BYTES.to_string();
    let consumer = Running::spawn_with(
        &env,
        "memory",
        &[
            ("CONSUMER_BATCH_BYTES", batch_bytes.as_str()),
            ("CONSUMER_READ_COUNT", "1000"),
            ("CONSUMER_BATCH_AGE", "1s"),
        ],
        None,
    );
    let events = (ENTRIES * EVENTS_PER_ENTRY) as u64;
    testkit::eventually(
        Duration::from_secs(240),
        "the whole backlog loaded",
        || async { Ok((loaded(&env).await? == events).then_some(())) },
    )
    .await
    .unwrap();
    let peak_mib = consumer.peak_rss_kib().expect("the consumer is running") / 1024;
    assert!(
        peak_mib <= PEAK_RSS_MIB,
        "peak RSS {peak_mib} MiB draining {} MiB in batches of {} MiB",
        backlog >> 20,
        BATCH_BYTES >> 20
    );
    assert_eq!(env.count("SELECT count() FROM rejected_events").await, 0);
}
