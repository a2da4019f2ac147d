//! The reporter's settings and subcommands, parsed once from flags with environment fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pipeline::config::{ClickHouseArgs, TelemetryArgs, parse_date};
use time::{Date, Time};

use crate::{
    build::Options,
    money::{Rates, RatesError},
    plan::PlanConfig,
    run::{RunOptions, Sellers},
};

// Defined beside the client it configures, so that `store` needs nothing from `config`;
// named here too, with the other settings.
pub use crate::store::S3Args;

/// Turns ClickHouse aggregates into reports in S3
#[derive(Parser, Clone, Debug)]
#[command(name = "reporter", version)]
pub struct Settings {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Writes the reports of one day (UTC) and exits
    Run {
        /// The day, YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
    },
    /// At start and every day at a fixed UTC time, writes the reports of every day of the
    /// look-back window that has data but no report, or data newer than its report; retries
    /// failed days with backoff; runs until SIGTERM or SIGINT
    Serve {
        /// Time of day (UTC), HH:MM
        #[arg(long, env = "REPORTER_AT", value_parser = parse_time, default_value = "01:00")]
        at: Time,
        /// Days before today checked on every pass: missing reports are written, reports
        /// whose data grew since they were written rewritten (events arrive up to 7 days late)
        #[arg(long, env = "REPORTER_LOOKBACK_DAYS", default_value_t = 8,
              value_parser = clap::value_parser!(u32).range(1..=366))]
        lookback_days: u32,
        /// Between passes, how often the rollups of the closed days and hours of the look-back
        /// window are brought up to date (rebuilt where rows arrived), so that a report finds
        /// its days built and the dashboards read closed hours from the hourly rollups
        #[arg(long, env = "REPORTER_ROLLUP_INTERVAL", default_value = "10m",
              value_parser = pipeline::config::parse_positive_duration)]
        rollup_interval: std::time::Duration,
    },
}

/// What goes into the reports.
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// Sellers that get their own report (comma-separated ids); without it, the largest
    /// sellers by revenue (see --top-sellers)
    #[arg(
        long = "seller",
        env = "REPORTER_SELLERS",
        value_delimiter = ',',
        global = true
    )]
    pub sellers: Vec<u64>,
    /// How many of the largest sellers get their own report when no --seller is given
    #[arg(long, env = "REPORTER_TOP_SELLERS", default_value_t = 3)]
    pub top_sellers: usize,
    /// TOML file with `reporting_currency` and a `[rates]` table; built-in EUR table if unset
    #[arg(long, env = "REPORTER_RATES_FILE")]
    pub rates_file: Option<PathBuf>,
    /// Rows in each top/bottom ranking
    #[arg(long, env = "REPORTER_RANKING_SIZE", default_value_t = 10)]
    pub ranking_size: usize,
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// The development plan's thresholds; defaults are `PlanConfig::default()`.
#[derive(Args, Clone, Debug)]
pub struct PlanArgs {
    /// Availability objective per region, percent (incidents and the CDN/capacity rule)
    #[arg(long, env = "REPORTER_AVAILABILITY_SLO_PCT", default_value_t = 99.0)]
    pub availability_slo_pct: f64,
    /// p95 response-time objective per region, ms (incidents and the CDN/capacity rule)
    #[arg(long, env = "REPORTER_RESPONSE_P95_SLO_MS", default_value_t = 500.0)]
    pub response_p95_slo_ms: f64,
    /// Maximum load (0..1) at which a region needs more servers
    #[arg(long, env = "REPORTER_MAX_LOAD", default_value_t = 0.85)]
    pub max_load: f64,
    /// Share of products in a decile (top views, bottom conversion)
    #[arg(long, env = "REPORTER_DECILE", default_value_t = 0.1)]
    pub decile: f64,
    /// Fewest products for which deciles are meaningful
    #[arg(long, env = "REPORTER_MIN_PRODUCTS_FOR_DECILES", default_value_t = 10)]
    pub min_products_for_deciles: usize,
    /// Revenue growth (percent, against the previous day) that makes a category worth expanding
    #[arg(long, env = "REPORTER_MIN_CATEGORY_GROWTH_PCT", default_value_t = 20.0)]
    pub min_category_growth_pct: f64,
    /// Days with views but no purchase that make a product a candidate to discontinue
    #[arg(long, env = "REPORTER_UNSOLD_DAYS", default_value_t = 7)]
    pub unsold_days: u32,
    /// How many top products by revenue to promote
    #[arg(long, env = "REPORTER_PROMOTE_TOP", default_value_t = 3)]
    pub promote_top: usize,
    /// Most recommendations one rule may make, strongest first
    #[arg(long, env = "REPORTER_MAX_PER_RULE", default_value_t = 20)]
    pub max_per_rule: usize,
    /// Network latency p95 (ms) from a vantage to another region's stores above which the
    /// vantage's region needs a CDN or an edge
    #[arg(long, env = "REPORTER_VANTAGE_LATENCY_P95_MS", default_value_t = 150.0)]
    pub vantage_latency_p95_ms: f64,
    /// Average measured bandwidth (bytes/s) of a region's stores below which it needs network
    /// capacity
    #[arg(
        long,
        env = "REPORTER_MIN_BANDWIDTH_BPS",
        default_value_t = 12_500_000.0
    )]
    pub min_bandwidth_bps: f64,
    /// How many times the marketplace's view-to-purchase rate a category must convert at to
    /// be promoted
    #[arg(long, env = "REPORTER_PROMOTE_CATEGORY_FACTOR", default_value_t = 1.25)]
    pub promote_category_factor: f64,
    /// Fewest views on the day for a category's demand to count (promote, introduce)
    #[arg(long, env = "REPORTER_MIN_CATEGORY_VIEWS", default_value_t = 100)]
    pub min_category_views: u64,
    /// "Introduce products": how many times the marketplace's views per product a category
    /// must have
    #[arg(long, env = "REPORTER_INTRODUCE_DEMAND_FACTOR", default_value_t = 1.5)]
    pub introduce_demand_factor: f64,
    /// "Introduce products": the largest assortment, as a share of the average category's
    /// products
    #[arg(
        long,
        env = "REPORTER_INTRODUCE_ASSORTMENT_FACTOR",
        default_value_t = 0.8
    )]
    pub introduce_assortment_factor: f64,
}

