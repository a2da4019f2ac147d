//! The gateway's CPU cost per event: protobuf decode (the events as views of the request's
//! bytes) → validation → stream entry writing
//! (the accepted events' bytes copied as sent) of 1,000-event requests, everything
//! `Publish` does after the edge and before the Redis round trip.
//!
//! Run: `cargo bench -p gateway --bench hot_path -- --warm-up-time 1 --measurement-time 5`.
//! Throughput is in events, so criterion prints the time of one request and events/s; the
//! time per event is that time divided by 1,000. The `stages` group splits the cost so
//! that a regression points at its stage. `valid_catalogue_ids` is `valid` with the ids of a
//! real catalogue (19-digit categories, UUID sessions), as `simulator replay` sends them.

use std::{hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::{
    auth::Store,
    ingest::{Bounds, DEFAULT_MAX_REJECTED_KEPT, prepare},
    wire::RawRequest,
};
use pipeline::{
    proto::ingest::{
        CommerceEvent, CommerceEventType, Event, Money, ProbeResult, PublishRequest, event::Payload,
    },
    region::Region,
    validate::{self, Context, Limits, Sender},
};
use prost::Message;
use testkit::mutate::Rng;

/// A value below `n`, as the bench always drew them.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// The gateway's default and the size stores are told to send.
const BATCH: usize = 1_000;
/// The gateway's default bounds, with the batch as the event limit.
const BOUNDS: Bounds = Bounds {
    max_events: BATCH,
    max_rejected_kept: DEFAULT_MAX_REJECTED_KEPT,
};
/// A fixed "now", so that the events' `occurred_at` stays within the allowed age.
const NOW: Duration = Duration::from_secs(1_800_000_000);
const STORE_ID: &str = "eu-store-0042";
const CATEGORIES: &[&str] = &[
    "electronics.smartphone",
    "appliances.kitchen.refrigerators",
    "computers.notebook",
    "apparel.shoes.sneakers",
    "kids.toys",
];
const BRANDS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "",
];
const TARGETS: &[&str] = &["checkout", "search", "cart", "payment-gateway"];

/// A random (version 4) UUID in the canonical lowercase form the rules require.
fn uuid(rng: &mut Rng) -> String {
    let bytes = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn store() -> Store {
    Store {
        id: STORE_ID.into(),
        region: Region::Europe,
        max_events_per_second: None,
        max_bytes_per_second: None,
        role: gateway::auth::Role::Store,
    }
}

/// The ids of the events' commerce fields.
#[derive(Clone, Copy)]
enum Ids {
    /// Small numbers (categories of three digits, products of four or five), and session
    /// ids of 18 characters.
    Small,
    /// As in the public dataset `simulator replay` reads ("eCommerce behavior data from
    /// multi category store"): products of seven or eight digits, categories of 19 (nine-byte
    /// varints), users of nine, and sessions as UUIDs.
    Catalogue,
}

/// One valid event as a store sends it: nine commerce events out of ten, one probe.
fn event(rng: &mut Rng, index: usize, ids: Ids) -> Event {
    let payload = if index % 10 == 9 {
        Payload::Probe(ProbeResult {
            target: TARGETS[index % TARGETS.len()].into(),
            up: true,
            status_code: 200,
            response_time_ms: 40 + below(rng, 400) as u32,
            network_latency_ms: 5 + below(rng, 120) as u32,
            bandwidth_bytes_per_second: 1_000_000 + below(rng, 100_000_000),
            cpu_load: below(rng, 1_000) as f64 / 1_000.0,
            ..ProbeResult::default()
        })
    } else {
        let kind = match below(rng, 100) {
            0..70 => CommerceEventType::View,
            70..88 => CommerceEventType::Cart,
            88..93 => CommerceEventType::RemoveFromCart,
            _ => CommerceEventType::Purchase,
        };
        let product = below(rng, 50_000);
        let category = product % CATEGORIES.len() as u64;
        let (product_id, category_id, user_id, session_id) = match ids {
            Ids::Small => (
                1_000 + product,
                100 + category,
                1 + below(rng, 1_000_000),
                format!("s-{:016x}", rng.next_u64()),
            ),
            Ids::Catalogue => (
                1_000_000 + product * 997,
                2_053_013_555_631_882_655 + category * 1_000_003,
                500_000_000 + below(rng, 100_000_000),
                uuid(rng),
            ),
        };
        Payload::Commerce(CommerceEvent {
            r#type: kind as i32,
            product_id,
            category_id,
            category_code: CATEGORIES[product as usize % CATEGORIES.len()].into(),
            brand: BRANDS[product as usize % BRANDS.len()].into(),
            seller_id: 1 + product % 12,
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 1 + below(rng, 2_000) as i64,
                nanos: (below(rng, 100) * 10_000_000) as i32,
            }),
            quantity: if kind == CommerceEventType::View {
                0
            } else {
                1 + below(rng, 3) as u32
            },
            user_id,
            session_id,
        })
    };
    Event {
        event_id: uuid(rng),
        occurred_at: Some(prost_types::Timestamp {
            seconds: NOW.as_secs() as i64 - 1 - below(rng, 300) as i64,
            nanos: below(rng, 1_000_000_000) as i32,
        }),
        store_id: STORE_ID.into(),
        region: Region::Europe.to_proto() as i32,
        payload: Some(payload),
    }
}

