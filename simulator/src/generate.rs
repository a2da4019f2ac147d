//! The seeded event generator: a catalog with Zipf-like popularity, a funnel of views,
//! carts, removals and purchases, and probes following regional latency profiles.
//! The same seed gives the same events, ids included.

use pipeline::{
    proto::ingest::{CommerceEvent, CommerceEventType, Event, Money, ProbeResult, event::Payload},
    region::Region,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fleet::{Store, currency};

/// One product of the catalog.
#[derive(Clone, Debug)]
pub struct Product {
    pub id: u64,
    pub category_id: u64,
    pub category_code: &'static str,
    pub brand: &'static str,
    pub seller_id: u64,
    /// Unit price in cents.
    pub price_cents: i64,
}

const CATEGORIES: &[&str] = &[
    "electronics.smartphone",
    "electronics.audio.headphone",
    "computers.notebook",
    "appliances.kitchen.kettle",
    "apparel.shoes",
    "furniture.living_room.sofa",
    "sport.bicycle",
    "kids.toys",
];
const BRANDS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "",
];
const TARGETS: &[&str] = &["checkout", "/api/cart", "search"];

/// The product catalog, most popular first.
pub fn catalog(products: usize) -> Vec<Product> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..products)
        .map(|i| {
            let c = i % CATEGORIES.len();
            Product {
                id: 1_000 + i as u64,
                category_id: 100 + c as u64,
                category_code: CATEGORIES[c],
                brand: BRANDS[i % BRANDS.len()],
                seller_id: 1 + (i % 12) as u64,
                price_cents: rng.random_range(199..200_000),
            }
        })
        .collect()
}

/// Generates events for a fleet.
pub struct Generator {
    rng: ChaCha8Rng,
    catalog: Vec<Product>,
    /// Cumulative Zipf weights over the catalog, for sampling by binary search.
    popularity: Vec<f64>,
    time_base: i64,
}

impl Generator {
    pub fn new(seed: u64, time_base: i64) -> Generator {
        let catalog = catalog(200);
        let mut total = 0.0;
        let popularity = (1..=catalog.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.1);
                total
            })
            .collect();
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            catalog,
            popularity,
            time_base,
        }
    }

    pub fn catalog(&self) -> &[Product] {
        &self.catalog
    }

    fn product(&mut self) -> usize {
        let total = *self.popularity.last().expect("non-empty catalog");
        let x = self.rng.random::<f64>() * total;
        self.popularity
            .partition_point(|&w| w < x)
            .min(self.catalog.len() - 1)
    }

    fn event_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// `n` events from `store`: about one in ten a probe, the rest commerce events.
    pub fn batch(&mut self, store: &Store, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.event(store)).collect()
    }

    fn event(&mut self, store: &Store) -> Event {
        let event_id = self.event_id();
        let occurred_at = Some(prost_types::Timestamp {
            seconds: self.time_base - self.rng.random_range(0..120),
            nanos: 0,
        });
        let payload = if self.rng.random::<f64>() < 0.1 {
            Payload::Probe(self.probe(store.region))
        } else {
            Payload::Commerce(self.commerce(store.region))
        };
        Event {
            event_id,
            occurred_at,
            store_id: store.id.clone(),
            region: store.region.to_proto() as i32,
            payload: Some(payload),
        }
    }

    fn commerce(&mut self, region: Region) -> CommerceEvent {
        let index = self.product();
        let p = self.catalog[index].clone();
        let roll = self.rng.random::<f64>();
        let kind = match roll {
            r if r < 0.70 => CommerceEventType::View,
            r if r < 0.85 => CommerceEventType::Cart,
            r if r < 0.90 => CommerceEventType::RemoveFromCart,
            _ => CommerceEventType::Purchase,
        };
        let quantity = if kind == CommerceEventType::View {
            1
        } else {
            self.rng.random_range(1..4)
        };
        CommerceEvent {
            r#type: kind as i32,
            product_id: p.id,
            category_id: p.category_id,
            category_code: p.category_code.to_owned(),
            brand: p.brand.to_owned(),
            seller_id: p.seller_id,
            price: Some(Money {
                currency_code: currency(region).to_owned(),
                units: p.price_cents / 100,
                nanos: (p.price_cents % 100) as i32 * 10_000_000,
            }),
            quantity,
            user_id: self.rng.random_range(1..50_000),
            session_id: format!("s{}", self.rng.random_range(1..200_000u32)),
        }
    }

    fn probe(&mut self, region: Region) -> ProbeResult {
        let (base_ms, jitter_ms) = match region {
            Region::Europe => (40, 30),
            Region::America => (70, 40),
            Region::Asia => (140, 80),
        };
        let up = self.rng.random::<f64>() < 0.995;
        let latency = base_ms / 2 + self.rng.random_range(0..jitter_ms / 2);
        ProbeResult {
            target: TARGETS[self.rng.random_range(0..TARGETS.len())].to_owned(),
            up,
            status_code: if up { 200 } else { 503 },
            response_time_ms: base_ms + self.rng.random_range(0..jitter_ms * 3),
            network_latency_ms: latency,
            bandwidth_bytes_per_second: self.rng.random_range(50_000_000..200_000_000),
            cpu_load: self.rng.random_range(0.1..0.9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::fleet;

    #[test]
    fn same_seed_same_events() {
        let stores = fleet(1, "s");
        let a = Generator::new(1, 1_800_000_000).batch(&stores[0], 50);
        let b = Generator::new(1, 1_800_000_000).batch(&stores[0], 50);
        let c = Generator::new(2, 1_800_000_000).batch(&stores[0], 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn generated_events_pass_the_gateway_rules() {
        let stores = fleet(1, "s");
        let limits = pipeline::validate::Limits::default();
        let mut g = Generator::new(3, 1_800_000_000);
        for store in &stores {
            let events = g.batch(store, 500);
            let ctx = pipeline::validate::Context {
                limits: &limits,
                now_unix: 1_800_000_000,
                sender: Some(pipeline::validate::Sender {
                    store_id: &store.id,
                    region: store.region,
                }),
            };
            let verdict = pipeline::validate::check_batch(&ctx, &events);
            assert!(verdict.is_clean(), "{:?}", verdict.rejected.first());
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e.payload, Some(Payload::Probe(_))))
            );
        }
    }
}
