//! The ground truth: what the gateway acknowledged, aggregated the way reports aggregate,
//! so tests can compare a report with what was really sent.

use std::collections::BTreeMap;

use pipeline::{
    proto::ingest::{CommerceEventType, Event, event::Payload},
    region::Region,
};
use serde::Serialize;

use crate::{
    fleet::Store,
    generate::{Body, Draft, Model},
};

/// Counts of one funnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Funnel {
    pub views: u64,
    pub carts: u64,
    pub removals: u64,
    pub purchases: u64,
    /// Units purchased.
    pub units: u64,
    /// Purchase revenue per currency, in nano units.
    pub revenue_nanos: BTreeMap<String, i128>,
}

/// Probes of one region (or one target of a region).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Probes {
    pub probes: u64,
    pub up: u64,
    /// Every response time, for exact quantiles.
    pub response_times_ms: Vec<u32>,
    /// Every network latency, for exact quantiles.
    pub network_latencies_ms: Vec<u32>,
    /// Sum and count of the bandwidths measured (a probe reporting 0 measured none).
    pub bandwidth_sum: u128,
    pub bandwidth_samples: u64,
}

/// One probe's figures, as [`Probes::add`] records them.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub up: bool,
    pub response_time_ms: u32,
    pub network_latency_ms: u32,
    pub bandwidth_bytes_per_second: u64,
}

/// Exact quantiles of a set of milliseconds, computed as ClickHouse's `quantileExact` does.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<u32>,
    pub p95: Option<u32>,
    pub p99: Option<u32>,
}

impl Quantiles {
    pub fn of(values: &[u32]) -> Quantiles {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        Quantiles {
            p50: quantile_exact(&sorted, 0.5),
            p95: quantile_exact(&sorted, 0.95),
            p99: quantile_exact(&sorted, 0.99),
        }
    }
}

/// ClickHouse's `quantileExact(level)` of sorted values: the element at 0-based index
/// `floor(level * n)` (the last one for level >= 1). This is not textbook nearest-rank
/// (`ceil(level * n) - 1`): for n = 4 the median is the 3rd value, not the 2nd. The
/// product is computed in f64 and truncated, exactly as ClickHouse does in C++.
pub fn quantile_exact(sorted: &[u32], level: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let index = if level < 1.0 {
        (level * sorted.len() as f64) as usize
    } else {
        sorted.len() - 1
    };
    sorted.get(index.min(sorted.len() - 1)).copied()
}

impl Probes {
    /// Share of probes that found the target up; `None` without probes.
    pub fn availability(&self) -> Option<f64> {
        (self.probes > 0).then(|| self.up as f64 / self.probes as f64)
    }

    /// Average of the measured bandwidths; `None` when no probe measured one.
    pub fn bandwidth_avg(&self) -> Option<f64> {
        (self.bandwidth_samples > 0)
            .then(|| self.bandwidth_sum as f64 / self.bandwidth_samples as f64)
    }

    fn add(&mut self, s: Sample) {
        self.probes += 1;
        self.up += s.up as u64;
        self.response_times_ms.push(s.response_time_ms);
        self.network_latencies_ms.push(s.network_latency_ms);
        if s.bandwidth_bytes_per_second > 0 {
            self.bandwidth_sum += u128::from(s.bandwidth_bytes_per_second);
            self.bandwidth_samples += 1;
        }
    }
}

/// Uptime as time of one series or a sum of series, by the rules of the reporter's
/// `uptime.rs`, computed here again from what the gateway acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UptimeMinutes {
    pub observed: u64,
    pub up: u64,
    pub down: u64,
    pub outages: u64,
}

impl UptimeMinutes {
    /// From one series' minutes: minute start → (probes, up), in time order.
    pub fn of_series(minutes: &BTreeMap<i64, (u64, u64)>) -> UptimeMinutes {
        let mut u = UptimeMinutes::default();
        let mut previous_down = false;
        for &(probes, up) in minutes.values() {
            let down = 2 * up < probes;
            u.observed += 1;
            if down {
                u.down += 1;
                u.outages += u64::from(!previous_down);
            } else {
                u.up += 1;
            }
            previous_down = down;
        }
        u
    }

    pub fn plus(self, o: UptimeMinutes) -> UptimeMinutes {
        UptimeMinutes {
            observed: self.observed + o.observed,
            up: self.up + o.up,
            down: self.down + o.down,
            outages: self.outages + o.outages,
        }
    }
}

