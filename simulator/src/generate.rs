//! The seeded event generator: a catalog with Zipf popularity, user sessions walking the
//! funnel view → cart → (remove) → purchase at per-category rates, and probes following
//! regional latency profiles and the scenario's incidents. Time runs on a simulated clock
//! (one event every 1/rate seconds), so the same seed gives the same events, ids included,
//! however fast the machine sends them.
//!
//! The generator draws [`Draft`]s: events whose text fields are indices into the
//! [`Model`] (catalog, targets, currencies), so drawing allocates nothing per event. A
//! draft becomes a protobuf [`Event`] with [`Model::event`], or is written straight into a
//! request's bytes by [`crate::request`].

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use pipeline::{
    proto::ingest::{CommerceEvent, CommerceEventType, Event, Money, ProbeResult, event::Payload},
    region::Region,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    fleet::Store,
    scenario::{ProbeSchedule, Rates, Scenario},
};

/// One product of the catalog.
#[derive(Clone, Debug)]
pub struct Product {
    pub id: u64,
    pub category: usize,
    pub category_id: u64,
    pub category_code: String,
    pub brand: &'static str,
    pub seller_id: u64,
    /// Unit price in cents.
    pub price_cents: i64,
}

const BRANDS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "",
];
/// Longest session, so one unlucky draw cannot produce an endless session.
const MAX_VIEWS: usize = 50;

/// The product catalog, most popular first, categories taking turns. Prices come from a
/// fixed seed so that a product costs the same in every run.
pub fn catalog(products: usize, categories: &[String]) -> Vec<Product> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..products)
        .map(|i| {
            let c = i % categories.len();
            Product {
                id: 1_000 + i as u64,
                category: c,
                category_id: 100 + c as u64,
                category_code: categories[c].clone(),
                brand: BRANDS[i % BRANDS.len()],
                seller_id: 1 + (i % 12) as u64,
                price_cents: rng.random_range(199..200_000),
            }
        })
        .collect()
}

/// One planned step of a session.
#[derive(Clone, Copy, Debug)]
struct Step {
    kind: CommerceEventType,
    product: usize,
    quantity: u32,
}

/// A user's visit: the steps it still has to take, planned when it starts.
struct Session {
    user_id: u64,
    /// The random part of the session id; see [`session_id`].
    session: u64,
    steps: VecDeque<Step>,
}

/// A session id as events carry it: `s-` and 16 lowercase hex digits.
pub fn session_id(session: u64) -> String {
    format!("s-{session:016x}")
}

/// A version 4 UUID in its lowercase hyphenated form, kept as bytes so that drawing one
/// allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventId([u8; 36]);

impl EventId {
    pub fn from_random(bytes: [u8; 16]) -> EventId {
        let mut text = [0u8; 36];
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut text);
        EventId(text)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a hyphenated uuid is ascii")
    }

    pub fn as_bytes(&self) -> &[u8; 36] {
        &self.0
    }
}

impl std::fmt::Debug for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generated event whose strings are still indices into the [`Model`]; its store is
/// the request's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draft {
    pub event_id: EventId,
    /// `occurred_at`.
    pub seconds: i64,
    pub nanos: i32,
    pub body: Body,
}

/// A draft's payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Body {
    Commerce {
        kind: CommerceEventType,
        /// Index into [`Model::catalog`].
        product: usize,
        quantity: u32,
        user_id: u64,
        /// See [`session_id`].
        session: u64,
    },
    Probe {
        /// Index into the scenario's `probes.targets`.
        target: usize,
        /// Where the probe was taken from; `None` for the store's own probe.
        vantage: Option<Region>,
        up: bool,
        status_code: u32,
        response_time_ms: u32,
        network_latency_ms: u32,
        bandwidth_bytes_per_second: u64,
        cpu_load: f64,
    },
}

/// What drafts' indices refer to: the scenario and its catalog. Shared, read-only, by the
/// generator and by whoever turns drafts into events, bytes or ground truth.
pub struct Model {
    pub scenario: Scenario,
    pub catalog: Vec<Product>,
}

