//! Entries read but not flushed are not lost: a restarted consumer re-reads its own, and
//! another consumer takes over those of a consumer that does not come back.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_pending_entries_load_after_a_restart() {
    let env = Env::shared().await;
    env.publish_many(4, 25).await;
    let settings = env.settings("c1", &[]);

    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    read_entries(&mut worker, 4).await;
    drop(worker);
    assert_eq!(env.pending("loader").await, 4, "read, not acknowledged");

    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
    })
    .await;
    assert_eq!(env.rows().await, 100, "loaded once, without FINAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entries_of_a_dead_consumer_are_taken_over() {
    let env = Env::shared().await;
    env.publish_many(3, 10).await;

    let mut dead = consumer::Worker::connect(&env.settings("dead", &[]))
        .await
        .unwrap();
    read_entries(&mut dead, 3).await;
    drop(dead);
    // New entries keep arriving; the live consumer reads them and claims the old ones.
    env.publish_many(2, 10).await;

    let settings = env.settings("alive", &["--claim-idle", "200ms"]);
    let mut alive = consumer::Worker::connect(&settings).await.unwrap();
    let mut claimed = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.pending("loader").await > 0 || env.rows().await < 50 {
        if let consumer::Outcome::Claimed(n) = alive.step().await.unwrap() {
            claimed += n;
        }
        assert!(std::time::Instant::now() < deadline, "not taken over");
    }
    assert_eq!(claimed, 3);
    assert_eq!(env.rows().await, 50, "each entry loaded once");
    let consumers = testkit::shared_redis()
        .cli(&["XPENDING", &env.stream, "loader"])
        .unwrap();
    assert!(consumers.starts_with('0'), "{consumers}");
}
