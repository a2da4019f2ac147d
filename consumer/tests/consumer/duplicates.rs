//! A store's retry puts the same events in two entries; queries with FINAL count them once,
//! and a redelivered entry skips events that are already loaded. Identity is
//! `(store_id, event_id)`: another store's event with the same id is another event.

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
    load_elsewhere(&env, &[queued_batch(&ids[..4])]).await;
    assert_eq!(env.rows().await, 4);

    assert_eq!(redeliver(&env, &settings).await, 4);
    assert_eq!(env.rows().await, 10, "no duplicate rows even without FINAL");
}

/// Loads `batches` into `env`'s database through another stream, as another consumer
/// would have while `env`'s entry waited for its redelivery.
async fn load_elsewhere(env: &Env, batches: &[pipeline::proto::queue::QueuedBatch]) {
    let mut other = Env::shared().await;
    other.database = env.database.clone();
    for batch in batches {
        other.publish_batch(batch).await;
    }
    let mut loader = consumer::Worker::connect(&other.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut loader, Duration::from_secs(30), || async {
        other.pending("loader").await == 0
    })
    .await;
}

/// Loads `env`'s pending entries again as the consumer of `settings`; returns the events
/// it skipped as already loaded.
async fn redeliver(env: &Env, settings: &consumer::Settings) -> usize {
    let mut worker = consumer::Worker::connect(settings).await.unwrap();
    let mut skipped = 0;
    while env.pending("loader").await > 0 {
        if let consumer::Outcome::Flushed(w) = worker.step().await.unwrap() {
            skipped += w.skipped;
        }
    }
    skipped
}

/// What the gateway would queue for `ids` sent by store `store` (region Europe).
fn batch_of(store: &str, ids: &[String]) -> pipeline::proto::queue::QueuedBatch {
    let mut batch = queued_batch(ids);
    batch.store_id = store.into();
    for event in &mut batch.events {
        event.store_id = store.into();
    }
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_sending_one_event_id_on_one_day_both_count() {
    let env = Env::shared().await;
    let ids = event_ids(10);
    env.publish_batch(&batch_of("eu-1", &ids)).await;
    env.publish_batch(&batch_of("eu-2", &ids)).await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.xlen().await > 0
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM commerce_events FINAL").await,
        20
    );
    assert_eq!(
        env.count("SELECT uniqExact(store_id, event_id) FROM commerce_events FINAL")
            .await,
        20
    );
    // the same day and time: only the store tells them apart
    assert_eq!(
        env.count("SELECT uniqExact(event_id, occurred_at) FROM commerce_events")
            .await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_entry_skips_only_its_own_stores_loaded_events() {
    let env = Env::shared().await;
    let ids = event_ids(10);
    env.publish_batch(&batch_of("eu-2", &ids)).await;
    let settings = env.settings("c1", &[]);
    // store eu-2's entry is read, then the consumer dies before its XACK...
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    assert_eq!(worker.step().await.unwrap(), consumer::Outcome::Read(1));
    drop(worker);
    // ...while store eu-1's events with the same ids load (here through another stream),
    // and 3 of eu-2's own
    load_elsewhere(&env, &[batch_of("eu-1", &ids), batch_of("eu-2", &ids[..3])]).await;
    assert_eq!(env.rows().await, 13);

    assert_eq!(
        redeliver(&env, &settings).await,
        3,
        "only eu-2's own loaded events are skipped"
    );
    assert_eq!(
        env.rows().await,
        20,
        "both stores' events, no duplicate rows"
    );
}
