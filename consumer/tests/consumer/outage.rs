//! ClickHouse down: the consumer keeps its batch, acknowledges nothing, reads nothing more,
//! and loads everything exactly once when ClickHouse is back.

use std::time::Duration;

use consumer::Outcome;
use fred::interfaces::StreamsInterface;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_keeps_the_batch_and_loads_exactly_once_when_back() {
    let mut ch = testkit::ClickHouse::start().unwrap();
    let env = Env::on(&testkit::shared_redis().url(), &ch.url()).await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    let mut sent = env.publish_many(5, 20).await;
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.rows().await == 100
    })
    .await;

    ch.stop().unwrap();
    sent.extend(env.publish_many(5, 20).await);
    assert_eq!(worker.step().await.unwrap(), Outcome::Read(5));
    let read_at = std::time::Instant::now();
    // From when the batch is due, the consumer only tries to flush it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut retries = 0;
    while retries < 4 {
        // Events keep flowing into Redis meanwhile.
        sent.extend(env.publish_many(1, 20).await);
        match worker.step().await.unwrap() {
            Outcome::Retrying { attempt, .. } => {
                assert_eq!(attempt, retries);
                retries += 1;
            }
            other => panic!("unexpected {other:?} while clickhouse is down"),
        }
        assert_eq!(
            env.pending("loader").await,
            5,
            "nothing acknowledged and nothing more read"
        );
        // Each retry marks the held entries as just delivered, without counting a
        // delivery, so no other consumer takes them over as idle during a long outage.
        let since_read = read_at.elapsed().as_millis() as u64;
        let pending: Vec<(String, String, u64, u64)> = env
            .redis
            .xpending(&env.stream, "loader", ("-", "+", 10))
            .await
            .unwrap();
        assert_eq!(pending.len(), 5);
        for (_, _, idle, deliveries) in pending {
            assert!(
                since_read >= idle + 200,
                "refreshed: idle {idle} ms of {since_read}"
            );
            assert_eq!(deliveries, 1);
        }
    }

    ch.restart().unwrap();
    let total = sent.len() as u64;
    drive(&mut worker, Duration::from_secs(60), || async {
        env.pending("loader").await == 0 && env.rows().await >= total
    })
    .await;
    assert_eq!(total, 100 + 100 + 4 * 20);
    assert_eq!(env.rows().await, total, "exactly once, without FINAL");
}

/// A batch's entries let go their bytes once their rows are prepared (`Sink::prepare_entry`);
/// when those rows do not load, the entries are read again from the stream. One deleted
/// from the stream meanwhile (by hand: a pending entry is never trimmed) cannot be: it is
/// dead-lettered as having no batch, with its id, and the rest loads exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_batch_is_read_again_after_an_outage_and_an_entry_gone_meanwhile_is_dead_lettered()
 {
    let mut ch = testkit::ClickHouse::start().unwrap();
    let env = Env::on(&testkit::shared_redis().url(), &ch.url()).await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    ch.stop().unwrap();
    let mut kept = env.publish_many(2, 20).await;
    let gone = env.publish(&event_ids(20)).await;
    kept.extend(env.publish_many(2, 20).await);
    read_entries(&mut worker, 5).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        worker.step().await.unwrap(),
        Outcome::Retrying { .. }
    ));
    let deleted: u64 = env.redis.xdel(&env.stream, &gone).await.unwrap();
    assert_eq!(deleted, 1);

    ch.restart().unwrap();
    drive(&mut worker, Duration::from_secs(60), || async {
        env.pending("loader").await == 0
    })
    .await;
    assert_eq!(
        env.rows().await,
        kept.len() as u64,
        "exactly once, without FINAL"
    );
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].original_id, gone);
    assert!(
        letters[0]
            .reason
            .contains(&pipeline::entry::EntryError::MissingBatch.to_string()),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].raw.batch, None);
}