impl PlanArgs {
    pub fn plan(&self) -> PlanConfig {
        PlanConfig {
            availability_slo_pct: self.availability_slo_pct,
            response_p95_slo_ms: self.response_p95_slo_ms,
            max_load: self.max_load,
            decile: self.decile,
            min_products_for_deciles: self.min_products_for_deciles,
            min_category_growth_pct: self.min_category_growth_pct,
            unsold_days: self.unsold_days,
            promote_top: self.promote_top,
            max_per_rule: self.max_per_rule,
            vantage_latency_p95_ms: self.vantage_latency_p95_ms,
            min_bandwidth_bps: self.min_bandwidth_bps,
            promote_category_factor: self.promote_category_factor,
            min_category_views: self.min_category_views,
            introduce_demand_factor: self.introduce_demand_factor,
            introduce_assortment_factor: self.introduce_assortment_factor,
        }
    }
}

impl ReportArgs {
    /// The run options, reading the rates file if one is named.
    pub fn options(&self) -> Result<RunOptions, RatesError> {
        let rates = match &self.rates_file {
            Some(path) => Rates::load(path)?,
            None => Rates::default(),
        };
        Ok(RunOptions {
            build: Options {
                rates,
                plan: self.plan.plan(),
                ranking_size: self.ranking_size,
            },
            sellers: if self.sellers.is_empty() {
                Sellers::Largest(self.top_sellers)
            } else {
                Sellers::Ids(self.sellers.clone())
            },
        })
    }
}

/// Parses `HH:MM` (24-hour).
pub fn parse_time(s: &str) -> Result<Time, String> {
    Time::parse(s, time::macros::format_description!("[hour]:[minute]"))
        .map_err(|e| format!("{s:?} is not a time as HH:MM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_plan_defaults_and_sellers_parse() {
        let s = Settings::try_parse_from(["reporter", "run", "--date", "2026-01-15"]).unwrap();
        assert_eq!(s.report.plan.plan(), PlanConfig::default());
        let o = s.report.options().unwrap();
        assert_eq!(o.sellers, Sellers::Largest(3));
        let s = Settings::try_parse_from([
            "reporter",
            "run",
            "--date",
            "2026-01-15",
            "--seller",
            "4,9",
        ])
        .unwrap();
        assert_eq!(
            s.report.options().unwrap().sellers,
            Sellers::Ids(vec![4, 9])
        );
        let s = Settings::try_parse_from(["reporter", "serve", "--at", "02:30"]).unwrap();
        assert!(
            matches!(s.command, Command::Serve { at, lookback_days: 8, rollup_interval } if at == time::macros::time!(02:30) && rollup_interval == std::time::Duration::from_secs(600))
        );
        assert!(parse_time("25:00").is_err());
    }
}
