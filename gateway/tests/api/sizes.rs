//! Hostile sizes and bytes: oversized, compressed-bomb and malformed requests are refused by
//! tonic's decoder with a clear status, and the gateway keeps serving.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use pipeline::proto::ingest::{Region, event::Payload};
use tonic::{Code, codec::CompressionEncoding};
use tower::ServiceExt;

use crate::helpers::*;

const PUBLISH: &str = "/marketplace.ingest.v1.IngestService/Publish";

/// A request whose one event carries `bytes` of text: decoded size above `bytes`, but
/// compressing to almost nothing.
fn request_of_size(bytes: usize) -> pipeline::proto::ingest::PublishRequest {
    let mut event = probe("eu-1", Region::Europe);
    if let Some(Payload::Probe(p)) = &mut event.payload {
        p.target = "a".repeat(bytes);
    }
    request(0, vec![event])
}

/// Sends one gRPC frame as raw bytes (so the compressed flag and payload can be anything)
/// and returns the status the gateway answered with.
async fn raw_publish(gateway: &TestGateway, payload: &[u8], zstd: bool) -> tonic::Status {
    raw_publish_to(&gateway.url(), payload, zstd).await
}

/// [`raw_publish`] to a gateway at `url`.
async fn raw_publish_to(url: &str, payload: &[u8], zstd: bool) -> tonic::Status {
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.put_u8(u8::from(zstd));
    frame.put_u32(payload.len() as u32);
    frame.put_slice(payload);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{url}{PUBLISH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {EU_TOKEN}"));
    if zstd {
        request = request.header("grpc-encoding", "zstd");
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            frame.freeze(),
        )))
        .unwrap();
    let channel = testkit::eventually(Duration::from_secs(10), "the gateway to accept", || {
        let url = url.to_owned();
        async move {
            Ok(Some(
                tonic::transport::Channel::from_shared(url)?
                    .connect()
                    .await?,
            ))
        }
    })
    .await
    .unwrap();
    let response = channel.oneshot(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let body = response.into_body().collect().await.unwrap();
    let trailers = body.trailers().expect("grpc trailers");
    tonic::Status::from_header_map(trailers).expect("grpc-status in trailers")
}

async fn still_serving(gateway: &TestGateway) {
    gateway
        .client()
        .await
        .publish(authed(EU_TOKEN, request(0, eu_events(1))))
        .await
        .expect("the gateway keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_compressed_or_not() {
    let gateway = spawn_gateway(
        &testkit::shared_redis().url(),
        &["--max-message-bytes", "1048576"],
    )
    .await;
    let mut client = gateway.client().await;

    let plain = client
        .publish(authed(EU_TOKEN, request_of_size(2 << 20)))
        .await
        .unwrap_err();
    assert_eq!(plain.code(), Code::ResourceExhausted, "{plain:?}");
    assert!(plain.message().contains("too large"), "{plain:?}");

    let mut zstd_client = gateway
        .client()
        .await
        .send_compressed(CompressionEncoding::Zstd);
    let compressed = zstd_client
        .publish(authed(EU_TOKEN, request_of_size(2 << 20)))
        .await
        .unwrap_err();
    assert_eq!(compressed.code(), Code::ResourceExhausted, "{compressed:?}");
    assert!(
        compressed.message().contains("size limit"),
        "{compressed:?}"
    );

    // under the limit, compression is welcome
    zstd_client
        .publish(authed(EU_TOKEN, request(0, eu_events(3))))
        .await
        .unwrap();
    still_serving(&gateway).await;
    assert_eq!(gateway.stream_len().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_bomb_is_refused_and_the_gateway_keeps_working() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let bomb = zstd_bomb();

    let started = Instant::now();
    let status = raw_publish(&gateway, &bomb, true).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("size limit"), "{status:?}");
    eprintln!("zstd bomb refused in {:?}", started.elapsed());

    still_serving(&gateway).await;
    assert_eq!(gateway.stream_len().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_refused_with_a_clear_message() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    // field 2 (events), length-delimited, with a length running past the end
    let garbage = Bytes::from_static(&[0x12, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let status = raw_publish(&gateway, &garbage, false).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .contains("failed to decode Protobuf message"),
        "{status:?}"
    );
    still_serving(&gateway).await;
    assert_eq!(gateway.stream_len().await, 1);
}

/// A zstd frame of about 32 KiB expanding to 1 GiB + 1 MiB of zeros (zstd stores each
/// 128 KiB block of them in a few bytes).
fn zstd_bomb() -> Vec<u8> {
    let started = Instant::now();
    let mut encoder = zstd::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..1025 {
        encoder.write_all(&chunk).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    eprintln!(
        "zstd bomb: {} bytes expanding to 1025 MiB, built in {:?}",
        bomb.len(),
        started.elapsed()
    );
    assert!(bomb.len() < 64 << 10, "bomb is {} bytes", bomb.len());
    bomb
}

/// The real binary, in a process of its own so its memory can be read: refusing the bomb
/// never makes it hold more than 100 MiB (peak resident set, `VmHWM`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_bomb_leaves_the_gateway_process_under_100_mib() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    std::fs::write(
        &stores,
        format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
            gateway::auth::token_sha256(EU_TOKEN)
        ),
    )
    .unwrap();
    let port = testkit::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--stores-file")
        .arg(&stores)
        .args(["--redis-url", &testkit::shared_redis().url()])
        .args(["--stream-key", &testkit::unique_name("bomb")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let bomb = zstd_bomb();
    let status = raw_publish_to(&format!("http://127.0.0.1:{port}"), &bomb, true).await;
    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/<pid>/status");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    eprintln!("gateway peak RSS while refusing the bomb: {} KiB", peak_kib);
    assert!(peak_kib < 100 * 1024, "gateway peak RSS {peak_kib} KiB");
}
