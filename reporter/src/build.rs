//! Builds the marketplace and seller reports from fetched rows: pure functions, no I/O.

use std::collections::BTreeMap;

use crate::{
    commerce::{self, Change, Line, Scope, Totals},
    fetch::Fetched,
    incidents::{Slo, incidents},
    money::{Overflow, Rates, add_nanos, nanos_text, parse_nanos},
    plan::{self, PlanConfig, PlanInput, RegionHealth, Unsold},
    report::{
        Commerce, DataQuality, MarketplaceReport, RevenueRow, SCHEMA_VERSION, SellerReport,
        SloSettings, Stability, StabilityRow, VantageCell,
    },
    uptime::{Uptime, UptimeTable, uptime},
};

/// What shapes a report beyond the data.
#[derive(Clone, Debug)]
pub struct Options {
    pub rates: Rates,
    pub plan: PlanConfig,
    /// How many rows each ranking lists.
    pub ranking_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rates: Rates::default(),
            plan: PlanConfig::default(),
            ranking_size: 10,
        }
    }
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("revenue {0:?} is not a decimal")]
    Decimal(String),
    #[error(transparent)]
    Overflow(#[from] Overflow),
}

struct CommerceParts {
    commerce: Commerce,
    views: u64,
    view_to_purchase: f64,
    products: Vec<Line>,
    categories: Vec<Line>,
    previous_categories: Vec<Line>,
}

fn commerce(f: &Fetched, o: &Options, seller: Option<u64>) -> Result<CommerceParts, BuildError> {
    let today = Scope::of(&f.today, seller).map_err(BuildError::Decimal)?;
    let previous = Scope::of(&f.previous, seller).map_err(BuildError::Decimal)?;
    let products = commerce::product_lines(&today, &o.rates)?;
    let categories = commerce::category_lines(&today, &o.rates)?;
    let brands = commerce::brand_lines(&today, &o.rates)?;
    let totals = Totals::of(&today, &o.rates)?;
    Ok(CommerceParts {
        views: totals.views,
        view_to_purchase: totals.view_to_purchase,
        commerce: Commerce {
            reporting_currency: o.rates.reporting().to_owned(),
            totals,
            rankings: commerce::rankings(&products, &categories, &brands, o.ranking_size),
            changes: commerce::changes(
                &today,
                (!previous.is_empty()).then_some(&previous),
                &o.rates,
            )?,
        },
        products,
        previous_categories: commerce::category_lines(&previous, &o.rates)?,
        categories,
    })
}

fn unsold(f: &Fetched, seller: Option<u64>) -> Vec<Unsold> {
    f.unsold
        .iter()
        .filter(|u| seller.is_none_or(|s| s == u.seller_id))
        .map(|u| Unsold {
            product_id: u.product_id,
            views: u.views,
        })
        .collect()
}

fn plan_input<'a>(
    days: &'a (String, String, String),
    regions: &'a [RegionHealth],
    vantages: &'a [VantageCell],
    parts: &'a CommerceParts,
    unsold: &'a [Unsold],
) -> PlanInput<'a> {
    PlanInput {
        date: &days.0,
        previous_date: &days.1,
        regions,
        vantages,
        views: parts.views,
        view_to_purchase: parts.view_to_purchase,
        products: &parts.products,
        categories: &parts.categories,
        previous_categories: &parts.previous_categories,
        unsold,
        unsold_period: &days.2,
    }
}

/// (date, previous date, unsold window) as text.
fn days(f: &Fetched) -> (String, String, String) {
    (
        f.date.to_string(),
        f.previous_date.to_string(),
        format!("{}..{}", f.unsold_from, f.date),
    )
}

/// Revenue rows with decimals spelled as 18.16 spells them, whatever the engine.
fn normalised(revenue: &[RevenueRow]) -> Result<Vec<RevenueRow>, BuildError> {
    revenue
        .iter()
        .map(|r| {
            let nanos =
                parse_nanos(&r.revenue).ok_or_else(|| BuildError::Decimal(r.revenue.clone()))?;
            Ok(RevenueRow {
                revenue: nanos_text(nanos),
                ..r.clone()
            })
        })
        .collect()
}

/// Stability rows with the uptime of their region, target or store (`*` marks the level).
fn with_uptime(rows: &[StabilityRow], table: &UptimeTable) -> Vec<Stability> {
    rows.iter()
        .map(|r| {
            let key = (r.region.clone(), r.target.clone());
            let uptime = match (r.store_id.as_str(), r.target.as_str()) {
                ("*", "*") => table.by_region.get(&r.region),
                ("*", _) => table.by_target.get(&key),
                (store, _) => table.by_store.get(&(r.region.clone(), store.to_owned())),
            };
            Stability::new(r.clone(), uptime.copied().unwrap_or_else(Uptime::empty))
        })
        .collect()
}

