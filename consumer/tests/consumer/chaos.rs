//! The real binary killed with SIGKILL at random moments while entries stream in: after the
//! last restart every event counts exactly once with FINAL and nothing is left pending.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use rand::Rng;

use crate::helpers::*;

/// The consumer binary as a child process, killed when dropped so a failing test leaves
/// nothing running.
struct Running(Child);

impl Running {
    fn spawn(env: &Env) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_consumer"))
            .env("REDIS_URL", &env.redis_url)
            .env("STREAM_KEY", &env.stream)
            .env("CLICKHOUSE_URL", &env.clickhouse_url)
            .env("CLICKHOUSE_DATABASE", &env.database)
            .env("CONSUMER_NAME", "chaos")
            .env("CONSUMER_BATCH_AGE", "100ms")
            .env("CONSUMER_READ_COUNT", "5")
            .env(
                "RUST_LOG",
                if testkit::test_log_enabled() {
                    "info"
                } else {
                    "warn"
                },
            )
            .stdout(Stdio::null())
            .stderr(if testkit::test_log_enabled() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_loads_every_event_exactly_once() {
    let env = Env::shared().await;
    let producer = async {
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.extend(env.publish_many(1, 10).await);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        ids
    };
    let chaos = async {
        let mut consumer = Running::spawn(&env);
        for _ in 0..5 {
            let wait = rand::rng().random_range(100..700);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            drop(consumer); // SIGKILL: no shutdown, no last flush
            consumer = Running::spawn(&env);
        }
        consumer
    };
    let (sent, _consumer) = tokio::join!(producer, chaos);
    let total = sent.len() as u64;
    testkit::eventually(Duration::from_secs(60), "every event loaded", || async {
        Ok((env.pending("loader").await == 0
            && env.count("SELECT count() FROM commerce_events FINAL").await == total)
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM commerce_events")
            .await,
        total
    );
    let rows = env.rows().await;
    assert!(rows >= total);
    if testkit::test_log_enabled() {
        eprintln!("chaos: {total} events, {rows} rows before merges");
    }
}
