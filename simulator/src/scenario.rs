//! The scenario: what a simulated fleet looks like and what happens to it, read from TOML.
//! `scenarios/default.toml` is embedded and used when no `--scenario` is given.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, bail, ensure};
use pipeline::region::Region;
use serde::Deserialize;

/// The scenario `simulator run` plays by default.
pub const DEFAULT_TOML: &str = include_str!("../scenarios/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub clock: Clock,
    pub catalog: Catalog,
    pub sessions: Sessions,
    /// Conversion rates of categories that do not set their own.
    pub funnel: Rates,
    pub categories: Vec<Category>,
    pub probes: Probes,
    /// Keyed by region name: `europe`, `america`, `asia`.
    pub regions: BTreeMap<String, RegionProfile>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clock {
    /// Simulated events per second when the run is not paced (`--rate 0`).
    pub events_per_second: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            events_per_second: 10_000.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub products: usize,
    pub zipf_exponent: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    pub concurrent_per_store: usize,
    pub mean_views: f64,
}

/// Funnel conversion probabilities.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub view_to_cart: f64,
    pub cart_to_purchase: f64,
    pub remove: f64,
}

/// A category; unset rates fall back to `[funnel]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub code: String,
    pub view_to_cart: Option<f64>,
    pub cart_to_purchase: Option<f64>,
    pub remove: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    /// One probe per store every this many of its events.
    pub every_n_events: Option<u64>,
    /// Or this many probes per store per simulated second.
    pub per_store_per_second: Option<f64>,
    pub targets: Vec<String>,
    /// Where probes are taken from, in turn: `self` (the store's own probe, no vantage
    /// region) or a region, as a prober of that region would. Default: `["self"]`.
    #[serde(default = "self_vantage")]
    pub vantages: Vec<String>,
    /// Extra milliseconds of network latency (and of response time) between two regions,
    /// keyed `europe-asia` (either order); pairs left out use [`DEFAULT_CROSS_REGION_MS`].
    #[serde(default)]
    pub cross_region_ms: BTreeMap<String, u32>,
}

fn self_vantage() -> Vec<String> {
    vec!["self".to_owned()]
}

/// Round trips between the regions' data centres, roughly as public cloud latency tables
/// show them: Europe–America 80 ms, America–Asia 140 ms, Europe–Asia 160 ms.
pub const DEFAULT_CROSS_REGION_MS: [(Region, Region, u32); 3] = [
    (Region::Europe, Region::America, 80),
    (Region::America, Region::Asia, 140),
    (Region::Europe, Region::Asia, 160),
];

/// How probes are scheduled, resolved from [`Probes`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProbeSchedule {
    EveryNEvents(u64),
    PerSecond(f64),
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub base: u32,
    pub jitter: u32,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionProfile {
    /// Stores in this region; `--stores-per-region` when absent.
    pub stores: Option<usize>,
    pub currency: String,
    /// Share of probes that find the target up outside incidents.
    pub availability: f64,
    pub response_ms: Spread,
    pub network_ms: Spread,
    pub bandwidth_bytes_per_second: Range<u64>,
    pub load: Range<f64>,
}

/// Something that goes wrong in a region (optionally one target) for a while.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incident {
    /// Probes find the target down with `status_code`.
    Outage {
        region: String,
        target: Option<String>,
        start_offset_s: f64,
        end_offset_s: f64,
        #[serde(default = "service_unavailable")]
        status_code: u32,
    },
    /// Response times are multiplied by `factor`.
    LatencySpike {
        region: String,
        target: Option<String>,
        start_offset_s: f64,
        end_offset_s: f64,
        factor: f64,
    },
    /// The load the probes report is at least `load`.
    LoadPeak {
        region: String,
        target: Option<String>,
        start_offset_s: f64,
        end_offset_s: f64,
        load: f64,
    },
}

fn service_unavailable() -> u32 {
    503
}

/// The incidents' combined effect on one probe.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Effect {
    pub outage_status: Option<u32>,
    pub latency_factor: f64,
    pub load_floor: Option<f64>,
}

impl Incident {
    fn scope(&self) -> (&str, Option<&str>, f64, f64) {
        match self {
            Incident::Outage {
                region,
                target,
                start_offset_s,
                end_offset_s,
                ..
            }
            | Incident::LatencySpike {
                region,
                target,
                start_offset_s,
                end_offset_s,
                ..
            }
            | Incident::LoadPeak {
                region,
                target,
                start_offset_s,
                end_offset_s,
                ..
            } => (region, target.as_deref(), *start_offset_s, *end_offset_s),
        }
    }

