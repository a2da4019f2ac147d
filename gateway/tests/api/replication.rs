//! `GATEWAY_ACK_REPLICAS`: an OK means a replica has the entry too, so it survives the
//! primary's death; when no replica confirms in time the store gets UNAVAILABLE
//! (`REDIS_NOT_REPLICATED`), never OK.

use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// Asserts that `status` is the refusal of an entry no replica confirmed.
fn assert_not_replicated(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "REDIS_NOT_REPLICATED");
    assert_eq!(info.metadata["replicas"], "1");
    assert_eq!(info.metadata["confirmed"], "0");
    assert!(details.retry_info().is_some(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_replica_a_store_gets_unavailable_never_ok() {
    let redis = testkit::Redis::start().unwrap();
    let gateway = spawn_gateway(
        &redis.url(),
        &["--ack-replicas", "1", "--ack-timeout", "200ms"],
    )
    .await;
    let mut client = gateway.client().await;
    let status = client
        .publish(authed(EU_TOKEN, request(1, eu_events(3))))
        .await
        .unwrap_err();
    assert_not_replicated(&status);
    // The primary has it: a retry queues it again, and the event tables count it once.
    assert_eq!(gateway.stream_len().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_means_the_replica_has_the_entry() {
    let group = testkit::RedisSentinel::start().unwrap();
    let primary = group.primary().unwrap();
    let replica = group.node(1 - primary);
    let gateway = spawn_gateway(
        &group.url(),
        &["--ack-replicas", "1", "--ack-timeout", "300ms"],
    )
    .await;
    let mut client = gateway.client().await;
    for sequence in 1..=5 {
        client
            .publish(authed(EU_TOKEN, request(sequence, eu_events(2))))
            .await
            .unwrap();
        // Read on the replica right after the OK, without waiting: WAIT confirmed it.
        let len = replica.cli(&["XLEN", &gateway.stream_key]).unwrap();
        assert_eq!(
            len,
            sequence.to_string(),
            "the replica has every OK'd entry"
        );
    }

    // A request of several entries (MULTI/EXEC, then WAIT): the replica has all of them.
    let before: u64 = replica
        .cli(&["XLEN", &gateway.stream_key])
        .unwrap()
        .parse()
        .unwrap();
    client
        .publish(authed(EU_TOKEN, request(99, eu_events(10_000))))
        .await
        .unwrap();
    let after: u64 = replica
        .cli(&["XLEN", &gateway.stream_key])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after > before + 1,
        "{before} → {after}: every entry of the request"
    );

    // The replica frozen: the primary still takes the XADD, but no OK comes back.
    replica.pause().unwrap();
    let refused = client
        .publish(authed(EU_TOKEN, request(6, eu_events(2))))
        .await;
    replica.resume().unwrap();
    assert_not_replicated(&refused.unwrap_err());
}
