//! Calls without a known token are refused before anything reaches Redis.

use tonic::{Code, Request};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_token_is_unauthenticated_and_queues_nothing() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;

    let none = client
        .publish(Request::new(request(1, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    assert!(none.message().contains("missing"), "{none:?}");

    let unknown = client
        .publish(authed("not-a-store", request(2, eu_events(1))))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    assert_eq!(unknown.message(), "unknown store token");

    let stream = client
        .publish_stream(authed(
            "not-a-store",
            futures::stream::iter(vec![request(3, eu_events(1))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(stream.code(), Code::Unauthenticated, "{stream:?}");

    assert_eq!(gateway.stream_len().await, 0);
}
