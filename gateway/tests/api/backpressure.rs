//! Backpressure: the gateway stops writing while the consumer group is too far behind or
//! Redis is close to `maxmemory`, and resumes once that is no longer so.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// Publishes one event every 50 ms until the gateway refuses, at most for `within`.
async fn publish_until_refused(
    client: &mut pipeline::proto::ingest::ingest_service_client::IngestServiceClient<
        tonic::transport::Channel,
    >,
    within: Duration,
) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match client
            .publish(authed(EU_TOKEN, request(0, eu_events(1))))
            .await
        {
            Ok(_) => {}
            Err(status) => return status,
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_above_the_limit_refuses_writes_and_the_stream_stops_growing() {
    let redis = testkit::shared_redis();
    let gateway = spawn_gateway(&redis.url(), &["--max-backlog", "5"]).await;
    let mut client = gateway.client().await;

    // no consumer group yet: the backlog is the stream length
    let status = publish_until_refused(&mut client, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("unprocessed entries"),
        "{status:?}"
    );
    assert!(status.get_error_details().retry_info().is_some());
    let len = gateway.stream_len().await;
    // the sampler looks every 500 ms, so a few writes may pass the limit before it notices
    assert!((6..=20).contains(&len), "stream length {len}");
    for _ in 0..10 {
        let refused = client
            .publish(authed(EU_TOKEN, request(0, eu_events(1))))
            .await;
        assert_eq!(code_of(&refused), Code::ResourceExhausted);
    }
    assert_eq!(
        gateway.stream_len().await,
        len,
        "refused requests wrote nothing"
    );

    // a group that has seen everything has no backlog, however long the stream is
    redis
        .cli(&["XGROUP", "CREATE", &gateway.stream_key, "caught-up", "$"])
        .unwrap();
    testkit::eventually(Duration::from_secs(5), "writes accepted again", || {
        let mut client = client.clone();
        async move {
            let ok = client
                .publish(authed(EU_TOKEN, request(0, eu_events(1))))
                .await
                .is_ok();
            Ok(ok.then_some(()))
        }
    })
    .await
    .unwrap();
    assert_eq!(gateway.stream_len().await, len + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_near_maxmemory_refuses_writes_before_redis_does() {
    let redis = testkit::Redis::start_with(testkit::RedisOptions {
        maxmemory: Some("64mb".into()),
        ..Default::default()
    })
    .unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    let mut client = gateway.client().await;
    client
        .publish(authed(EU_TOKEN, request(0, eu_events(1))))
        .await
        .unwrap();

    // 93 % in use: above the default ratio of 0.9, below what makes Redis refuse
    let info = redis.cli(&["INFO", "memory"]).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let limit = (used as f64 / 0.93) as u64;
    redis
        .cli(&["CONFIG", "SET", "maxmemory", &limit.to_string()])
        .unwrap();
    let status = publish_until_refused(&mut client, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("memory"), "{status:?}");
    assert!(status.get_error_details().retry_info().is_some());
    let len = gateway.stream_len().await;

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    testkit::eventually(Duration::from_secs(5), "writes accepted again", || {
        let mut client = client.clone();
        async move {
            let ok = client
                .publish(authed(EU_TOKEN, request(0, eu_events(1))))
                .await
                .is_ok();
            Ok(ok.then_some(()))
        }
    })
    .await
    .unwrap();
    assert_eq!(gateway.stream_len().await, len + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_is_the_slowest_group_counting_unacknowledged_entries() {
    let redis = testkit::shared_redis();
    let client = redis_client(&redis.url()).await;
    let key = testkit::unique_name("backlog");
    let backlog = |client: fred::clients::Client, key: String| async move {
        gateway::backpressure::sample(&client, &key)
            .await
            .unwrap()
            .backlog
    };
    assert_eq!(
        backlog(client.clone(), key.clone()).await,
        0,
        "no stream yet"
    );
    for _ in 0..10 {
        redis.cli(&["XADD", &key, "*", "filler", "x"]).unwrap();
    }
    assert_eq!(
        backlog(client.clone(), key.clone()).await,
        10,
        "no group: XLEN"
    );

    redis.cli(&["XGROUP", "CREATE", &key, "idle", "$"]).unwrap();
    redis.cli(&["XGROUP", "CREATE", &key, "slow", "0"]).unwrap();
    let read = redis
        .cli(&[
            "XREADGROUP",
            "GROUP",
            "slow",
            "c1",
            "COUNT",
            "4",
            "STREAMS",
            &key,
            ">",
        ])
        .unwrap();
    // 6 not yet delivered + 4 delivered and not acknowledged
    assert_eq!(backlog(client.clone(), key.clone()).await, 10, "{read}");
    let ids: Vec<&str> = read
        .lines()
        .filter(|l| l.contains('-') && l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(ids.len(), 4, "{read}");
    let mut ack = vec!["XACK", &key, "slow"];
    ack.extend(&ids);
    redis.cli(&ack).unwrap();
    assert_eq!(backlog(client.clone(), key.clone()).await, 6);
}

/// With a sharded stream each shard is judged on its own: a store whose shard is behind is
/// refused while a store writing to another shard goes on, and each store's entries land
/// in its own shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_shard_refuses_only_its_own_stores() {
    let redis = testkit::shared_redis();
    let gateway = spawn_gateway(
        &redis.url(),
        &["--max-backlog", "5", "--stream-shards", "3"],
    )
    .await;
    let shards = pipeline::shard::Shards::new(&gateway.stream_key, 3);
    let (eu, asia) = (shards.of_store("eu-1"), shards.of_store("asia-1"));
    assert_ne!(
        eu, asia,
        "the test needs the two stores on different shards"
    );
    let mut client = gateway.client().await;

    let status = publish_until_refused(&mut client, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let len = |key: String| async move {
        let client = redis_client(&redis.url()).await;
        fred::interfaces::StreamsInterface::xlen::<u64, _>(&client, key)
            .await
            .unwrap()
    };
    let eu_len = len(shards.key(eu).to_owned()).await;
    assert!(eu_len > 5, "europe's shard filled up: {eu_len}");

    for _ in 0..3 {
        let accepted = client
            .publish(authed(
                ASIA_TOKEN,
                request(
                    0,
                    vec![probe("asia-1", pipeline::proto::ingest::Region::Asia)],
                ),
            ))
            .await;
        assert_eq!(code_of(&accepted), Code::Ok, "asia's shard is not behind");
    }
    assert_eq!(len(shards.key(asia).to_owned()).await, 3);
    assert_eq!(
        len(shards.key(eu).to_owned()).await,
        eu_len,
        "europe stays refused"
    );
    let other = 3 - eu - asia;
    assert_eq!(len(shards.key(other).to_owned()).await, 0);
}