    /// Whether the incident affects `target` in `region` at simulated second `offset_s`;
    /// the window is half-open, so back-to-back incidents never overlap.
    pub fn applies(&self, region: Region, target: &str, offset_s: f64) -> bool {
        let (r, t, start, end) = self.scope();
        r == region.as_str() && t.is_none_or(|t| t == target) && (start..end).contains(&offset_s)
    }
}

impl Scenario {
    /// The embedded default scenario.
    pub fn default_scenario() -> Scenario {
        Scenario::parse(DEFAULT_TOML).expect("the embedded default scenario is valid")
    }

    /// Reads `path`, or the default scenario when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Scenario> {
        match path {
            None => Ok(Scenario::default_scenario()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading scenario {}", path.display()))?;
                Scenario::parse(&text).with_context(|| format!("scenario {}", path.display()))
            }
        }
    }

    /// Parses and checks a scenario, naming the first thing wrong with it.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        ensure!(
            s.clock.events_per_second > 0.0,
            "clock.events_per_second must be positive"
        );
        ensure!(s.catalog.products > 0, "catalog.products must be positive");
        ensure!(
            s.catalog.zipf_exponent >= 0.0,
            "catalog.zipf_exponent must be >= 0"
        );
        ensure!(
            s.sessions.concurrent_per_store > 0,
            "sessions.concurrent_per_store must be positive"
        );
        ensure!(
            s.sessions.mean_views >= 1.0,
            "sessions.mean_views must be at least 1"
        );
        ensure!(!s.categories.is_empty(), "at least one category is needed");
        for c in &s.categories {
            let r = s.rates(c);
            for (name, p) in [
                ("view_to_cart", r.view_to_cart),
                ("cart_to_purchase", r.cart_to_purchase),
                ("remove", r.remove),
            ] {
                ensure!(
                    (0.0..=1.0).contains(&p),
                    "category {}: {name} must be within 0..=1",
                    c.code
                );
            }
        }
        s.probe_schedule()?;
        ensure!(!s.probes.targets.is_empty(), "probes.targets is empty");
        ensure!(!s.probes.vantages.is_empty(), "probes.vantages is empty");
        for v in &s.probes.vantages {
            ensure!(
                v == "self" || v.parse::<Region>().is_ok(),
                "probes.vantages: {v:?} is neither \"self\" nor a region"
            );
        }
        for pair in s.probes.cross_region_ms.keys() {
            let ok = pair
                .split_once('-')
                .is_some_and(|(a, b)| a.parse::<Region>().is_ok() && b.parse::<Region>().is_ok());
            ensure!(
                ok,
                "probes.cross_region_ms: {pair:?} is not two regions joined by '-'"
            );
        }
        for region in Region::ALL {
            let Some(p) = s.regions.get(region.as_str()) else {
                bail!("regions.{region} is missing");
            };
            ensure!(
                pipeline::validate::is_iso4217(&p.currency),
                "regions.{region}.currency {:?} is not an ISO 4217 code",
                p.currency
            );
            ensure!(
                (0.0..=1.0).contains(&p.availability),
                "regions.{region}.availability must be within 0..=1"
            );
            ensure!(
                p.bandwidth_bytes_per_second.min < p.bandwidth_bytes_per_second.max,
                "regions.{region}.bandwidth_bytes_per_second: min must be below max"
            );
            ensure!(
                0.0 <= p.load.min && p.load.min < p.load.max && p.load.max <= 1.0,
                "regions.{region}.load: 0 <= min < max <= 1 is required"
            );
        }
        if let Some(name) = s.regions.keys().find(|k| k.parse::<Region>().is_err()) {
            bail!("regions.{name}: unknown region (europe, america or asia)");
        }
        for i in &s.incidents {
            let (region, _, start, end) = i.scope();
            ensure!(
                region.parse::<Region>().is_ok(),
                "incident in unknown region {region:?}"
            );
            ensure!(
                start < end,
                "incident window [{start}, {end}) is empty: start_offset_s must be below end_offset_s"
            );
            if let Incident::Outage { status_code, .. } = i {
                ensure!(
                    (100..=599).contains(status_code),
                    "outage status_code {status_code} is not an HTTP status"
                );
            }
        }
        Ok(s)
    }

    /// A category's rates, with `[funnel]` filling what it leaves out.
    pub fn rates(&self, c: &Category) -> Rates {
        Rates {
            view_to_cart: c.view_to_cart.unwrap_or(self.funnel.view_to_cart),
            cart_to_purchase: c.cart_to_purchase.unwrap_or(self.funnel.cart_to_purchase),
            remove: c.remove.unwrap_or(self.funnel.remove),
        }
    }

    pub fn probe_schedule(&self) -> anyhow::Result<ProbeSchedule> {
        match (self.probes.every_n_events, self.probes.per_store_per_second) {
            (Some(n), None) if n > 0 => Ok(ProbeSchedule::EveryNEvents(n)),
            (None, Some(r)) if r > 0.0 => Ok(ProbeSchedule::PerSecond(r)),
            _ => bail!(
                "probes: set exactly one of every_n_events (> 0) or per_store_per_second (> 0)"
            ),
        }
    }

    /// The vantage of probe number `i` of a store: `None` for the store's own probe.
    pub fn vantage(&self, i: usize) -> Option<Region> {
        let v = &self.probes.vantages[i % self.probes.vantages.len()];
        v.parse().ok()
    }

    /// Extra milliseconds a probe from `vantage` to a store in `region` takes on the network.
    pub fn cross_region_ms(&self, vantage: Option<Region>, region: Region) -> u32 {
        let Some(v) = vantage.filter(|v| *v != region) else {
            return 0;
        };
        let configured = [format!("{v}-{region}"), format!("{region}-{v}")]
            .iter()
            .find_map(|k| self.probes.cross_region_ms.get(k).copied());
        configured.unwrap_or_else(|| {
            DEFAULT_CROSS_REGION_MS
                .iter()
                .find(|(a, b, _)| (*a, *b) == (v, region) || (*b, *a) == (v, region))
                .map_or(0, |(.., ms)| *ms)
        })
    }

    /// The profile of `region`; [`Scenario::parse`] made sure every region has one.
    pub fn region(&self, region: Region) -> &RegionProfile {
        &self.regions[region.as_str()]
    }

    /// Stores in `region`: the scenario's count, else `default`.
    pub fn stores_in(&self, region: Region, default: usize) -> usize {
        self.region(region).stores.unwrap_or(default)
    }

    /// What the incidents do to a probe of `target` in `region` at `offset_s`.
    pub fn effect(&self, region: Region, target: &str, offset_s: f64) -> Effect {
        let mut effect = Effect {
            latency_factor: 1.0,
            ..Effect::default()
        };
        for i in self
            .incidents
            .iter()
            .filter(|i| i.applies(region, target, offset_s))
        {
            match i {
                Incident::Outage { status_code, .. } => effect.outage_status = Some(*status_code),
                Incident::LatencySpike { factor, .. } => effect.latency_factor *= factor,
                Incident::LoadPeak { load, .. } => {
                    effect.load_floor = Some(effect.load_floor.unwrap_or(0.0).max(*load))
                }
            }
        }
        effect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_is_valid() {
        let s = Scenario::default_scenario();
        assert_eq!(s.region(Region::Asia).currency, "SGD");
        assert_eq!(s.probe_schedule().unwrap(), ProbeSchedule::EveryNEvents(10));
        let sport = s
            .categories
            .iter()
            .find(|c| c.code == "sport.bicycle")
            .unwrap();
        assert_eq!(
            s.rates(sport),
            s.funnel,
            "unset rates fall back to [funnel]"
        );
    }

    #[test]
    fn incident_windows_are_half_open_and_scoped() {
        let s = Scenario::default_scenario();
        // asia checkout outage in [12, 15)
        assert_eq!(
            s.effect(Region::Asia, "checkout", 11.99).outage_status,
            None
        );
        assert_eq!(
            s.effect(Region::Asia, "checkout", 12.0).outage_status,
            Some(503)
        );
        assert_eq!(
            s.effect(Region::Asia, "checkout", 14.99).outage_status,
            Some(503)
        );
        assert_eq!(s.effect(Region::Asia, "checkout", 15.0).outage_status, None);
        assert_eq!(s.effect(Region::Asia, "search", 13.0).outage_status, None);
        assert_eq!(
            s.effect(Region::Europe, "checkout", 13.0).outage_status,
            None
        );
        // america latency spike in [5, 8) on every target
        assert_eq!(s.effect(Region::America, "search", 6.0).latency_factor, 4.0);
        assert_eq!(s.effect(Region::America, "search", 8.0).latency_factor, 1.0);
        assert_eq!(
            s.effect(Region::Europe, "search", 21.0).load_floor,
            Some(0.95)
        );
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let broken = |from: &str, to: &str| {
            let text = DEFAULT_TOML.replacen(from, to, 1);
            assert_ne!(text, DEFAULT_TOML, "{from:?} not found");
            Scenario::parse(&text).unwrap_err().to_string()
        };
        assert!(broken("currency = \"SGD\"", "currency = \"XYZ\"").contains("ISO 4217"));
        assert!(broken("end_offset_s = 8", "end_offset_s = 5").contains("is empty"));
        assert!(broken("view_to_cart = 0.20", "view_to_cart = 1.5").contains("0..=1"));
        assert!(
            broken(
                "every_n_events = 10",
                "per_store_per_second = 1.0\nevery_n_events = 10"
            )
            .contains("exactly one")
        );
        assert!(broken("[regions.asia]", "[regions.mars]").contains("regions.asia is missing"));
    }
}
