//! Redis trouble: an outage answers UNAVAILABLE and flips health to NOT_SERVING until Redis is
//! back; a full Redis answers RESOURCE_EXHAUSTED with RetryInfo.

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

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
    wait_for_health(&gateway, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let status = client
        .publish(authed(EU_TOKEN, request(2, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.get_error_details().retry_info().is_some());

    redis.restart().unwrap();
    wait_for_health(&gateway, ServingStatus::Serving, Duration::from_secs(10)).await;
    client
        .publish(authed(EU_TOKEN, request(3, eu_events(1))))
        .await
        .unwrap();
    assert_eq!(gateway.stream_len().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_is_resource_exhausted_with_retry_info() {
    let redis = testkit::Redis::start_with(testkit::RedisOptions {
        maxmemory: Some("64mb".into()),
        ..Default::default()
    })
    .unwrap();
    // a memory ratio Redis can never reach, so that Redis itself refuses the write
    let gateway = spawn_gateway(&redis.url(), &["--max-redis-memory-ratio", "1000"]).await;
    let mut client = gateway.client().await;
    client
        .publish(authed(EU_TOKEN, request(1, eu_events(1))))
        .await
        .unwrap();

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
