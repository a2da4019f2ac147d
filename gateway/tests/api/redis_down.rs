//! Redis trouble: an outage answers UNAVAILABLE and flips health to NOT_SERVING until Redis is
//! back, and so does a frozen Redis, but one slow health check does not; a full Redis answers
//! RESOURCE_EXHAUSTED with RetryInfo.

use std::time::Duration;

use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use pipeline::proto::ingest::ingest_service_client::IngestServiceClient;

use crate::helpers::*;

async fn health(gateway: &TestGateway) -> anyhow::Result<ServingStatus> {
    let mut client = HealthClient::new(gateway.channel().await);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status())
}

async fn wait_for_health(gateway: &TestGateway, want: ServingStatus, within: Duration) {
    testkit::eventually(within, &format!("health {want:?}"), || async {
        Ok((health(gateway).await? == want).then_some(()))
    })
    .await
    .unwrap();
}

/// While Redis is in trouble: health turns NOT_SERVING and a publish is answered UNAVAILABLE
/// with RetryInfo. After `mend`, health turns SERVING, a publish is queued, and the stream holds `queued`
/// entries.
async fn unavailable_until_mended(gateway: &TestGateway, mend: impl FnOnce(), queued: u64) {
    let mut client = gateway.client().await;
    wait_for_health(gateway, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let status = client
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.get_error_details().retry_info().is_some());

    mend();
    wait_for_health(gateway, ServingStatus::Serving, Duration::from_secs(10)).await;
    client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap();
    assert_eq!(gateway.stream_len().await, queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_and_not_serving_until_it_is_back() {
    let mut redis = testkit::Redis::start().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    let mut client = gateway.client().await;
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(5)).await;
    client
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap();

    redis.stop().unwrap();
    unavailable_until_mended(&gateway, || redis.restart().unwrap(), 2).await;
}

/// Samples the gateway's health every 100 ms for `period`; the statuses seen, in order, once
/// each where they repeat.
async fn health_during(channel: Channel, period: Duration) -> Vec<ServingStatus> {
    let mut client = HealthClient::new(channel);
    let mut seen: Vec<ServingStatus> = Vec::new();
    let until = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < until {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let status = client.check(request).await.unwrap().into_inner().status();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_health_check_does_not_stop_the_gateway_queueing() {
    let redis = testkit::Redis::start().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    let mut client = gateway.client().await;
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(5)).await;
    // The gateway checks Redis when it starts and then every second, each PING answered
    // within a second; its first check made it SERVING, within the 50 ms this test polls.
    let first_check = tokio::time::Instant::now();

    // Frozen 0.7 s after that check for 1.8 s: the next check, 0.3 s into the freeze, waits
    // past its timeout (0.5 s to spare); the one after, a second later, is answered 0.5 s
    // into its wait. One slow check, never two.
    tokio::time::sleep_until(first_check + Duration::from_millis(700)).await;
    redis.pause().unwrap();
    let watched = tokio::spawn(health_during(
        gateway.channel().await,
        Duration::from_secs(4),
    ));
    // sent after the slow check timed out, while Redis is still frozen: queued once it
    // answers (with one slow check counted as an outage, it was UNAVAILABLE)
    tokio::time::sleep(Duration::from_millis(1550)).await;
    let publish = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .publish(authed(EU_TOKEN, request(1, eu_events(1))))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    redis.resume().unwrap();

    publish.await.unwrap().unwrap();
    assert_eq!(watched.await.unwrap(), [ServingStatus::Serving]);
    client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap();
    assert_eq!(gateway.stream_len().await, 2);
}

/// A cluster master restarting under load is an outage like any other: every write that
/// fails is answered UNAVAILABLE, which stores retry, and never a final refusal. (CI's
/// cluster test once saw a batch refused for good during such a restart; see
/// `pipeline::retry::classify_redis` on fred's own `Unknown` errors.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_restart_is_unavailable_never_refused() {
    let mut cluster = testkit::RedisCluster::start().unwrap();
    let gateway = spawn_gateway(&cluster.url(), &[]).await;
    let client = gateway.client().await;
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(10)).await;
    client
        .clone()
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap();
    // the master that holds the stream's slot
    let slot = cluster
        .cli(0, &["CLUSTER", "KEYSLOT", &gateway.stream_key])
        .unwrap();
    let owner = (0..3)
        .find(|&i| {
            cluster
                .node(i)
                .cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot])
                .is_ok_and(|n| n == "1")
        })
        .expect("a node holds the stream");

    // stores writing without pause while the master restarts
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let mut client = client.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut answers = std::collections::BTreeMap::<String, u32>::new();
                let mut sequence = 10 + w * 1_000_000;
                while !*stopped.borrow() {
                    sequence += 1;
                    let answer = match client
                        .publish(authed(EU_TOKEN, request(sequence, eu_events(1))))
                        .await
                    {
                        Ok(_) => "OK".to_owned(),
                        Err(status) => format!("{:?}: {}", status.code(), status.message()),
                    };
                    *answers.entry(answer).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| cluster.restart_node(owner)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send_replace(true);
    let mut answers = std::collections::BTreeMap::<String, u32>::new();
    for writer in writers {
        for (answer, n) in writer.await.unwrap() {
            *answers.entry(answer).or_default() += n;
        }
    }
    assert!(
        answers
            .keys()
            .all(|answer| answer == "OK" || answer.starts_with("Unavailable")),
        "every write during the restart is queued or UNAVAILABLE: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_not_serving_until_it_answers_again() {
    let redis = testkit::Redis::start().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(5)).await;

    // a primary cut off by a partition: connections stay open, nothing is answered
    redis.pause().unwrap();
    unavailable_until_mended(&gateway, || redis.resume().unwrap(), 1).await;
}

