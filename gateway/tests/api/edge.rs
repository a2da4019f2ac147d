//! The edge: what a request may cost is settled from its headers and wire bytes before
//! anything is decoded (authentication, event count, in-flight budget, slow messages,
//! reflection policy), and every refusal names its stable `ErrorInfo` reason.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// The `ErrorInfo.reason` of a refusal.
fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// A raw `Publish` whose body is `prefix` and then never ends.
fn stalled_publish(url: &str, prefix: Bytes, token: &str) -> http::Request<tonic::body::Body> {
    stalled_call(url, "Publish", prefix, token)
}

/// A raw call of `method` whose body is `prefix` and then never ends.
fn stalled_call(
    url: &str,
    method: &str,
    prefix: Bytes,
    token: &str,
) -> http::Request<tonic::body::Body> {
    held_call(url, method, prefix, token, futures::future::pending())
}

/// A raw call of `method` whose body is `prefix`, ending (short of its message) once `until`
/// completes.
fn held_call(
    url: &str,
    method: &str,
    prefix: Bytes,
    token: &str,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) -> http::Request<tonic::body::Body> {
    let end = futures::stream::once(until).filter_map(|()| futures::future::ready(None::<Bytes>));
    let chunks = futures::stream::once(futures::future::ready(prefix))
        .chain(end)
        .map(|b| Ok::<_, tonic::Status>(http_body::Frame::data(b)));
    http::Request::builder()
        .method("POST")
        .uri(format!(
            "{url}/marketplace.ingest.v1.IngestService/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            chunks,
        )))
        .unwrap()
}