/// The marketplace report.
pub fn marketplace(f: &Fetched, o: &Options) -> Result<MarketplaceReport, BuildError> {
    let slo = Slo {
        availability_pct: o.plan.availability_slo_pct,
        response_p95_ms: o.plan.response_p95_slo_ms,
    };
    let table = uptime(&f.uptime_minutes);
    let stability = with_uptime(&f.stability, &table);
    // the previous day is compared on availability and p95 only
    let previous = with_uptime(&f.previous_stability, &UptimeTable::default());
    let mut region_changes = Vec::new();
    for s in &stability {
        let subject = format!("region:{}", s.row.region);
        let before = previous.iter().find(|p| p.row.region == s.row.region);
        region_changes.push(Change::new(
            &subject,
            "availability_pct",
            s.availability_pct,
            before.map(|p| p.availability_pct),
        ));
        region_changes.push(Change::new(
            &subject,
            "response_p95_ms",
            s.row.response_p95_ms,
            before.map(|p| p.row.response_p95_ms),
        ));
    }
    let regions: Vec<RegionHealth> = stability
        .iter()
        .map(|s| RegionHealth {
            region: s.row.region.clone(),
            availability_pct: s.availability_pct,
            response_p95_ms: s.row.response_p95_ms,
            cpu_load_max: s.row.cpu_load_max,
            bandwidth_avg_bps: s.row.bandwidth_avg_bps,
            bandwidth_samples: s.row.bandwidth_samples,
        })
        .collect();
    let vantage_matrix: Vec<VantageCell> =
        f.vantage_matrix.iter().cloned().map(Into::into).collect();
    let parts = commerce(f, o, None)?;
    let unsold = unsold(f, None);
    let days = days(f);
    let input = plan_input(&days, &regions, &vantage_matrix, &parts, &unsold);
    let plan = plan::plan(&input, &o.plan);
    Ok(MarketplaceReport {
        schema_version: SCHEMA_VERSION,
        date: days.0.clone(),
        previous_date: days.1.clone(),
        watermark: f.data.watermark,
        funnel: f.funnel.clone(),
        revenue: normalised(&f.revenue)?,
        stability,
        stability_by_target: with_uptime(&f.stability_by_target, &table),
        stability_by_store: with_uptime(&f.stability_by_store, &table),
        vantage_matrix,
        slo: SloSettings {
            availability_pct: slo.availability_pct,
            response_p95_ms: slo.response_p95_ms,
        },
        incidents: incidents(&f.minutes, slo),
        commerce: parts.commerce,
        region_changes,
        plan,
        data_quality: DataQuality {
            conflicting_ids: f.conflicts,
            conflict_window: format!(
                "{}..{}",
                f.date - time::Duration::days(7),
                f.date - time::Duration::days(1)
            ),
        },
    })
}

/// The report of one seller: the commerce part and the product rules of the plan.
pub fn seller(f: &Fetched, o: &Options, seller_id: u64) -> Result<SellerReport, BuildError> {
    let parts = commerce(f, o, Some(seller_id))?;
    let unsold = unsold(f, Some(seller_id));
    let days = days(f);
    let plan = plan::plan(&plan_input(&days, &[], &[], &parts, &unsold), &o.plan);
    let mut revenue: BTreeMap<&str, (i128, u64)> = BTreeMap::new();
    for row in f.today.revenue.iter().filter(|r| r.seller_id == seller_id) {
        let nanos =
            parse_nanos(&row.revenue).ok_or_else(|| BuildError::Decimal(row.revenue.clone()))?;
        let entry = revenue.entry(&row.currency).or_default();
        entry.0 = add_nanos(entry.0, nanos, &format!("{} revenue", row.currency))?;
        entry.1 += row.purchases;
    }
    let revenue = revenue
        .into_iter()
        .map(|(currency, (nanos, purchases))| RevenueRow {
            currency: currency.to_owned(),
            revenue: nanos_text(nanos),
            purchases,
        })
        .collect();
    Ok(SellerReport {
        schema_version: SCHEMA_VERSION,
        date: days.0.clone(),
        previous_date: days.1.clone(),
        seller_id,
        watermark: f.data.watermark,
        revenue,
        commerce: parts.commerce,
        plan,
    })
}

/// The `n` sellers with the most revenue in the reporting currency on the day, largest
/// first, ties to the smaller id.
pub fn largest_sellers(f: &Fetched, rates: &Rates, n: usize) -> Result<Vec<u64>, BuildError> {
    let mut ids: Vec<u64> = f.today.items.iter().map(|i| i.seller_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut revenue = Vec::new();
    for id in ids {
        let scope = Scope::of(&f.today, Some(id)).map_err(BuildError::Decimal)?;
        revenue.push((scope.total.reporting_nanos(rates)?.0, id));
    }
    revenue.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(revenue.into_iter().take(n).map(|(_, id)| id).collect())
}
