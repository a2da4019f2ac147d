//! `GATEWAY_IDLE_TIMEOUT`: a connection without a call for that long is closed, although it
//! answers every keepalive PING; a connection with a call in progress stays open however
//! long the call lasts.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::helpers::*;

/// An HTTP/2 connection to the gateway on a task of its own (which answers PINGs); the
/// task ends when the connection closes.
async fn h2_connection(
    gateway: &TestGateway,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, task)
}

/// A `PublishRequest` of one event as a gRPC message frame.
fn frame(sequence: u64) -> Bytes {
    let message = request(sequence, eu_events(1)).encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    frame.freeze()
}

/// Waits (at most a minute, so that a broken build fails instead of hanging) for the
/// connection's task to end, i.e. for the gateway to close it.
async fn closed(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the gateway closes the idle connection")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let gateway = spawn_gateway(
        &testkit::shared_redis().url(),
        &[
            "--idle-timeout",
            "1s",
            // pings every 100 ms, all answered: they must not keep a connection open
            "--http2-keepalive-interval",
            "100ms",
        ],
    )
    .await;

    // busy: a PublishStream call opened and left waiting for its first message
    let (mut busy, busy_task) = h2_connection(&gateway).await;
    let call = http::Request::builder()
        .method("POST")
        .uri(format!(
            "{}/marketplace.ingest.v1.IngestService/PublishStream",
            gateway.url()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {EU_TOKEN}"))
        .body(())
        .unwrap();
    let (response, mut messages) = busy.send_request(call, false).unwrap();

    // idle: one call answered, then nothing but PINGs
    let (mut idle, idle_task) = h2_connection(&gateway).await;
    let health = http::Request::builder()
        .method("POST")
        .uri(format!("{}/grpc.health.v1.Health/Check", gateway.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (answer, mut body) = idle.send_request(health, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let mut answer = answer.await.unwrap().into_body();
    while answer.data().await.is_some() {}
    let _ = answer.trailers().await;
    closed(idle_task).await;

    // by now the busy connection has gone longer than the timeout without a new call
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !busy_task.is_finished(),
        "a connection with a call in progress stays open"
    );
    messages.send_data(frame(7), false).unwrap();
    let mut responses = response.await.unwrap().into_body();
    let first = responses.data().await.unwrap().unwrap();
    let answered = pipeline::proto::ingest::PublishResponse::decode(&first[5..]).unwrap();
    assert_eq!((answered.sequence, answered.accepted), (7, 1));
    assert_eq!(gateway.stream_len().await, 1);

    // the call ends; then the connection is idle, and closed in turn
    messages.send_data(Bytes::new(), true).unwrap();
    while responses.data().await.is_some() {}
    let _ = responses.trailers().await;
    drop((busy, messages, responses));
    closed(busy_task).await;
}
