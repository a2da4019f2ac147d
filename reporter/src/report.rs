//! The report models. Serialisation is deterministic: fixed field order, rows sorted by the
//! queries or by explicit tie-breaks, no wall-clock time, so a rerun with unchanged data
//! gives identical bytes.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::{
    commerce::{Change, Ranking, Totals},
    incidents::{Incident, availability_pct},
    plan::Recommendation,
    uptime::Uptime,
};

/// Bumped on any incompatible change of the JSON shape; otherwise fields are only added.
/// 2: a change's `previous`, `delta` are null and `comparison` is `"no data"` when the
/// previous day has no data.
/// 3: categories are keyed by `category_id` (the code is a label, so products without a
/// code are no longer one merged category); stability counts the probes from inside the
/// store's region, with every vantage in `vantage_matrix`; `bandwidth_avg_bps` leaves out
/// probes that did not measure it.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FunnelRow {
    pub r#type: String,
    pub events: u64,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RevenueRow {
    pub currency: String,
    /// Exact decimal text with nine decimals, e.g. `"1234.500000000"`.
    pub revenue: String,
    pub purchases: u64,
}

/// Probe figures of a region, store and target (`*` for every store or target).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StabilityRow {
    pub region: String,
    pub store_id: String,
    pub target: String,
    pub probes: u64,
    pub up: u64,
    pub response_p50_ms: f64,
    pub response_p95_ms: f64,
    pub response_p99_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    /// Average over the probes that measured bandwidth; 0 when none did.
    pub bandwidth_avg_bps: f64,
    /// Probes that measured bandwidth (a probe without a payload URL reports 0).
    pub bandwidth_samples: u64,
    pub cpu_load_avg: f64,
    pub cpu_load_max: f64,
}

/// Stability with availability derived from the probe counts and uptime from the minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stability {
    #[serde(flatten)]
    pub row: StabilityRow,
    /// Share of probes that found the store up, in percent.
    pub availability_pct: f64,
    pub up_probes: u64,
    pub down_probes: u64,
    /// Uptime as time (`uptime.rs`).
    pub uptime: Uptime,
}

impl Stability {
    pub fn new(row: StabilityRow, uptime: Uptime) -> Stability {
        Stability {
            availability_pct: if row.probes == 0 {
                0.0
            } else {
                availability_pct(row.up, row.probes)
            },
            up_probes: row.up,
            down_probes: row.probes - row.up,
            uptime,
            row,
        }
    }
}

/// Probes from one vantage to the stores of one region (query `VANTAGE_MATRIX`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct VantageRow {
    /// The prober's region, or `self` for a store's own probes.
    pub vantage: String,
    /// The stores' region.
    pub region: String,
    pub probes: u64,
    pub up: u64,
    pub response_p50_ms: f64,
    pub response_p95_ms: f64,
    pub response_p99_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub tls_p95_ms: f64,
    pub ttfb_p95_ms: f64,
    pub bandwidth_avg_bps: f64,
    pub bandwidth_samples: u64,
}

/// A cell of the vantage × store-region matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VantageCell {
    #[serde(flatten)]
    pub row: VantageRow,
    pub availability_pct: f64,
}

impl From<VantageRow> for VantageCell {
    fn from(row: VantageRow) -> Self {
        VantageCell {
            availability_pct: availability_pct(row.up, row.probes),
            row,
        }
    }
}

/// The incident objectives the report was computed with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloSettings {
    pub availability_pct: f64,
    pub response_p95_ms: f64,
}

/// The commerce part of a report: the same shape for the marketplace and a seller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Commerce {
    pub reporting_currency: String,
    pub totals: Totals,
    /// Top and bottom products and categories by revenue, views and conversion.
    pub rankings: Vec<Ranking>,
    /// Today against the previous day.
    pub changes: Vec<Change>,
}

/// Figures about the data rather than the business, shown so that they are not hidden.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataQuality {
    /// Identities `(store_id, event_id)` of the day that also have a row on a day of
    /// `conflict_window` (the 7 days before it): a retry that moved `occurred_at` to a later
    /// day, counted on that later day. An identity on k days counts k - 1 times over them.
    pub conflicting_ids: u64,
    /// The days compared with the report's day, `first..last`.
    pub conflict_window: String,
}

/// The marketplace report of one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketplaceReport {
    pub schema_version: u32,
    pub date: String,
    pub previous_date: String,
    /// Latest `received_at` (Unix seconds) of the data included.
    pub watermark: u32,
    pub funnel: Vec<FunnelRow>,
    pub revenue: Vec<RevenueRow>,
    /// Per region, every target together.
    pub stability: Vec<Stability>,
    /// Per region and probe target.
    pub stability_by_target: Vec<Stability>,
    /// Per region and store.
    pub stability_by_store: Vec<Stability>,
    /// Every probe by where it was taken from and the region of the store it reached.
    pub vantage_matrix: Vec<VantageCell>,
    pub slo: SloSettings,
    pub incidents: Vec<Incident>,
    pub commerce: Commerce,
    /// Region changes against the previous day (availability, p95).
    pub region_changes: Vec<Change>,
    pub plan: Vec<Recommendation>,
    pub data_quality: DataQuality,
}

/// The report of one seller on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SellerReport {
    pub schema_version: u32,
    pub date: String,
    pub previous_date: String,
    pub seller_id: u64,
    /// Latest `received_at` (Unix seconds) of the data included.
    pub watermark: u32,
    pub revenue: Vec<RevenueRow>,
    pub commerce: Commerce,
    /// The product and category rules of the plan, applied to this seller.
    pub plan: Vec<Recommendation>,
}

/// Pretty JSON with a trailing newline.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("report serialises");
    out.push(b'\n');
    out
}
