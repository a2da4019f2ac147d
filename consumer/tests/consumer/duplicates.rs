//! A store's retry puts the same events in two entries; queries with FINAL count them once,
//! and a redelivered entry skips events that are already loaded.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_in_two_entries_counts_once_with_final() {
    let env = Env::shared().await;
    let ids = event_ids(10);
    env.publish(&ids).await;
    // The store lost the answer and sent the request again.
    env.publish(&ids).await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.xlen().await > 0
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM commerce_events FINAL").await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_entry_skips_events_already_loaded() {
    let env = Env::shared().await;
    let ids = event_ids(10);
    env.publish(&ids).await;
    let settings = env.settings("c1", &[]);
    // The first delivery is read, then the consumer dies before its XACK...
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    assert_eq!(worker.step().await.unwrap(), consumer::Outcome::Read(1));
    drop(worker);
    // ...after 4 of the events reached ClickHouse (here through another stream).
    let mut other = Env::shared().await;
    other.database = env.database.clone();
    other.publish(&ids[..4]).await;
    let mut loader = consumer::Worker::connect(&other.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut loader, Duration::from_secs(30), || async {
        other.pending("loader").await == 0
    })
    .await;
    assert_eq!(env.rows().await, 4);

    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let mut skipped = 0;
    while env.pending("loader").await > 0 {
        if let consumer::Outcome::Flushed(w) = worker.step().await.unwrap() {
            skipped += w.skipped;
        }
    }
    assert_eq!(skipped, 4);
    assert_eq!(env.rows().await, 10, "no duplicate rows even without FINAL");
}
