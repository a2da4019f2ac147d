//! The group reader (`consumer::source::Source`, which the archiver uses too).

use std::time::{Duration, Instant};

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
            .read(10, Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
    let started = Instant::now();
    let entries = source.read(10, Duration::from_secs(5)).await.unwrap();
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
    let (entries, ()) = tokio::join!(source.read(10, Duration::from_secs(5)), publish);
    assert_eq!(entries.unwrap().len(), 1);
}