/// The 5-byte gRPC frame header of an uncompressed message of `len` bytes.
fn frame_header(len: usize) -> BytesMut {
    let mut header = BytesMut::new();
    header.put_u8(0);
    header.put_u32(len as u32);
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_refused_without_reading_the_body() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let channel = gateway.channel().await;
    // a body that never ends: only an answer from the headers alone can come back
    let status = raw_status(
        channel.clone(),
        stalled_publish(
            &gateway.url(),
            frame_header(1 << 20).freeze(),
            "not-a-store",
        ),
    )
    .await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "TOKEN_UNKNOWN");
    assert_eq!(gateway.stream_len().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_events_are_counted_on_the_wire_and_refused_with_bad_request() {
    let gateway = spawn_gateway(
        &testkit::shared_redis().url(),
        &["--max-events-per-request", "100"],
    )
    .await;
    // 101 empty events: two bytes each on the wire
    let status = raw_publish_to(
        &gateway.url(),
        &Encoding::Gzip.compress(&[0x12u8, 0x00].repeat(101)),
        Encoding::Gzip,
        Some(EU_TOKEN),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(&status), "TOO_MANY_EVENTS");
    let details = status.get_error_details();
    assert_eq!(
        details.bad_request().unwrap().field_violations[0].field,
        "events"
    );
    assert_eq!(details.error_info().unwrap().metadata["limit"], "100");
    assert_eq!(gateway.stream_len().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_budget_requests_are_shed_with_retry_info() {
    let max_message = 64 * 1024;
    let budget = gateway::edge::message_cost(max_message, 100);
    let gateway = spawn_gateway(
        &testkit::shared_redis().url(),
        &[
            "--max-message-bytes",
            &max_message.to_string(),
            "--max-events-per-request",
            "100",
            "--max-in-flight-bytes",
            &budget.to_string(),
        ],
    )
    .await;
    let channel = gateway.channel().await;
    // a sender that stops just short of the end of a largest message holds its bytes
    let mut prefix = frame_header(max_message);
    prefix.put_bytes(0x78, max_message - 1);
    let prefix = prefix.freeze();
    let hold = || {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let call = tokio::spawn(raw_status(
            channel.clone(),
            held_call(
                &gateway.url(),
                "Publish",
                prefix.clone(),
                EU_TOKEN,
                async move {
                    let _ = released.await;
                },
            ),
        ));
        (call, release)
    };
    // the stalled call, started again if it ended: nothing orders its arrival before the
    // first large request's, and one that arrives while a large request holds the budget is
    // itself shed. A CI run under load failed with the stalled call ended and every large
    // request admitted; its answer was not recorded then, and is now if it fails again.
    let stalled = std::sync::Arc::new(tokio::sync::Mutex::new(hold()));
    let stalled_answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // 60,000 bytes of an unknown field: no events, but 4 bytes of budget per byte, which
    // no longer fits beside the stalled sender's
    let big = [0x78u8, 0x01].repeat(30_000);
    // what the last request that was not shed got, for the message if none is
    let last = std::sync::Arc::new(std::sync::Mutex::new(None));
    // up to 25 s, on a loaded machine: the stalled call holds its bytes until the request
    // timeout (30 s by default)
    let shed = testkit::eventually(Duration::from_secs(25), "a request to be shed", || {
        let url = gateway.url();
        let big = big.clone();
        let last = last.clone();
        let stalled = stalled.clone();
        let stalled_answers = stalled_answers.clone();
        let hold = &hold;
        async move {
            {
                let mut stalled = stalled.lock().await;
                if stalled.0.is_finished() {
                    let (ended, _) = std::mem::replace(&mut *stalled, hold());
                    let ended = ended.await?;
                    stalled_answers.lock().unwrap().push(ended);
                }
            }
            let status = raw_publish_to(&url, &big, Encoding::Identity, Some(EU_TOKEN)).await;
            if status.code() == Code::ResourceExhausted {
                return Ok(Some(status));
            }
            *last.lock().unwrap() = Some(status);
            Ok(None)
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}; the stalled calls that ended: {:?}; the last answer: {:?}",
            stalled_answers.lock().unwrap(),
            last.lock().unwrap()
        )
    });
    assert_eq!(reason(&shed), "GATEWAY_BUSY");
    assert!(shed.get_error_details().retry_info().is_some());
    // once the hog's call ends its bytes are given back: the same request now reaches the
    // handler, which finds no event in it
    let (call, release) = match std::sync::Arc::try_unwrap(stalled) {
        Ok(stalled) => stalled.into_inner(),
        Err(_) => panic!("no request in flight holds the stalled call"),
    };
    release.send(()).unwrap();
    let ended = call.await.unwrap();
    assert_ne!(ended.code(), Code::Ok, "{ended:?}");
    testkit::eventually(
        Duration::from_secs(10),
        "the budget to be given back",
        || {
            let url = gateway.url();
            let big = big.clone();
            async move {
                let status = raw_publish_to(&url, &big, Encoding::Identity, Some(EU_TOKEN)).await;
                Ok((status.code() == Code::InvalidArgument).then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_message_that_never_completes_is_cut_off_at_the_request_timeout() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &["--request-timeout", "1s"]).await;
    let channel = gateway.channel().await;
    let status = raw_status(
        channel,
        stalled_call(
            &gateway.url(),
            "PublishStream",
            frame_header(1000).freeze(),
            EU_TOKEN,
        ),
    )
    .await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "MESSAGE_TIMEOUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_is_for_stores_by_default_and_follows_the_setting() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    async fn list(gateway: &TestGateway, token: Option<&str>) -> Code {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut call = tonic::Request::new(futures::stream::iter(vec![request]));
        if let Some(token) = token {
            call.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let mut client = ServerReflectionClient::new(gateway.channel().await);
        match client.server_reflection_info(call).await {
            Ok(response) => match response.into_inner().next().await {
                Some(Ok(_)) => Code::Ok,
                Some(Err(status)) => status.code(),
                None => Code::Unknown,
            },
            Err(status) => status.code(),
        }
    }
    let redis = testkit::shared_redis().url();
    let default = spawn_gateway(&redis, &[]).await;
    assert_eq!(list(&default, None).await, Code::Unauthenticated);
    assert_eq!(
        list(&default, Some("not-a-store")).await,
        Code::Unauthenticated
    );
    assert_eq!(list(&default, Some(EU_TOKEN)).await, Code::Ok);
    let public = spawn_gateway(&redis, &["--reflection", "public"]).await;
    assert_eq!(list(&public, None).await, Code::Ok);
    let off = spawn_gateway(&redis, &["--reflection", "off"]).await;
    assert_eq!(list(&off, Some(EU_TOKEN)).await, Code::Unimplemented);
}

#[tokio::test]
async fn a_budget_below_one_largest_request_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    std::fs::write(&stores, "").unwrap();
    let settings = <gateway::Settings as clap::Parser>::try_parse_from([
        "gateway",
        "--stores-file",
        &stores.display().to_string(),
        "--max-in-flight-bytes",
        "1000",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = gateway::Gateway::build(listener, settings)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("GATEWAY_MAX_IN_FLIGHT_BYTES"),
        "{err:#}"
    );
}