/// Breaks `event` in one of the ways real producers do, chosen by `kind`.
fn spoil(event: &mut Event, kind: usize, earlier_id: &str) {
    match (kind % 6, event.payload.as_mut()) {
        (0, _) => event.event_id = event.event_id.to_uppercase(),
        (1, _) => event.event_id = earlier_id.to_owned(),
        (2, _) => event.store_id = "us-store-0001".into(),
        (3, _) => event.occurred_at = None,
        (4, Some(Payload::Commerce(c))) => {
            c.price.as_mut().unwrap().currency_code = "EURO".into();
            c.quantity = 20_000;
        }
        (_, Some(Payload::Commerce(c))) => c.price.as_mut().unwrap().units = -1,
        (_, Some(Payload::Probe(p))) => p.status_code = 0,
        (_, None) => unreachable!("every generated event has a payload"),
    }
}

/// A request of `BATCH` events; every `invalid_every`-th one breaks a rule.
fn request(invalid_every: Option<usize>, ids: Ids) -> PublishRequest {
    let mut rng = Rng(42);
    let mut events: Vec<Event> = (0..BATCH).map(|i| event(&mut rng, i, ids)).collect();
    if let Some(every) = invalid_every {
        for i in (every / 2..BATCH).step_by(every) {
            let earlier_id = events[i - 1].event_id.clone();
            spoil(&mut events[i], i / every, &earlier_id);
        }
    }
    PublishRequest {
        sequence: 1,
        events,
        all_or_nothing: false,
    }
}

fn hot_path(c: &mut Criterion) {
    let store = store();
    let limits = Limits::default();
    for (name, invalid_every, ids) in [
        ("valid", None, Ids::Small),
        ("10pct_invalid", Some(10), Ids::Small),
        ("valid_catalogue_ids", None, Ids::Catalogue),
    ] {
        let req = request(invalid_every, ids);
        let wire = Bytes::from(req.encode_to_vec());
        let raw = RawRequest::decode(wire.clone()).unwrap();
        let expected_rejections = invalid_every.map_or(0, |every| BATCH / every);
        let prepared = prepare(&store, raw.decode_events().unwrap(), &limits, BOUNDS, NOW).unwrap();
        assert_eq!(prepared.response.rejected.len(), expected_rejections);

        let mut group = c.benchmark_group("hot_path");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = RawRequest::decode(black_box(wire.clone())).unwrap();
                prepare(&store, req.decode_events().unwrap(), &limits, BOUNDS, NOW).unwrap()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("stages/{name}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        // the request's fields (the codec), then its events as views (the handler)
        group.bench_function("decode", |b| {
            b.iter(|| {
                let req = RawRequest::decode(black_box(wire.clone())).unwrap();
                req.decode_events().unwrap().events.len()
            })
        });
        group.bench_function("validate", |b| {
            let ctx = Context {
                limits: &limits,
                now_unix: NOW.as_secs() as i64,
                sender: Some(Sender::Store {
                    store_id: &store.id,
                    region: store.region,
                }),
            };
            let events = raw.decode_events().unwrap().events;
            // the views' clone and the result's drop are not timed
            b.iter_batched(
                || events.clone(),
                |events| validate::check_batch(&ctx, black_box(events)),
                BatchSize::LargeInput,
            )
        });
        // validate + split + entry; the decoding and the result's drop are not timed
        group.bench_function("prepare", |b| {
            b.iter_batched(
                || raw.decode_events().unwrap(),
                |req| prepare(&store, req, &limits, BOUNDS, NOW).unwrap(),
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