impl Model {
    /// The currency prices are given in by the stores of `region`.
    pub fn currency(&self, region: Region) -> &str {
        &self.scenario.region(region).currency
    }

    /// Probe target number `target`.
    pub fn target(&self, target: usize) -> &str {
        &self.scenario.probes.targets[target]
    }

    /// The event `draft` stands for, sent by `store`.
    pub fn event(&self, store: &Store, draft: &Draft) -> Event {
        let payload = match draft.body {
            Body::Commerce {
                kind,
                product,
                quantity,
                user_id,
                session,
            } => {
                let p = &self.catalog[product];
                let (units, nanos) = p.price();
                Payload::Commerce(CommerceEvent {
                    r#type: kind as i32,
                    product_id: p.id,
                    category_id: p.category_id,
                    category_code: p.category_code.clone(),
                    brand: p.brand.to_owned(),
                    seller_id: p.seller_id,
                    price: Some(Money {
                        currency_code: self.currency(store.region).to_owned(),
                        units,
                        nanos,
                    }),
                    quantity,
                    user_id,
                    session_id: session_id(session),
                })
            }
            Body::Probe {
                target,
                vantage,
                up,
                status_code,
                response_time_ms,
                network_latency_ms,
                bandwidth_bytes_per_second,
                cpu_load,
            } => Payload::Probe(ProbeResult {
                target: self.target(target).to_owned(),
                vantage_region: vantage.map_or(0, |v| v.to_proto() as i32),
                up,
                status_code,
                response_time_ms,
                network_latency_ms,
                bandwidth_bytes_per_second,
                cpu_load,
                ..ProbeResult::default()
            }),
        };
        Event {
            event_id: draft.event_id.as_str().to_owned(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: draft.seconds,
                nanos: draft.nanos,
            }),
            store_id: store.id.clone(),
            region: store.region.to_proto() as i32,
            payload: Some(payload),
        }
    }
}

impl Product {
    /// The unit price as `Money`'s units and nanos.
    pub fn price(&self) -> (i64, i32) {
        (
            self.price_cents / 100,
            (self.price_cents % 100) as i32 * 10_000_000,
        )
    }
}

/// What the generator remembers per store.
#[derive(Default)]
struct StoreState {
    sessions: Vec<Session>,
    events: u64,
    next_probe_s: f64,
    next_target: usize,
}

/// Generates events for a fleet.
pub struct Generator {
    rng: ChaCha8Rng,
    model: Arc<Model>,
    rates: Vec<Rates>,
    /// Cumulative Zipf weights over the catalog, for sampling by binary search.
    popularity: Vec<f64>,
    schedule: ProbeSchedule,
    time_base: i64,
    /// The simulated clock: events per simulated second.
    events_per_second: f64,
    emitted: u64,
    store_index: HashMap<String, usize>,
    stores: Vec<StoreState>,
}

impl Generator {
    /// A generator playing the default scenario at its default clock.
    pub fn new(seed: u64, time_base: i64) -> Generator {
        let scenario = Scenario::default_scenario();
        let eps = scenario.clock.events_per_second;
        Generator::with_scenario(scenario, seed, time_base, eps)
    }

