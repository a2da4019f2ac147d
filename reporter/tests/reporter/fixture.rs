//! A small, fully known day of data (plus the day before and the unsold window), inserted
//! twice so that every figure must survive duplicates, and the harness around it.

use std::collections::BTreeSet;

use pipeline::rows::{CommerceRow, ProbeRow};
use reporter::{
    config::S3Args,
    run::{RunOptions, Sellers},
    store::ReportStore,
};
use time::{Date, macros::date};

/// The reported day.
pub const DAY: Date = date!(2026 - 01 - 15);

pub fn unix(d: Date, seconds: i64) -> u32 {
    (d.midnight().assume_utc().unix_timestamp() + seconds) as u32
}

/// The UUID a fixture's readable id stands for in the tables (`event_id` is a `UUID`).
pub fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes())
}

/// One probe as the test knows it.
#[derive(Clone, Debug)]
pub struct Probe {
    pub id: String,
    pub at: u32,
    pub region: &'static str,
    pub target: &'static str,
    pub up: bool,
    pub response_ms: u32,
    pub latency_ms: u32,
    pub bandwidth: u64,
    pub load: f64,
}

/// One commerce event as the test knows it.
#[derive(Clone, Debug)]
pub struct Sale {
    pub id: String,
    pub store: &'static str,
    pub at: u32,
    pub kind: &'static str,
    pub product: u64,
    pub category: &'static str,
    pub seller: u64,
    pub currency: &'static str,
    pub price_nanos: i64,
    pub quantity: u32,
    pub user: u64,
    pub session: String,
}

/// A category's id, derived from its code so that each code of the fixture has its own.
pub fn category_id(code: &str) -> u64 {
    code.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000
}

pub fn region_code(region: &str) -> i8 {
    match region {
        "europe" => 1,
        "america" => 2,
        _ => 3,
    }
}

fn kind_code(kind: &str) -> i8 {
    match kind {
        "view" => 1,
        "cart" => 2,
        "remove_from_cart" => 3,
        _ => 4,
    }
}

/// 100 probes per region on `DAY` between 10:00 and 10:05, two targets. Europe's minute
/// 10:02 answers in 800 ms (p95 above the SLO); Asia loses one probe in 20 at 10:03 and
/// 10:04 (availability 95 %) and peaks at load 0.9.
pub fn probes() -> Vec<Probe> {
    let mut out = Vec::new();
    for region in ["europe", "america", "asia"] {
        for minute in 0..5u32 {
            for i in 0..20u32 {
                let slow = region == "europe" && minute == 2;
                let down = region == "asia" && minute >= 3 && i == 7;
                out.push(Probe {
                    id: format!("p-{region}-{minute}-{i}"),
                    at: unix(DAY, 36_000 + i64::from(minute) * 60 + i64::from(i)),
                    region,
                    target: if i % 2 == 0 {
                        "checkout"
                    } else {
                        "/api/<cart>"
                    },
                    up: !down,
                    response_ms: if slow {
                        800 + i
                    } else {
                        100 + (i * 37 + minute * 11) % 200
                    },
                    latency_ms: 10 + (i * 13 + minute) % 40,
                    // every fifth probe has no payload URL: bandwidth not measured
                    bandwidth: if i % 5 == 4 {
                        0
                    } else {
                        1_000_000 + u64::from(i) * 1_000
                    },
                    load: if region == "asia" && minute == 4 && i == 3 {
                        0.9
                    } else {
                        0.2 + f64::from(i) / 100.0
                    },
                });
            }
        }
    }
    out
}

/// A view of product 1 by `store`, at `at`.
pub fn view(id: &str, store: &'static str, at: u32) -> Sale {
    Sale {
        id: id.to_owned(),
        store,
        at,
        kind: "view",
        product: 1,
        category: "c",
        seller: 1,
        currency: "EUR",
        price_nanos: 1_000_000_000,
        quantity: 0,
        user: 1,
        session: "s".into(),
    }
}

