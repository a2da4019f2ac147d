//! Hostile sizes and bytes: oversized, compressed-bomb and malformed requests are refused by
//! tonic's decoder with a clear status, and the gateway keeps serving.

use std::{io::Write as _, time::Instant};

use bytes::Bytes;
use pipeline::proto::ingest::{Region, event::Payload};
use tonic::{Code, codec::CompressionEncoding};

use crate::helpers::*;

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
    let encoding = if zstd {
        Encoding::Zstd
    } else {
        Encoding::Identity
    };
    raw_publish_to(&gateway.url(), payload, encoding, Some(EU_TOKEN)).await
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
    let gateway = GatewayProcess::spawn(&[]).await;
    let status = raw_publish_to(&gateway.url, &zstd_bomb(), Encoding::Zstd, Some(EU_TOKEN)).await;
    let peak_kib = gateway.peak_rss_kib().expect("VmHWM in /proc/<pid>/status");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    eprintln!("gateway peak RSS while refusing the bomb: {} KiB", peak_kib);
    assert!(peak_kib < 100 * 1024, "gateway peak RSS {peak_kib} KiB");
}
