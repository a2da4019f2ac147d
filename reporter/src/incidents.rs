//! Incidents: minutes in which a region missed its service-level objective, merged into
//! windows of consecutive minutes.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// The objectives a region's probes are held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    /// Minimum share of probes that must find the store up, in percent.
    pub availability_pct: f64,
    /// Maximum 95th percentile response time, in milliseconds.
    pub response_p95_ms: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            availability_pct: 99.0,
            response_p95_ms: 500.0,
        }
    }
}

/// Probes of one region in one minute (query `MINUTES`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct MinuteRow {
    pub region: String,
    /// Unix seconds of the minute's start.
    pub minute: u32,
    pub probes: u64,
    pub up: u64,
    pub response_p95_ms: f64,
}

/// A window of consecutive minutes in which one region missed its objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub region: String,
    /// Unix seconds of the first minute's start.
    pub start: u32,
    /// Unix seconds of the end of the last minute (exclusive).
    pub end: u32,
    pub minutes: u32,
    /// The lowest per-minute availability in the window, in percent.
    pub worst_availability_pct: f64,
    /// The highest per-minute p95 response time in the window.
    pub worst_response_p95_ms: f64,
}

/// Availability in percent; a minute without probes counts as available, since nothing
/// says otherwise.
pub fn availability_pct(up: u64, probes: u64) -> f64 {
    if probes == 0 {
        100.0
    } else {
        up as f64 * 100.0 / probes as f64
    }
}

/// Merges the minutes that miss `slo` into windows. `minutes` must be sorted by region and
/// minute, as the query returns them; a minute without probes breaks a window.
pub fn incidents(minutes: &[MinuteRow], slo: Slo) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    for m in minutes {
        let availability = availability_pct(m.up, m.probes);
        if availability >= slo.availability_pct && m.response_p95_ms <= slo.response_p95_ms {
            continue;
        }
        match out.last_mut() {
            Some(open) if open.region == m.region && open.end == m.minute => {
                open.end += 60;
                open.minutes += 1;
                open.worst_availability_pct = open.worst_availability_pct.min(availability);
                open.worst_response_p95_ms = open.worst_response_p95_ms.max(m.response_p95_ms);
            }
            _ => out.push(Incident {
                region: m.region.clone(),
                start: m.minute,
                end: m.minute + 60,
                minutes: 1,
                worst_availability_pct: availability,
                worst_response_p95_ms: m.response_p95_ms,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(region: &str, minute: u32, up: u64, p95: f64) -> MinuteRow {
        MinuteRow {
            region: region.to_owned(),
            minute: minute * 60,
            probes: 100,
            up,
            response_p95_ms: p95,
        }
    }

    #[test]
    fn consecutive_bad_minutes_merge_per_region() {
        let rows = [
            minute("asia", 0, 100, 100.0),
            minute("asia", 1, 98, 100.0),  // availability below 99 %
            minute("asia", 2, 100, 900.0), // p95 above 500 ms
            minute("asia", 3, 100, 500.0), // exactly on the objective: fine
            minute("asia", 4, 50, 100.0),
            minute("europe", 5, 99, 501.0),
        ];
        let got = incidents(&rows, Slo::default());
        let windows: Vec<_> = got
            .iter()
            .map(|i| (i.region.as_str(), i.start, i.end, i.minutes))
            .collect();
        assert_eq!(
            windows,
            [
                ("asia", 60, 180, 2),
                ("asia", 240, 300, 1),
                ("europe", 300, 360, 1)
            ]
        );
        assert_eq!(got[0].worst_availability_pct, 98.0);
        assert_eq!(got[0].worst_response_p95_ms, 900.0);
    }

    #[test]
    fn thresholds_are_configurable() {
        let rows = [minute("asia", 0, 98, 100.0)];
        let loose = Slo {
            availability_pct: 95.0,
            response_p95_ms: 500.0,
        };
        assert!(incidents(&rows, loose).is_empty());
        assert_eq!(incidents(&rows, Slo::default()).len(), 1);
    }
}
