//! What is accepted, what is rejected and how: the answers of the error-semantics table.

use pipeline::proto::ingest::Region;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_claiming_another_store_or_region_are_rejected_not_accepted() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let other_store = probe("asia-1", Region::Europe);
    let other_region = probe("eu-1", Region::Asia);
    let valid = probe("eu-1", Region::Europe);
    let response = client
        .publish(authed(
            EU_TOKEN,
            request(7, vec![other_store, other_region, valid.clone()]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.sequence, 7);
    assert_eq!(response.accepted, 1);
    let fields: Vec<(u32, &str)> = response
        .rejected
        .iter()
        .map(|r| (r.index, r.violations[0].field.as_str()))
        .collect();
    assert_eq!(fields, [(0, "events[0].store_id"), (1, "events[1].region")]);

    // one entry: the valid event accepted, the two others only as rejected rows
    let batches = gateway.batches().await;
    assert_eq!(batches.len(), 1);
    let ids: Vec<&str> = batches[0]
        .events
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(ids, [valid.event_id.as_str()]);
    assert_eq!(batches[0].rejected.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_acceptance_lists_rejections_by_index() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let mut events = eu_events(5);
    events[1].event_id.clear();
    if let Some(pipeline::proto::ingest::event::Payload::Probe(p)) = &mut events[3].payload {
        p.status_code = 42;
    }
    let bad_id = events[3].event_id.clone();
    let response = client
        .publish(authed(EU_TOKEN, request(1, events)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 3);
    let rejected: Vec<(u32, &str, &str)> = response
        .rejected
        .iter()
        .map(|r| (r.index, r.event_id.as_str(), r.violations[0].field.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "", "events[1].event_id"),
            (3, bad_id.as_str(), "events[3].probe.status_code")
        ]
    );
    assert_eq!(gateway.stream_len().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_refuses_the_request_with_bad_request_and_queues_nothing() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut client = gateway.client().await;
    let mut events = eu_events(3);
    events[2].store_id = "asia-1".into();
    let mut req = request(1, events);
    req.all_or_nothing = true;
    let status = client.publish(authed(EU_TOKEN, req)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest details");
    assert_eq!(bad.field_violations[0].field, "events[2].store_id");
    assert_eq!(gateway.stream_len().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_oversized_requests_are_invalid_arguments() {
    let gateway = spawn_gateway(
        &testkit::shared_redis().url(),
        &["--max-events-per-request", "3"],
    )
    .await;
    let mut client = gateway.client().await;
    for events in [vec![], eu_events(4)] {
        let n = events.len();
        let status = client
            .publish(authed(EU_TOKEN, request(1, events)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{n} events: {status:?}"
        );
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().expect("BadRequest").field_violations[0].field,
            "events"
        );
    }
    assert_eq!(gateway.stream_len().await, 0);
}