/// Commerce on `DAY`, the day before, and three days before (unsold window only).
pub fn sales() -> Vec<Sale> {
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut add = |day: Date, kind: &'static str, product: u64, count: u32| {
        let (category, seller, currency, price_nanos, quantity) = match product {
            1 => ("electronics.phone", 1, "EUR", 10_500_000_000, 2),
            2 => ("home.kettle", 2, "USD", 100_000_000_000, 1),
            3 => ("home.kettle", 2, "USD", 25_000_000_000, 1),
            _ => ("<b>books</b> & co", 3, "SGD", 20_000_000_001, 3),
        };
        for _ in 0..count {
            n += 1;
            out.push(Sale {
                id: format!("c-{n}"),
                store: "s1",
                at: unix(day, 40_000 + n as i64),
                kind,
                product,
                category,
                seller,
                currency,
                price_nanos,
                quantity,
                user: n % 7,
                session: format!("s-{}", n % 5),
            });
        }
    };
    let before = DAY.previous_day().unwrap();
    for (kind, product, count) in [
        ("view", 1, 10),
        ("cart", 1, 4),
        ("purchase", 1, 3),
        ("view", 2, 5),
        ("cart", 2, 1),
        ("purchase", 2, 1),
        ("view", 3, 6),
        ("cart", 3, 2),
        ("remove_from_cart", 3, 1),
        ("view", 4, 2),
        ("purchase", 4, 1),
    ] {
        add(DAY, kind, product, count);
    }
    for (kind, product, count) in [
        ("view", 1, 5),
        ("purchase", 1, 1),
        ("view", 2, 3),
        ("purchase", 2, 1),
    ] {
        add(before, kind, product, count);
    }
    add(DAY - time::Duration::days(3), "view", 3, 4);
    out
}

/// A fresh database with the migrations applied, and a client for it.
pub async fn database() -> clickhouse::Client {
    let ch = testkit::shared_clickhouse();
    let name = testkit::unique_name("reporter");
    let server = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false);
    pipeline::schema::migrate(&server, &name).await.unwrap();
    server.with_database(&name)
}

/// Inserts every row twice, in separate inserts (separate parts), as a redelivery would.
pub async fn insert(client: &clickhouse::Client, probes: &[Probe], sales: &[Sale]) {
    for _ in 0..2 {
        let mut insert = client
            .insert::<ProbeRow<'_>>("probe_results")
            .await
            .unwrap();
        for p in probes {
            insert
                .write(&ProbeRow {
                    event_id: uuid_of(&p.id),
                    occurred_at: p.at,
                    received_at: p.at + 1,
                    region: region_code(p.region),
                    store_id: "s1",
                    target: p.target,
                    up: p.up as u8,
                    status_code: if p.up { 200 } else { 503 },
                    response_time_ms: p.response_ms,
                    network_latency_ms: p.latency_ms,
                    bandwidth_bytes_per_second: p.bandwidth,
                    cpu_load: p.load,
                    vantage_region: 0,
                    tls_handshake_ms: 0,
                    time_to_first_byte_ms: 0,
                })
                .await
                .unwrap();
        }
        insert.end().await.unwrap();
        let mut insert = client
            .insert::<CommerceRow<'_>>("commerce_events")
            .await
            .unwrap();
        for s in sales {
            insert.write(&commerce_row(s)).await.unwrap();
        }
        insert.end().await.unwrap();
    }
}

/// The row of `s`, received a second after it occurred.
pub fn commerce_row(s: &Sale) -> CommerceRow<'_> {
    CommerceRow {
        event_id: uuid_of(&s.id),
        occurred_at: s.at,
        received_at: s.at + 1,
        region: 1,
        store_id: s.store,
        r#type: kind_code(s.kind),
        product_id: s.product,
        category_id: category_id(s.category),
        category_code: s.category,
        brand: "b",
        seller_id: s.seller,
        currency: s.currency,
        price: s.price_nanos,
        quantity: s.quantity,
        user_id: s.user,
        session_id: &s.session,
    }
}

/// A database holding the fixture, twice over.
pub async fn seeded() -> clickhouse::Client {
    let client = database().await;
    insert(&client, &probes(), &sales()).await;
    client
}

/// A fresh bucket on the shared S3 server and a store writing to it.
pub async fn store() -> (String, ReportStore) {
    let bucket = testkit::unique_bucket();
    testkit::shared_s3().create_bucket(&bucket).unwrap();
    let store = store_for(&bucket).await;
    (bucket, store)
}

/// A store writing to `bucket` on the shared S3 server, which may not exist yet.
pub async fn store_for(bucket: &str) -> ReportStore {
    let s3 = testkit::shared_s3();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(s3.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "reporter-tests",
        ))
        .load()
        .await;
    let args = S3Args {
        s3_bucket: bucket.to_owned(),
        s3_force_path_style: true,
        s3_create_bucket: false,
    };
    ReportStore::new(&config, &args.bucket()).await.unwrap()
}

/// Options with the two largest sellers reported.
pub fn options() -> RunOptions {
    RunOptions {
        sellers: Sellers::Largest(2),
        ..RunOptions::default()
    }
}

/// Every key in `bucket`.
pub fn keys(bucket: &str) -> BTreeSet<String> {
    testkit::shared_s3()
        .list_keys(bucket)
        .unwrap()
        .into_iter()
        .collect()
}

/// ClickHouse's `quantileExact(level)`: the element at ⌊level·n⌋ of the sorted values.
pub fn quantile_exact(values: &[u32], level: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    f64::from(v[(level * v.len() as f64) as usize])
}