    /// A generator for `scenario` whose clock advances `events_per_second` per second.
    pub fn with_scenario(
        scenario: Scenario,
        seed: u64,
        time_base: i64,
        events_per_second: f64,
    ) -> Generator {
        let codes: Vec<String> = scenario.categories.iter().map(|c| c.code.clone()).collect();
        let catalog = catalog(scenario.catalog.products, &codes);
        let rates = scenario
            .categories
            .iter()
            .map(|c| scenario.rates(c))
            .collect();
        let mut total = 0.0;
        let popularity = (1..=catalog.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(scenario.catalog.zipf_exponent);
                total
            })
            .collect();
        let schedule = scenario
            .probe_schedule()
            .expect("parsed scenarios have a schedule");
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            model: Arc::new(Model { scenario, catalog }),
            rates,
            popularity,
            schedule,
            time_base,
            events_per_second: events_per_second.max(f64::MIN_POSITIVE),
            emitted: 0,
            store_index: HashMap::new(),
            stores: Vec::new(),
        }
    }

    pub fn catalog(&self) -> &[Product] {
        &self.model.catalog
    }

    /// The model this generator's drafts refer to.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Seconds since the time base on the simulated clock, at the next event.
    pub fn offset_s(&self) -> f64 {
        self.emitted as f64 / self.events_per_second
    }

    fn product(&mut self) -> usize {
        let total = *self.popularity.last().expect("non-empty catalog");
        let x = self.rng.random::<f64>() * total;
        self.popularity
            .partition_point(|&w| w < x)
            .min(self.model.catalog.len() - 1)
    }

    /// `n` events from `store`: probes when the schedule says so, commerce events otherwise.
    pub fn batch(&mut self, store: &Store, n: usize) -> Vec<Event> {
        self.events(store, n, true)
    }

    /// `n` commerce events from `store`, no probes (what a behaviour dataset holds).
    pub fn commerce_batch(&mut self, store: &Store, n: usize) -> Vec<Event> {
        self.events(store, n, false)
    }

    fn events(&mut self, store: &Store, n: usize, probes: bool) -> Vec<Event> {
        let s = self.state(store);
        (0..n)
            .map(|_| {
                let draft = self.draft(s, store.region, probes);
                self.model.event(store, &draft)
            })
            .collect()
    }

    /// The drafts of `n` events from `store`, appended to `out`: the same events
    /// [`Generator::batch`] would make, without their strings.
    pub fn drafts(&mut self, store: &Store, n: usize, out: &mut Vec<Draft>) {
        let s = self.state(store);
        out.reserve(n);
        for _ in 0..n {
            out.push(self.draft(s, store.region, true));
        }
    }

    fn state(&mut self, store: &Store) -> usize {
        if let Some(&i) = self.store_index.get(&store.id) {
            return i;
        }
        self.stores.push(StoreState::default());
        self.store_index
            .insert(store.id.clone(), self.stores.len() - 1);
        self.stores.len() - 1
    }

    fn draft(&mut self, s: usize, region: Region, probes: bool) -> Draft {
        let offset = self.offset_s();
        self.emitted += 1;
        self.stores[s].events += 1;
        let probe_due = probes
            && match self.schedule {
                ProbeSchedule::EveryNEvents(n) => self.stores[s].events.is_multiple_of(n),
                ProbeSchedule::PerSecond(rate) => {
                    let due = offset >= self.stores[s].next_probe_s;
                    if due {
                        self.stores[s].next_probe_s += 1.0 / rate;
                    }
                    due
                }
            };
        let event_id = EventId::from_random(self.rng.random());
        let body = if probe_due {
            self.probe(s, region, offset)
        } else {
            self.commerce(s)
        };
        Draft {
            event_id,
            seconds: self.time_base + offset as i64,
            nanos: (offset.fract() * 1e9) as i32,
            body,
        }
    }

    /// Plans a session: views, some carted right after viewing; then some carted items
    /// removed; then the rest purchased at the category's rate. A removed item is never
    /// purchased, and nothing is carted without being viewed first.
    fn plan_session(&mut self) -> Session {
        let mut steps = VecDeque::new();
        let mut cart = Vec::new();
        let keep_browsing = 1.0 - 1.0 / self.model.scenario.sessions.mean_views;
        let mut views = 0;
        loop {
            let product = self.product();
            steps.push_back(Step {
                kind: CommerceEventType::View,
                product,
                quantity: 1,
            });
            views += 1;
            let rates = self.rates[self.model.catalog[product].category];
            if self.rng.random::<f64>() < rates.view_to_cart {
                let quantity = self.rng.random_range(1..4);
                steps.push_back(Step {
                    kind: CommerceEventType::Cart,
                    product,
                    quantity,
                });
                cart.push(Step {
                    kind: CommerceEventType::Purchase,
                    product,
                    quantity,
                });
            }
            if views >= MAX_VIEWS || self.rng.random::<f64>() >= keep_browsing {
                break;
            }
        }
        let mut purchases = Vec::new();
        for item in cart {
            let rates = self.rates[self.model.catalog[item.product].category];
            if self.rng.random::<f64>() < rates.remove {
                steps.push_back(Step {
                    kind: CommerceEventType::RemoveFromCart,
                    ..item
                });
            } else if self.rng.random::<f64>() < rates.cart_to_purchase {
                purchases.push(item);
            }
        }
        steps.extend(purchases);
        Session {
            user_id: self.rng.random_range(1..1_000_000),
            session: self.rng.random(),
            steps,
        }
    }

    fn commerce(&mut self, store: usize) -> Body {
        let open = self.stores[store].sessions.len();
        let slot = if open < self.model.scenario.sessions.concurrent_per_store {
            let session = self.plan_session();
            self.stores[store].sessions.push(session);
            open
        } else {
            self.rng.random_range(0..open)
        };
        let session = &mut self.stores[store].sessions[slot];
        let step = session
            .steps
            .pop_front()
            .expect("sessions are removed once empty");
        let (user_id, session_id) = (session.user_id, session.session);
        if session.steps.is_empty() {
            self.stores[store].sessions.swap_remove(slot);
        }
        Body::Commerce {
            kind: step.kind,
            product: step.product,
            quantity: step.quantity,
            user_id,
            session: session_id,
        }
    }

    fn probe(&mut self, store: usize, region: Region, offset_s: f64) -> Body {
        let scenario = &self.model.scenario;
        let probe = self.stores[store].next_target;
        let target = probe % scenario.probes.targets.len();
        self.stores[store].next_target += 1;
        let vantage = scenario.vantage(probe);
        let distance = scenario.cross_region_ms(vantage, region);
        let profile = scenario.region(region);
        let effect = scenario.effect(region, &scenario.probes.targets[target], offset_s);
        let reachable = self.rng.random::<f64>() < profile.availability;
        let up = reachable && effect.outage_status.is_none();
        let status_code = match effect.outage_status {
            Some(status) => status,
            None if up => 200,
            None => 503,
        };
        let response =
            profile.response_ms.base + self.rng.random_range(0..=profile.response_ms.jitter);
        let network =
            profile.network_ms.base + self.rng.random_range(0..=profile.network_ms.jitter);
        let bandwidth = self.rng.random_range(
            profile.bandwidth_bytes_per_second.min..profile.bandwidth_bytes_per_second.max,
        );
        let load = self.rng.random_range(profile.load.min..profile.load.max);
        Body::Probe {
            target,
            vantage,
            up,
            status_code,
            // the request crosses the distance once more after the connection
            response_time_ms: (response as f64 * effect.latency_factor).round() as u32 + distance,
            network_latency_ms: network + distance,
            bandwidth_bytes_per_second: bandwidth,
            cpu_load: effect.load_floor.map_or(load, |floor| load.max(floor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::fleet;

    fn commerce(e: &Event) -> Option<&CommerceEvent> {
        match &e.payload {
            Some(Payload::Commerce(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn same_seed_same_events() {
        let stores = fleet(1, "s");
        let a = Generator::new(1, 1_800_000_000).batch(&stores[0], 500);
        let b = Generator::new(1, 1_800_000_000).batch(&stores[0], 500);
        let c = Generator::new(2, 1_800_000_000).batch(&stores[0], 500);
        assert_eq!(a, b, "same seed, same events, ids included");
        assert_ne!(a, c);
        let ids: std::collections::BTreeSet<_> = a.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), a.len(), "ids are unique");
    }

    #[test]
    fn sessions_walk_the_funnel_in_order() {
        let stores = fleet(2, "s");
        let mut g = Generator::new(5, 1_800_000_000);
        let mut by_session: BTreeMap<String, Vec<CommerceEvent>> = BTreeMap::new();
        for round in 0..40 {
            for e in g.batch(&stores[round % stores.len()], 500) {
                if let Some(c) = commerce(&e) {
                    by_session
                        .entry(c.session_id.clone())
                        .or_default()
                        .push(c.clone());
                }
            }
        }
        let mut kinds = [0u64; 5];
        for (session, events) in &by_session {
            let user = events[0].user_id;
            let mut viewed = std::collections::BTreeSet::new();
            let mut cart: BTreeMap<u64, u32> = BTreeMap::new();
            for e in events {
                assert_eq!(e.user_id, user, "{session}: one user per session");
                kinds[e.r#type as usize] += 1;
                match CommerceEventType::try_from(e.r#type).unwrap() {
                    CommerceEventType::View => {
                        viewed.insert(e.product_id);
                    }
                    CommerceEventType::Cart => {
                        assert!(
                            viewed.contains(&e.product_id),
                            "{session}: cart before view"
                        );
                        *cart.entry(e.product_id).or_default() += e.quantity;
                    }
                    CommerceEventType::RemoveFromCart | CommerceEventType::Purchase => {
                        let held = cart.get_mut(&e.product_id);
                        let held = held.unwrap_or_else(|| panic!("{session}: not in the cart"));
                        assert!(*held >= e.quantity, "{session}: more than carted");
                        *held -= e.quantity;
                    }
                    CommerceEventType::Unspecified => unreachable!(),
                }
            }
        }
        let [_, views, carts, removals, purchases] = kinds;
        assert!(views > carts && carts > purchases && purchases > 0 && removals > 0);
    }

    #[test]
    fn conversion_rates_follow_the_category() {
        let stores = fleet(1, "s");
        let mut g = Generator::new(9, 1_800_000_000);
        let mut views: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for _ in 0..200 {
            for e in g.commerce_batch(&stores[0], 1_000) {
                let c = commerce(&e).unwrap();
                let entry = views.entry(c.category_code.clone()).or_default();
                match CommerceEventType::try_from(c.r#type).unwrap() {
                    CommerceEventType::View => entry.0 += 1,
                    CommerceEventType::Cart => entry.1 += 1,
                    _ => {}
                }
            }
        }
        let ratio = |code: &str| views[code].1 as f64 / views[code].0 as f64;
        // the scenario says 0.10 for sofas and 0.40 for toys
        assert!((ratio("furniture.living_room.sofa") - 0.10).abs() < 0.03);
        assert!((ratio("kids.toys") - 0.40).abs() < 0.03);
    }

    #[test]
    fn incidents_shape_the_probes_in_their_window() {
        let stores = fleet(1, "s");
        let asia = stores.iter().find(|s| s.region == Region::Asia).unwrap();
        // 100 events per simulated second: offsets 0..30 s in 3000 events
        let mut g = Generator::with_scenario(Scenario::default_scenario(), 1, 1_000, 100.0);
        let events = g.batch(asia, 3_000);
        let mut in_window = 0;
        for e in &events {
            let Some(Payload::Probe(p)) = &e.payload else {
                continue;
            };
            let at = e.occurred_at.unwrap().seconds - 1_000;
            if p.target == "checkout" && (12..15).contains(&at) {
                in_window += 1;
                assert!(!p.up && p.status_code == 503, "outage at {at}: {p:?}");
            }
        }
        assert!(in_window > 0, "the outage window saw probes");
        let probes = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::Probe(_))))
            .count();
        assert_eq!(probes, 300, "one probe every 10 events of a store");
    }

    #[test]
    fn probes_can_follow_the_simulated_clock() {
        let text = crate::scenario::DEFAULT_TOML.replacen(
            "every_n_events = 10",
            "per_store_per_second = 2.0",
            1,
        );
        let scenario = Scenario::parse(&text).unwrap();
        let stores = fleet(1, "s");
        // 100 events per simulated second: 1000 events of one store span 10 s
        let mut g = Generator::with_scenario(scenario, 1, 1_000, 100.0);
        let probes = g
            .batch(&stores[0], 1_000)
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::Probe(_))))
            .count();
        assert_eq!(probes, 20, "two probes per simulated second");
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
                sender: Some(pipeline::validate::Sender::Store {
                    store_id: &store.id,
                    region: store.region,
                }),
            };
            let checked = pipeline::validate::check_batch(&ctx, events.clone());
            assert!(checked.is_clean(), "{:?}", checked.rejected.first());
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e.payload, Some(Payload::Probe(_))))
            );
        }
    }
}
