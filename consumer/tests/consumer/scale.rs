//! Two consumers in one group share the work: each entry is loaded by exactly one.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_load_each_entry_exactly_once() {
    let env = Env::shared().await;
    let sent = env.publish_many(40, 25).await;
    let mut a = consumer::Worker::connect(&env.settings("a", &["--read-count", "5"]))
        .await
        .unwrap();
    let mut b = consumer::Worker::connect(&env.settings("b", &["--read-count", "5"]))
        .await
        .unwrap();
    // Writes continue while both read.
    let more = async {
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.extend(env.publish_many(2, 25).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids
    };
    let total = sent.len() as u64 + 500;
    let (more, flushed_a, flushed_b) =
        tokio::join!(more, run(&env, &mut a, total), run(&env, &mut b, total));
    assert_eq!(more.len(), 500);
    assert!(
        flushed_a > 0 && flushed_b > 0,
        "both worked: {flushed_a} {flushed_b}"
    );
    assert_eq!(
        flushed_a + flushed_b,
        60,
        "every entry flushed by exactly one"
    );
    assert_eq!(env.rows().await, total, "count() without FINAL is exact");
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM commerce_events")
            .await,
        total
    );
}

/// Steps `worker` until every entry is loaded; returns how many entries it flushed.
async fn run(env: &Env, worker: &mut consumer::Worker, total: u64) -> usize {
    let mut flushed = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let consumer::Outcome::Flushed(written) = worker.step().await.unwrap() {
            flushed += written.entries;
        }
        if env.pending("loader").await == 0 && env.rows().await >= total {
            return flushed;
        }
        assert!(std::time::Instant::now() < deadline, "did not finish");
    }
}
