//! Uptime as time: from the probes of each store and target, minute by minute, the minutes
//! a target was up and down, its outages and the mean time to recover, summed per store,
//! per region and target, and per region.
//!
//! The rules, the same in the reporter and in the simulator's ground truth:
//! - A series is one store's target (`region`, `store_id`, `target`), probed from inside the
//!   store's region (the store itself or a prober of that region).
//! - A minute of a series is *observed* when it has at least one probe, and *down* when more
//!   than half of its probes found the target down (`2 · up < probes`); a minute split
//!   evenly counts as up, since half the probes got an answer.
//! - An *outage* is a run of down minutes with no up minute between them. Minutes without
//!   probes neither end an outage nor count as downtime: nothing was measured.
//! - *MTTR* is the downtime divided by the number of outages, in minutes. An outage still
//!   open at the end of the day counts with the minutes it had so far.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// Probes of one store's target in one minute (query `UPTIME_MINUTES`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct SeriesMinute {
    pub region: String,
    pub store_id: String,
    pub target: String,
    /// Unix seconds of the minute's start.
    pub minute: u32,
    pub probes: u64,
    pub up: u64,
}

/// Whether a minute with `up` of `probes` probes up counts as down.
pub fn minute_is_down(up: u64, probes: u64) -> bool {
    probes > 0 && 2 * up < probes
}

/// Uptime of a series or of a sum of series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Uptime {
    /// Minutes with at least one probe.
    pub observed_minutes: u64,
    pub up_minutes: u64,
    /// Observed minutes that were down.
    pub downtime_minutes: u64,
    /// `up_minutes / observed_minutes` in percent; 100 when nothing was observed.
    pub uptime_pct: f64,
    /// Runs of down minutes.
    pub outages: u64,
    /// Mean minutes of downtime per outage; 0 without outages.
    pub mttr_minutes: f64,
}

impl Uptime {
    /// Nothing observed.
    pub fn empty() -> Uptime {
        let mut u = Uptime::default();
        u.finish();
        u
    }

    fn add(&mut self, other: &Uptime) {
        self.observed_minutes += other.observed_minutes;
        self.up_minutes += other.up_minutes;
        self.downtime_minutes += other.downtime_minutes;
        self.outages += other.outages;
        self.finish();
    }

    /// Derives the percentages from the counts.
    fn finish(&mut self) {
        self.uptime_pct = if self.observed_minutes == 0 {
            100.0
        } else {
            self.up_minutes as f64 * 100.0 / self.observed_minutes as f64
        };
        self.mttr_minutes = if self.outages == 0 {
            0.0
        } else {
            self.downtime_minutes as f64 / self.outages as f64
        };
    }
}

/// Uptime of every series and its sums, keyed by the names the report's stability rows use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UptimeTable {
    /// Per region, every store and target together.
    pub by_region: BTreeMap<String, Uptime>,
    /// Per (region, target), every store together.
    pub by_target: BTreeMap<(String, String), Uptime>,
    /// Per (region, store), every target together.
    pub by_store: BTreeMap<(String, String), Uptime>,
}

/// Computes the table from minute rows sorted by region, store, target and minute, as the
/// query returns them.
pub fn uptime(minutes: &[SeriesMinute]) -> UptimeTable {
    let mut table = UptimeTable::default();
    for series in minutes
        .chunk_by(|a, b| (&a.region, &a.store_id, &a.target) == (&b.region, &b.store_id, &b.target))
    {
        let mut u = Uptime::default();
        let mut in_outage = false;
        for m in series.iter().filter(|m| m.probes > 0) {
            u.observed_minutes += 1;
            if minute_is_down(m.up, m.probes) {
                u.downtime_minutes += 1;
                if !in_outage {
                    u.outages += 1;
                    in_outage = true;
                }
            } else {
                u.up_minutes += 1;
                in_outage = false;
            }
        }
        u.finish();
        let first = &series[0];
        let region = first.region.clone();
        table.by_region.entry(region.clone()).or_default().add(&u);
        table
            .by_target
            .entry((region.clone(), first.target.clone()))
            .or_default()
            .add(&u);
        table
            .by_store
            .entry((region, first.store_id.clone()))
            .or_default()
            .add(&u);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(store: &str, target: &str, minute: u32, probes: u64, up: u64) -> SeriesMinute {
        SeriesMinute {
            region: "asia".into(),
            store_id: store.into(),
            target: target.into(),
            minute: minute * 60,
            probes,
            up,
        }
    }

    #[test]
    fn outages_are_runs_of_down_minutes_and_gaps_do_not_end_them() {
        let rows = [
            m("s1", "checkout", 0, 2, 2),
            m("s1", "checkout", 1, 3, 1), // down: 1 of 3 up
            m("s1", "checkout", 2, 2, 0), // down
            // minute 3 has no probe: the outage goes on
            m("s1", "checkout", 4, 1, 0), // down, same outage
            m("s1", "checkout", 5, 2, 1), // half up: up, the outage ends
            m("s1", "checkout", 6, 1, 0), // a second outage, open at the end
        ];
        let t = uptime(&rows);
        let u = t.by_store[&("asia".to_owned(), "s1".to_owned())];
        assert_eq!(
            (
                u.observed_minutes,
                u.up_minutes,
                u.downtime_minutes,
                u.outages
            ),
            (6, 2, 4, 2)
        );
        assert_eq!(u.mttr_minutes, 2.0);
        assert!((u.uptime_pct - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn sums_add_minutes_not_percentages() {
        let rows = [
            m("s1", "a", 0, 1, 1),
            m("s1", "a", 1, 1, 1),
            m("s1", "a", 2, 1, 1),
            m("s1", "b", 0, 1, 0),
            m("s2", "a", 0, 1, 1),
        ];
        let t = uptime(&rows);
        let region = t.by_region["asia"];
        assert_eq!((region.observed_minutes, region.up_minutes), (5, 4));
        assert_eq!(region.uptime_pct, 80.0);
        assert_eq!((region.outages, region.mttr_minutes), (1, 1.0));
        let a = t.by_target[&("asia".to_owned(), "a".to_owned())];
        assert_eq!((a.observed_minutes, a.downtime_minutes), (4, 0));
        assert_eq!(a.mttr_minutes, 0.0);
        assert_eq!(t.by_store.len(), 2);
    }

    #[test]
    fn nothing_observed_is_full_uptime_without_outages() {
        let mut u = Uptime::default();
        u.finish();
        assert_eq!((u.uptime_pct, u.outages, u.mttr_minutes), (100.0, 0, 0.0));
        assert!(!minute_is_down(0, 0));
        assert!(minute_is_down(0, 1));
        assert!(!minute_is_down(1, 2));
    }
}