/// In JSON, probes appear as counts, availability and quantiles, not the raw samples.
impl Serialize for Probes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Probes", 5)?;
        st.serialize_field("probes", &self.probes)?;
        st.serialize_field("up", &self.up)?;
        st.serialize_field("availability", &self.availability())?;
        st.serialize_field("response_time_ms", &Quantiles::of(&self.response_times_ms))?;
        st.serialize_field(
            "network_latency_ms",
            &Quantiles::of(&self.network_latencies_ms),
        )?;
        st.end()
    }
}

/// Scratch space of [`Truth::accept_drafts`], kept from request to request so that counting
/// a request allocates nothing.
#[derive(Default)]
pub struct Tally {
    /// Indexed by catalog index; all zero between requests.
    products: Vec<Counts>,
    /// The products counted in this request, each once.
    touched: Vec<usize>,
    /// `region/target` of every region and target, indexed region-major.
    probe_keys: Vec<String>,
    /// `vantage/region` of every vantage (`self` first, then the regions) and region,
    /// indexed vantage-major.
    vantage_keys: Vec<String>,
}

/// A funnel's counts for one product and one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    views: u64,
    carts: u64,
    removals: u64,
    purchases: u64,
    units: u64,
    revenue_nanos: i128,
}

impl Counts {
    fn add(&mut self, kind: CommerceEventType, quantity: u32, price_nanos: i128) {
        match kind {
            CommerceEventType::View => self.views += 1,
            CommerceEventType::Cart => self.carts += 1,
            CommerceEventType::RemoveFromCart => self.removals += 1,
            CommerceEventType::Purchase => {
                self.purchases += 1;
                self.units += quantity as u64;
                self.revenue_nanos += price_nanos * quantity as i128;
            }
            CommerceEventType::Unspecified => {}
        }
    }
}

/// What was sent and acknowledged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retried_requests: u64,
    pub failed: u64,
    /// Failed events per reason the client gave up, as its error reads (at most
    /// [`Truth::FAILURE_KINDS`] keys, then `other`): why the store gave up, for the
    /// summary line and for a failing test's message.
    pub failures: BTreeMap<String, u64>,
    pub total: Funnel,
    pub by_product: BTreeMap<u64, Funnel>,
    /// By category id: products without a code are not one category.
    pub by_category: BTreeMap<u64, Funnel>,
    /// By brand, "" for products without one.
    pub by_brand: BTreeMap<String, Funnel>,
    /// The products of each category id that had any event: its visible assortment.
    #[serde(skip)]
    pub products_by_category: BTreeMap<u64, std::collections::BTreeSet<u64>>,
    pub by_region: BTreeMap<String, Funnel>,
    /// The probes taken from inside the store's region (the store's own, or from a vantage
    /// in its region), as the report's stability figures count them.
    pub probes_by_region: BTreeMap<String, Probes>,
    /// Keyed `region/target`, e.g. `asia/checkout`; inside the region, as above.
    pub probes_by_target: BTreeMap<String, Probes>,
    /// Keyed `region/store`; inside the region, as above.
    pub probes_by_store: BTreeMap<String, Probes>,
    /// Every probe, keyed `vantage/region` (`self/asia` for an Asian store's own probes).
    pub probes_by_vantage: BTreeMap<String, Probes>,
    /// Inside-the-region probes per `region/store/target` and minute start (Unix seconds):
    /// (probes, up). The input of uptime as time.
    #[serde(skip)]
    pub probe_minutes: BTreeMap<String, BTreeMap<i64, (u64, u64)>>,
    /// Ids of every acknowledged event, in acknowledgement order.
    #[serde(skip)]
    pub accepted_ids: Vec<String>,
    /// Leave `accepted_ids` empty: a long benchmark run would hold gigabytes of ids.
    #[serde(skip)]
    pub forget_ids: bool,
}

impl Funnel {
    /// Adds counts whose revenue is in `currency`; the currency gets an entry only with a
    /// purchase, as with `add`.
    fn add_counts(&mut self, c: &Counts, currency: &str) {
        self.views += c.views;
        self.carts += c.carts;
        self.removals += c.removals;
        self.purchases += c.purchases;
        self.units += c.units;
        if c.purchases > 0 {
            *slot(&mut self.revenue_nanos, currency) += c.revenue_nanos;
        }
    }

    /// Adds one event: [`Counts::add`] decides what an event of `kind` counts, once.
    fn add(&mut self, kind: CommerceEventType, quantity: u32, currency: &str, price_nanos: i128) {
        let mut one = Counts::default();
        one.add(kind, quantity, price_nanos);
        self.add_counts(&one, currency);
    }
}

