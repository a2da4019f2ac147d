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

/// "One 4 MiB request must never become a 28 MiB stream entry": a request just under the
/// message limit of 10,000 events, each with a long invalid id and a long invalid currency
/// code of control bytes (escaping makes each of them five bytes in a violation text). The
/// entry Redis holds keeps the first `GATEWAY_MAX_REJECTED_KEPT` (100) rejected events with
/// their echoes cut, and counts the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximal_request_of_invalid_events_makes_a_bounded_stream_entry() {
    use fred::{
        interfaces::{ClientLike as _, StreamsInterface as _},
        types::CustomCommand,
    };
    use prost::Message as _;

    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let event = |i: usize, len: usize| {
        let mut event = probe("eu-1", Region::Europe);
        event.event_id = format!("{i:05}-{}", "x".repeat(len));
        event.payload = Some(Payload::Commerce(pipeline::proto::ingest::CommerceEvent {
            price: Some(pipeline::proto::ingest::Money {
                currency_code: "\u{1}".repeat(len),
                units: 1,
                nanos: 0,
            }),
            ..Default::default()
        }));
        event
    };
    let limit = 4 << 20;
    let len = (100..400)
        .rev()
        .find(|&len| request(0, (0..10_000).map(|i| event(i, len)).collect()).encoded_len() < limit)
        .unwrap();
    let req = request(0, (0..10_000).map(|i| event(i, len)).collect());
    let sent = req.encoded_len();
    let largest_event = event(0, len).encoded_len();

    // the response lists every rejection, so it is large too; the client must accept it
    let mut client = gateway.client().await.max_decoding_message_size(64 << 20);
    let response = client
        .publish(authed(EU_TOKEN, req))
        .await
        .expect("a request of invalid events is answered with its rejections")
        .into_inner();
    assert_eq!((response.accepted, response.rejected.len()), (0, 10_000));
    assert!(
        response.rejected.iter().all(|r| r.event_id.len() <= 256),
        "ids are cut at 256 bytes"
    );

    let redis = redis_client(&gateway.redis_url).await;
    let entries: Vec<(String, std::collections::HashMap<String, Bytes>)> = redis
        .xrange_values(&gateway.stream_key, "-", "+", None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let entry_bytes: usize = entries[0]
        .1
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let memory: u64 = redis
        .custom(
            CustomCommand::new_static("MEMORY", None, false),
            vec!["USAGE", gateway.stream_key.as_str(), "SAMPLES", "0"],
        )
        .await
        .unwrap();
    eprintln!(
        "a request of {sent} bytes (10,000 invalid events of {largest_event} bytes) became a stream entry of {entry_bytes} bytes; MEMORY USAGE of the stream {memory} bytes"
    );
    // each kept event: its raw bytes, its id cut at 256 bytes, and its reason (two
    // violations, the currency echo cut at 256 bytes)
    let most = 100 * (largest_event + 2048);
    assert!(entry_bytes <= most, "{entry_bytes} > {most}");
    assert!(memory <= 2 * most as u64, "{memory}");

    let batch = gateway.batches().await.remove(0);
    assert_eq!(
        (batch.rejected.len(), batch.rejected_not_kept),
        (100, 9_900)
    );
    assert!(
        batch.rejected[0]
            .reason
            .contains("is not an ISO 4217 currency code")
    );
}

/// An event above `pipeline::validate::MAX_EVENT_BYTES` makes the request refused whole, with
/// each such event named, and nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_above_the_event_limit_refuses_the_request_naming_it() {
    use prost::Message as _;
    use tonic_types::StatusExt as _;

    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let mut big = probe("eu-1", Region::Europe);
    if let Some(Payload::Probe(p)) = &mut big.payload {
        p.target = "a".repeat(pipeline::validate::MAX_EVENT_BYTES);
    }
    let len = big.encoded_len();
    let mut events = eu_events(2);
    events.insert(1, big);
    let status = gateway
        .client()
        .await
        .publish(authed(EU_TOKEN, request(0, events)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "EVENT_TOO_LARGE");
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "events[1]");
    assert_eq!(
        violations[0].description,
        format!("takes {len} bytes as encoded; an event may take at most 65536")
    );
    assert_eq!(gateway.stream_len().await, 0, "nothing queued");
    still_serving(&gateway).await;
}

/// A request whose events take more than one stream entry may
/// (`pipeline::entry::MAX_BATCH_BYTES`) is queued as a few bounded entries, which hold every
/// event once, in order: readers can then bound a reply by a count of entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_one_entry_is_queued_as_bounded_entries() {
    use fred::interfaces::StreamsInterface as _;

    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let events = eu_events(10_000);
    let response = gateway
        .client()
        .await
        .publish(authed(EU_TOKEN, request(0, events.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 10_000);

    let redis = redis_client(&gateway.redis_url).await;
    let entries: Vec<(String, std::collections::HashMap<String, Bytes>)> = redis
        .xrange_values(&gateway.stream_key, "-", "+", None)
        .await
        .unwrap();
    let sizes: Vec<usize> = entries.iter().map(|(_, f)| f["b"].len()).collect();
    assert!(sizes.len() > 1, "{sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= pipeline::entry::MAX_BATCH_BYTES),
        "{sizes:?}"
    );
    let queued: Vec<_> = gateway
        .batches()
        .await
        .into_iter()
        .flat_map(|b| b.events)
        .collect();
    assert_eq!(queued, events, "every event once, in order");
}
