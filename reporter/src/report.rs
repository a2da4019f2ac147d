//! The report model. Serialisation is deterministic: fixed field order, rows sorted by the
//! queries, no wall-clock time, so a rerun with unchanged data gives identical bytes.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the JSON shape.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FunnelRow {
    pub r#type: String,
    pub events: u64,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RevenueRow {
    pub currency: String,
    /// Exact decimal text, e.g. `"1234.500000000"`.
    pub revenue: String,
    pub purchases: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StabilityRow {
    pub region: String,
    pub probes: u64,
    pub up: u64,
    pub response_p50_ms: f64,
    pub response_p95_ms: f64,
    pub response_p99_ms: f64,
    pub latency_p50_ms: f64,
    pub bandwidth_avg_bps: f64,
    pub cpu_load_max: f64,
}

/// The marketplace report of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketplaceReport {
    pub schema_version: u32,
    pub date: String,
    /// Latest `received_at` (Unix seconds) of the data included.
    pub watermark: u32,
    pub funnel: Vec<FunnelRow>,
    pub revenue: Vec<RevenueRow>,
    pub stability: Vec<Stability>,
}

/// Stability of one region, with availability derived from the probe counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    #[serde(flatten)]
    pub row: StabilityRow,
    /// Share of probes that found the store up, in percent.
    pub availability_pct: f64,
}

impl From<StabilityRow> for Stability {
    fn from(row: StabilityRow) -> Self {
        let availability_pct = if row.probes == 0 {
            0.0
        } else {
            row.up as f64 * 100.0 / row.probes as f64
        };
        Stability {
            row,
            availability_pct,
        }
    }
}

impl MarketplaceReport {
    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("report serialises");
        out.push(b'\n');
        out
    }
}
