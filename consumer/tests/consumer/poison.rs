//! Entries that cannot be loaded go to `<stream>:dead` and `rejected_events`, are
//! acknowledged, and do not hold up the entries behind them.

use std::time::Duration;

use bytes::Bytes;
use pipeline::entry::Fields;

use crate::helpers::*;

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct Rejected {
    reason: String,
    raw: Vec<u8>,
    delivery_count: u32,
    stream_entry_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entry_is_dead_lettered_and_the_good_ones_behind_it_load() {
    let env = Env::shared().await;
    let mut sent = env.publish_many(2, 10).await;
    let garbage = Bytes::from_static(&[0xff, 0xff, 0xff, 0x01]);
    let bad_id = env.xadd(&Fields::new(garbage.clone(), None)).await;
    sent.extend(env.publish_many(3, 10).await);

    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.rows().await >= 50
    })
    .await;

    assert_eq!(env.rows().await, 50, "every good entry loads, once");
    assert_eq!(
        env.pending("loader").await,
        0,
        "the bad entry is acknowledged too"
    );
    let rejected: Vec<Rejected> = env
        .clickhouse()
        .query(
            "SELECT reason, raw, delivery_count, stream_entry_id FROM rejected_events \
             WHERE source = 'consumer'",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].reason.starts_with("undecodable stream entry"));
    assert_eq!(rejected[0].raw, garbage.to_vec());
    assert_eq!(rejected[0].delivery_count, 1);
    assert_eq!(rejected[0].stream_entry_id, bad_id);

    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original_id, bad_id);
    assert_eq!(letters[0].deliveries, 1);
    assert!(letters[0].reason.contains("not a valid queue.v1 protobuf"));
    assert_eq!(letters[0].raw.batch, Some(garbage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_whose_load_kills_the_consumer_is_dead_lettered_and_the_rest_flows() {
    let env = Env::shared().await;
    let poison = env.publish(&event_ids(5)).await;
    // Five consumers in turn read the entry and die while loading it.
    let dying = env.die_loading("c1", 5).await;
    // Restarts that only re-read the entry do not count against it.
    for _ in 0..3 {
        let mut worker = consumer::Worker::open(&dying).await.unwrap();
        assert_eq!(worker.step().await.unwrap(), consumer::Outcome::Read(1));
    }
    let healthy = event_ids(7);
    env.publish(&healthy).await;

    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
    })
    .await;
    assert_eq!(env.rows().await, 7, "the entry behind it loads");
    let rejected = env
        .count(
            "SELECT count() FROM rejected_events WHERE source = 'consumer' \
             AND delivery_count = 9 AND reason LIKE 'left unloaded by 5 consumer crashes%'",
        )
        .await;
    assert_eq!(rejected, 1);
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].original_id.as_str(), letters[0].deliveries),
        (poison.as_str(), 9)
    );
    let key = consumer::source::attempts_key(&env.stream, "loader");
    let left: u64 = fred::interfaces::HashesInterface::hlen(&env.redis, &key)
        .await
        .unwrap();
    assert_eq!(left, 0, "no counts are left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_clickhouse_refuses_are_isolated_and_the_rest_loads() {
    let env = Env::shared().await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    // Stands in for data ClickHouse refuses: a view that cannot parse a non-empty brand
    // fails the insert with CANNOT_PARSE_TEXT, a permanent error.
    env.clickhouse()
        .query(
            "CREATE MATERIALIZED VIEW refuse ENGINE = Memory AS \
             SELECT toUInt64(if(brand = '', '0', brand)) AS n FROM commerce_events",
        )
        .execute()
        .await
        .unwrap();
    let mut good = env.publish_many(3, 5).await;
    let mut bad = queued_batch(&event_ids(5));
    let Some(pipeline::proto::ingest::event::Payload::Commerce(c)) = &mut bad.events[2].payload
    else {
        unreachable!()
    };
    c.brand = "acme".into();
    let bad_id = env.publish_batch(&bad).await;
    good.extend(env.publish_many(4, 5).await);

    drive(&mut worker, Duration::from_secs(60), || async {
        env.pending("loader").await == 0
    })
    .await;
    // Every good entry loaded. (The view fails after ClickHouse wrote the block to the
    // table, so the refused entry's rows are there too: an artefact of how this test
    // makes ClickHouse refuse, not of the consumer.)
    let loaded: Vec<String> = env
        .clickhouse()
        .query("SELECT DISTINCT toString(event_id) FROM commerce_events")
        .fetch_all()
        .await
        .unwrap();
    let loaded: std::collections::HashSet<String> = loaded.into_iter().collect();
    assert!(
        good.iter().all(|id| loaded.contains(id)),
        "every good entry loaded"
    );
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].original_id, bad_id);
    assert!(
        letters[0]
            .reason
            .starts_with("clickhouse refused the entry"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        env.count(
            "SELECT count() FROM rejected_events WHERE source = 'consumer' \
             AND reason LIKE 'clickhouse refused the entry%'"
        )
        .await,
        1
    );
}