/// A gateway over a Redis of 64 MiB `maxmemory` that holds one entry of it, with a memory
/// ratio Redis can never reach, so that Redis itself refuses writes: setting `maxmemory`
/// below what Redis uses makes every write an OOM error (noeviction).
async fn gateway_over_a_redis_that_refuses_when_full()
-> (testkit::Redis, TestGateway, IngestServiceClient<Channel>) {
    let redis = testkit::Redis::start_with(testkit::RedisOptions {
        maxmemory: Some("64mb".into()),
        ..Default::default()
    })
    .unwrap();
    let gateway = spawn_gateway(&redis.url(), &["--max-redis-memory-ratio", "1000"]).await;
    let mut client = gateway.client().await;
    client
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap();
    (redis, gateway, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_is_resource_exhausted_with_retry_info() {
    let (redis, gateway, mut client) = gateway_over_a_redis_that_refuses_when_full().await;

    // below what Redis already uses: with noeviction every write is now an OOM error
    redis.cli(&["CONFIG", "SET", "maxmemory", "100kb"]).unwrap();
    let status = client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "the event queue is full; retry later");
    assert!(status.get_error_details().retry_info().is_some());

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    client
        .publish(authed(EU_TOKEN, request(3, eu_events(1))))
        .await
        .unwrap();
    assert_eq!(gateway.stream_len().await, 2);
}

/// A Redis that refuses writes because its last save failed (`MISCONF`: its disk is full,
/// say) is the server's state, not the store's fault: the store is answered UNAVAILABLE with
/// RetryInfo, keeps its events and retries, and once a save succeeds the same events are
/// queued. (It was INTERNAL with `REDIS_REFUSED`, which tells a store to give them up.)
/// Health follows, as for an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_refuses_writes_is_unavailable_until_it_saves_again() {
    let redis = testkit::Redis::start().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    let mut client = gateway.client().await;
    client
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap();

    redis.refuse_writes().unwrap();
    let status = client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "REDIS_UNAVAILABLE");
    assert!(details.retry_info().is_some());
    assert!(status.message().contains("MISCONF"), "{status:?}");
    // by redis-cli: a new fred client's handshake is refused with MISCONF too
    assert_eq!(redis.cli(&["XLEN", &gateway.stream_key]).unwrap(), "1");
    // Redis refuses PING too in this state, so the health checks see an outage
    wait_for_health(&gateway, ServingStatus::NotServing, Duration::from_secs(5)).await;

    redis.write_again().unwrap();
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(10)).await;
    client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap();
    assert_eq!(gateway.stream_len().await, 2);
}

/// A gateway started while its Redis is down serves once Redis is up, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_its_redis_serves_once_redis_is_up() {
    let mut redis = testkit::Redis::start().unwrap();
    redis.stop().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    unavailable_until_mended(&gateway, || redis.restart().unwrap(), 1).await;
}

/// A gateway started while its Redis refuses writes (`MISCONF`, which refuses the
/// connection's first PING too) serves once a save succeeds, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_while_redis_refuses_writes_serves_once_it_saves_again() {
    let redis = testkit::Redis::start().unwrap();
    redis.refuse_writes().unwrap();
    let gateway = spawn_gateway(&redis.url(), &[]).await;
    unavailable_until_mended(&gateway, || redis.write_again().unwrap(), 1).await;
}

/// A request queued as several entries is written whole or not at all: a Redis out of memory
/// refuses it with nothing queued (the store is told to retry), and the retry queues all of
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_several_entries_is_queued_whole_or_not_at_all() {
    let (redis, gateway, mut client) = gateway_over_a_redis_that_refuses_when_full().await;
    let large = request(2, eu_events(10_000));

    redis.cli(&["CONFIG", "SET", "maxmemory", "100kb"]).unwrap();
    let status = client
        .publish(authed(EU_TOKEN, large.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "REDIS_OUT_OF_MEMORY"
    );
    assert_eq!(gateway.stream_len().await, 1, "none of its entries");

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    client.publish(authed(EU_TOKEN, large)).await.unwrap();
    let batches = gateway.batches().await;
    assert!(batches.len() > 2, "{} entries", batches.len());
    let events: usize = batches.iter().map(|b| b.events.len()).sum();
    assert_eq!(events, 10_001);
}