impl Truth {
    /// How many distinct answers [`Truth::failures`] keeps apart.
    pub const FAILURE_KINDS: usize = 16;

    /// Records `events` events the store gave up on, and why.
    pub fn fail(&mut self, events: u64, why: &impl std::fmt::Display) {
        self.failed += events;
        let mut key = why.to_string();
        if key.len() > 200 {
            let mut end = 200;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        if self.failures.len() >= Self::FAILURE_KINDS && !self.failures.contains_key(&key) {
            key = "other".to_owned();
        }
        *self.failures.entry(key).or_default() += events;
    }

    /// Records one acknowledged event.
    pub fn accept(&mut self, event: &Event) {
        self.accepted += 1;
        if !self.forget_ids {
            self.accepted_ids.push(event.event_id.clone());
        }
        let region = Region::from_proto(event.region).map_or("unspecified", Region::as_str);
        match &event.payload {
            Some(Payload::Commerce(c)) => {
                let kind = CommerceEventType::try_from(c.r#type).unwrap_or_default();
                let (currency, nanos) = c.price.as_ref().map_or(("", 0), |m| {
                    (
                        m.currency_code.as_str(),
                        m.units as i128 * 1_000_000_000 + m.nanos as i128,
                    )
                });
                self.products_by_category
                    .entry(c.category_id)
                    .or_default()
                    .insert(c.product_id);
                for funnel in [
                    &mut self.total,
                    self.by_product.entry(c.product_id).or_default(),
                    self.by_category.entry(c.category_id).or_default(),
                    slot(&mut self.by_brand, &c.brand),
                    slot(&mut self.by_region, region),
                ] {
                    funnel.add(kind, c.quantity, currency, nanos);
                }
            }
            Some(Payload::Probe(p)) => {
                let sample = Sample {
                    up: p.up,
                    response_time_ms: p.response_time_ms,
                    network_latency_ms: p.network_latency_ms,
                    bandwidth_bytes_per_second: p.bandwidth_bytes_per_second,
                };
                let vantage = Region::from_proto(p.vantage_region).map_or("self", Region::as_str);
                slot(&mut self.probes_by_vantage, &format!("{vantage}/{region}")).add(sample);
                if vantage == "self" || vantage == region {
                    for probes in [
                        slot(&mut self.probes_by_region, region),
                        slot(
                            &mut self.probes_by_target,
                            &format!("{region}/{}", p.target),
                        ),
                        slot(
                            &mut self.probes_by_store,
                            &format!("{region}/{}", event.store_id),
                        ),
                    ] {
                        probes.add(sample);
                    }
                    let seconds = event.occurred_at.as_ref().map_or(0, |t| t.seconds);
                    let series = format!("{region}/{}/{}", event.store_id, p.target);
                    minute(slot(&mut self.probe_minutes, &series), seconds, p.up);
                }
            }
            None => {}
        }
    }

    /// Records a request's acknowledged generated events, sent by a store in `region`:
    /// what `accept` of the events they stand for records (test
    /// `drafts_count_like_their_events`), without building those events. Commerce events
    /// are counted per product in `tally` first, so the string-keyed maps are looked up once
    /// per product of the request instead of four times per event.
    pub fn accept_drafts<'a>(
        &mut self,
        tally: &mut Tally,
        model: &Model,
        store: &Store,
        drafts: impl IntoIterator<Item = &'a Draft>,
    ) {
        let region = store.region;
        tally
            .products
            .resize(model.catalog.len(), Counts::default());
        if tally.probe_keys.is_empty() {
            tally.probe_keys = Region::ALL
                .iter()
                .flat_map(|r| {
                    let targets = &model.scenario.probes.targets;
                    targets.iter().map(move |t| format!("{r}/{t}"))
                })
                .collect();
        }
        if tally.vantage_keys.is_empty() {
            tally.vantage_keys = std::iter::once("self")
                .chain(Region::ALL.iter().map(|r| r.as_str()))
                .flat_map(|v| Region::ALL.iter().map(move |r| format!("{v}/{r}")))
                .collect();
        }
        let targets = model.scenario.probes.targets.len();
        // keys of this request's store, made once per request rather than per probe
        let store_key = format!("{region}/{}", store.id);
        let series_keys: Vec<String> = model
            .scenario
            .probes
            .targets
            .iter()
            .map(|t| format!("{store_key}/{t}"))
            .collect();
        let region_index = Region::ALL
            .iter()
            .position(|&r| r == region)
            .expect("a region of Region::ALL");
        let region_name = region.as_str();
        for draft in drafts {
            self.accepted += 1;
            if !self.forget_ids {
                self.accepted_ids.push(draft.event_id.as_str().to_owned());
            }
            match draft.body {
                Body::Commerce {
                    kind,
                    product,
                    quantity,
                    ..
                } => {
                    let counts = &mut tally.products[product];
                    if *counts == Counts::default() {
                        tally.touched.push(product);
                    }
                    let (units, nanos) = model.catalog[product].price();
                    counts.add(
                        kind,
                        quantity,
                        units as i128 * 1_000_000_000 + nanos as i128,
                    );
                }
                // in event order, so the samples are as `accept` would have pushed them
                Body::Probe {
                    target,
                    vantage,
                    up,
                    response_time_ms,
                    network_latency_ms,
                    bandwidth_bytes_per_second,
                    ..
                } => {
                    let sample = Sample {
                        up,
                        response_time_ms,
                        network_latency_ms,
                        bandwidth_bytes_per_second,
                    };
                    let vantage_index = vantage.map_or(0, |v| {
                        1 + Region::ALL.iter().position(|&r| r == v).expect("a region")
                    });
                    let key = &tally.vantage_keys[vantage_index * Region::ALL.len() + region_index];
                    slot(&mut self.probes_by_vantage, key).add(sample);
                    if vantage.is_none_or(|v| v == region) {
                        for probes in [
                            slot(&mut self.probes_by_region, region_name),
                            slot(
                                &mut self.probes_by_target,
                                &tally.probe_keys[region_index * targets + target],
                            ),
                            slot(&mut self.probes_by_store, &store_key),
                        ] {
                            probes.add(sample);
                        }
                        let minutes = slot(&mut self.probe_minutes, &series_keys[target]);
                        minute(minutes, draft.seconds, up);
                    }
                }
            }
        }
        let currency = model.currency(region);
        for product in tally.touched.drain(..) {
            let counts = std::mem::take(&mut tally.products[product]);
            let p = &model.catalog[product];
            self.products_by_category
                .entry(p.category_id)
                .or_default()
                .insert(p.id);
            for funnel in [
                &mut self.total,
                self.by_product.entry(p.id).or_default(),
                self.by_category.entry(p.category_id).or_default(),
                slot(&mut self.by_brand, p.brand),
                slot(&mut self.by_region, region_name),
            ] {
                funnel.add_counts(&counts, currency);
            }
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("truth serialises")
    }
}

/// Counts one probe in its minute.
fn minute(minutes: &mut BTreeMap<i64, (u64, u64)>, seconds: i64, up: bool) {
    let m = minutes.entry(seconds - seconds.rem_euclid(60)).or_default();
    m.0 += 1;
    m.1 += u64::from(up);
}

impl Truth {
    /// Uptime of every series whose `region/store/target` key starts with `prefix` and
    /// whose target is `target` (any target for `None`), summed.
    pub fn uptime(&self, prefix: &str, target: Option<&str>) -> UptimeMinutes {
        self.probe_minutes
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| target.is_none_or(|t| k.splitn(3, '/').nth(2) == Some(t)))
            .map(|(_, m)| UptimeMinutes::of_series(m))
            .fold(UptimeMinutes::default(), UptimeMinutes::plus)
    }
}

/// The value under `key`, created if missing; allocates the key only when it is new,
/// which matters at hundreds of thousands of events per second.
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Nano units as exact decimal text with nine decimals, as ClickHouse prints Decimal(_, 9).
pub fn decimal_text(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_reason_and_their_kinds_are_bounded() {
        let mut truth = Truth::default();
        truth.fail(200, &"refused with Internal: redis refused the write");
        truth.fail(100, &"refused with Internal: redis refused the write");
        assert_eq!(truth.failed, 300);
        assert_eq!(
            truth.failures["refused with Internal: redis refused the write"],
            300
        );
        for i in 0..40 {
            truth.fail(
                1,
                &format!(
                    "gave up after {i} attempts, the last with Unavailable: é{}",
                    "x".repeat(300)
                ),
            );
        }
        assert_eq!(truth.failed, 340);
        assert_eq!(truth.failures.len(), Truth::FAILURE_KINDS + 1);
        assert!(truth.failures.keys().all(|k| k.len() <= 200));
        assert_eq!(truth.failures.values().sum::<u64>(), 340);
        assert_eq!(
            truth.failures["other"],
            40 - (Truth::FAILURE_KINDS as u64 - 1)
        );
    }

    #[test]
    fn decimals_print_like_clickhouse() {
        assert_eq!(decimal_text(19_990_000_000), "19.990000000");
        assert_eq!(decimal_text(5), "0.000000005");
        assert_eq!(decimal_text(-1_500_000_000), "-1.500000000");
    }

    #[test]
    fn quantiles_pick_the_element_clickhouse_picks() {
        // what ClickHouse answers (checked on 26.9 via chdb; 18.16 has the same formula):
        // SELECT quantileExact(0.5)(number + 1), quantileExact(0.95)(number + 1)
        // FROM numbers(4) gives 3, 4, and numbers(100) gives 51, 96, p99 100
        assert_eq!(quantile_exact(&[1, 2, 3, 4], 0.5), Some(3));
        assert_eq!(quantile_exact(&[1, 2, 3, 4], 0.95), Some(4));
        assert_eq!(quantile_exact(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(quantile_exact(&[7], 0.99), Some(7));
        assert_eq!(quantile_exact(&[], 0.5), None);
        let hundred: Vec<u32> = (1..=100).collect();
        // index floor(0.95 * 100) = 95 holds 96; floor(0.99 * 100) = 99 holds 100
        assert_eq!(Quantiles::of(&hundred).p50, Some(51));
        assert_eq!(Quantiles::of(&hundred).p95, Some(96));
        assert_eq!(Quantiles::of(&hundred).p99, Some(100));
        assert_eq!(quantile_exact(&hundred, 1.0), Some(100));
    }

    #[test]
    fn drafts_count_like_their_events() {
        let stores = crate::fleet::fleet(2, "s");
        let mut g = crate::generate::Generator::new(4, 1_800_000_000);
        let (mut by_event, mut by_draft) = (Truth::default(), Truth::default());
        let mut tally = Tally::default();
        for (round, store) in stores.iter().cycle().take(30).enumerate() {
            let mut drafts = Vec::new();
            g.drafts(store, 700, &mut drafts);
            // as if the gateway had rejected every 7th event of odd rounds
            let accepted = |i: &usize| round % 2 == 0 || i % 7 != 3;
            for (_, d) in drafts.iter().enumerate().filter(|(i, _)| accepted(i)) {
                by_event.accept(&g.model().event(store, d));
            }
            let kept = drafts.iter().enumerate().filter(|(i, _)| accepted(i));
            by_draft.accept_drafts(&mut tally, g.model(), store, kept.map(|(_, d)| d));
        }
        assert!(by_event.total.purchases > 0 && !by_event.probes_by_target.is_empty());
        assert_eq!(by_draft.to_json(), by_event.to_json());
        assert_eq!(by_draft.accepted_ids, by_event.accepted_ids);
        assert_eq!(by_draft.probes_by_region, by_event.probes_by_region);
        assert_eq!(by_draft.probes_by_target, by_event.probes_by_target);
        assert_eq!(by_draft.probes_by_store, by_event.probes_by_store);
        assert_eq!(by_draft.probes_by_vantage, by_event.probes_by_vantage);
        assert_eq!(by_draft.probe_minutes, by_event.probe_minutes);
        assert_eq!(by_draft.by_brand, by_event.by_brand);
        assert_eq!(by_draft.products_by_category, by_event.products_by_category);
    }

    #[test]
    fn uptime_counts_runs_of_down_minutes() {
        let minutes: BTreeMap<i64, (u64, u64)> = [
            (0, (2, 2)),
            (60, (3, 1)),
            (120, (1, 0)),
            (240, (2, 1)), // half up counts as up
            (300, (1, 0)),
        ]
        .into_iter()
        .collect();
        let u = UptimeMinutes::of_series(&minutes);
        assert_eq!(
            u,
            UptimeMinutes {
                observed: 5,
                up: 2,
                down: 3,
                outages: 2
            }
        );
    }

    #[test]
    fn probes_serialise_as_availability_and_quantiles() {
        let mut p = Probes::default();
        for (up, response_time_ms, network_latency_ms) in
            [(true, 10, 1), (false, 30, 3), (true, 20, 2), (true, 40, 4)]
        {
            p.add(Sample {
                up,
                response_time_ms,
                network_latency_ms,
                bandwidth_bytes_per_second: 0,
            });
        }
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["availability"], 0.75);
        assert_eq!(json["response_time_ms"]["p50"], 30);
        assert_eq!(json["network_latency_ms"]["p99"], 4);
        assert!(
            json.get("response_times_ms").is_none(),
            "raw samples stay out"
        );
    }
}
