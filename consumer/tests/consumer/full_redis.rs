//! A full Redis heals itself. With Redis past `maxmemory` (`noeviction`), HSET (attempt
//! counts) and XADD (dead letters, new events) are refused while XREADGROUP, XACK and XTRIM
//! still work: the real consumer binary keeps loading, acknowledging and trimming, memory
//! falls, and the gateway accepts again, with nobody acting. A Redis that refuses every
//! write is retried ever more slowly, and loading resumes when it writes again.

use std::time::Duration;

use testkit::{Redis, RedisOptions};

use crate::{
    helpers::{Env, event_ids, garbage_entry, loaded, queued_batch},
    store::{self, Gateway},
    supervise::Running,
};

/// Requests that fill the stream, and events per request: about 15 MB of entries.
const REQUESTS: u64 = 100;
const PER_REQUEST: usize = 1_000;

fn used_memory(redis: &Redis) -> u64 {
    let info = redis.cli(&["INFO", "memory"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_empties_and_the_gateway_accepts_again_without_an_operator() {
    let redis = Redis::start_with(RedisOptions {
        maxmemory: Some("256mb".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    let env = Env::on(&redis.url(), &testkit::shared_clickhouse().url()).await;
    // The group exists, as after the consumer's first start; then the consumer is down
    // (a ClickHouse outage, a bad deploy) while the stores keep sending.
    redis
        .cli(&["XGROUP", "CREATE", &env.stream, "loader", "0", "MKSTREAM"])
        .unwrap();
    let poison = env.xadd(&garbage_entry()).await;
    let gateway = Gateway::start(&redis.url(), &env.stream).await;
    let mut client = store::connect(&gateway.url()).await;
    for sequence in 1..=REQUESTS {
        let events = queued_batch(&event_ids(PER_REQUEST)).events;
        store::publish(&mut client, sequence, events).await.unwrap();
    }
    let sent = REQUESTS * PER_REQUEST as u64;

    // Redis is past its limit now: writes are refused, deletes and reads are not.
    let limit = used_memory(&redis) * 3 / 4;
    redis
        .cli(&["CONFIG", "SET", "maxmemory", &limit.to_string()])
        .unwrap();
    let refused = redis.cli(&["HSET", "probe-key", "f", "v"]).unwrap_err();
    assert!(format!("{refused:#}").contains("OOM"), "{refused:#}");
    let refused = store::publish(
        &mut client,
        REQUESTS + 1,
        queued_batch(&event_ids(1)).events,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    // The consumer starts into the full Redis and empties it.
    let log = tempfile::NamedTempFile::new().unwrap();
    let _consumer = Running::spawn_with(
        &env,
        "full",
        &[("CONSUMER_READ_COUNT", "20")],
        Some(log.as_file()),
    );
    let failed = |e: anyhow::Error| {
        panic!(
            "{e:#}; used {} of {limit}; consumer log:\n{}",
            used_memory(&redis),
            std::fs::read_to_string(log.path()).unwrap()
        )
    };
    testkit::eventually(
        Duration::from_secs(120),
        "every event loaded and acknowledged",
        || async {
            Ok((env.pending("loader").await == 0 && loaded(&env).await? == sent).then_some(()))
        },
    )
    .await
    .unwrap_or_else(failed);
    testkit::eventually(
        Duration::from_secs(60),
        "the stream trimmed, memory fallen",
        || async { Ok((env.xlen().await <= 1 && used_memory(&redis) < limit / 2).then_some(())) },
    )
    .await
    .unwrap_or_else(failed);

    // The poison entry was refused while Redis was full: it is on record in
    // rejected_events, and not in the dead-letter stream that Redis could not grow.
    let recorded = env
        .count(&format!(
            "SELECT count() FROM rejected_events WHERE stream_entry_id = '{poison}'"
        ))
        .await;
    assert_eq!(recorded, 1);
    let dead: u64 = fred::interfaces::StreamsInterface::xlen(
        &env.redis,
        consumer::dead_letter::dead_key(&env.stream),
    )
    .await
    .unwrap();
    assert_eq!(dead, 0);

    // The gateway accepts again by itself, once its next memory sample is taken.
    let mut sequence = REQUESTS + 1;
    testkit::eventually(Duration::from_secs(30), "the gateway accepts again", || {
        sequence += 1;
        let mut client = client.clone();
        let s = sequence;
        async move {
            Ok(
                store::publish(&mut client, s, queued_batch(&event_ids(10)).events)
                    .await
                    .ok()
                    .map(|_| ()),
            )
        }
    })
    .await
    .unwrap();
    redis.cli(&["HSET", "probe-key", "f", "v"]).unwrap();
    gateway.shutdown().await.unwrap();
}

/// Lines of the consumer's log that announce a retry after a failed Redis command.
fn redis_retries(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("failed; retrying"))
        .count()
}

/// A Redis that refuses every write (`MISCONF`: its last save failed, as when its disk fills)
/// is retried ever more slowly, not twenty times a second, and loading resumes by itself
/// once Redis writes again. XREADGROUP is a write (it records the delivery), so the
/// consumer's reads are what fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_refuses_writes_is_retried_ever_more_slowly() {
    let redis = Redis::start().unwrap();
    let env = Env::on(&redis.url(), &testkit::shared_clickhouse().url()).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let _consumer = Running::spawn_with(&env, "refused", &[], Some(log.as_file()));
    let first = env.publish_many(2, 50).await.len() as u64;
    testkit::eventually(
        Duration::from_secs(60),
        "the first events loaded",
        || async { Ok((loaded(&env).await.unwrap_or(0) == first).then_some(())) },
    )
    .await
    .unwrap();

    redis.refuse_writes().unwrap();

    let before = redis_retries(log.path());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let retries = redis_retries(log.path()) - before;
    // With a fixed wait of at most 100 ms this was at least 50. The backoff's cap doubles
    // from 100 ms, and each wait is at least a tenth of it: at most 9 waits fit in 5 s.
    assert!(
        (1..=10).contains(&retries),
        "{retries} retries in 5 s; log:\n{}",
        std::fs::read_to_string(log.path()).unwrap()
    );

    // Redis writes again, and what comes next is loaded.
    redis.write_again().unwrap();
    let second = env.publish_many(2, 50).await.len() as u64;
    // The backoff waits at most 10 s. The consumer acknowledges an entry after its insert,
    // so the rows can be queryable a moment before the entry leaves the pending list.
    let done = testkit::eventually(
        Duration::from_secs(60),
        "every event loaded and acknowledged",
        || async {
            let all = loaded(&env).await.unwrap_or(0) == first + second;
            Ok((all && env.pending("loader").await == 0).then_some(()))
        },
    )
    .await;
    if let Err(e) = done {
        panic!(
            "{e:#}; {} entries pending; log:\n{}",
            env.pending("loader").await,
            std::fs::read_to_string(log.path()).unwrap()
        );
    }
}
