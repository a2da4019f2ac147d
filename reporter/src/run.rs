//! One report run: query the day's aggregates, build the report, upload it.

use clickhouse::Client;
use time::Date;

use crate::{
    queries,
    report::{FunnelRow, MarketplaceReport, RevenueRow, SCHEMA_VERSION, StabilityRow},
    store::ReportStore,
};

/// The S3 key of the marketplace report of `date`.
pub fn marketplace_key(date: &str) -> String {
    format!("reports/{date}/marketplace/report.json")
}

/// Queries everything the marketplace report of `date` needs.
pub async fn build(client: &Client, date: Date) -> anyhow::Result<MarketplaceReport> {
    let day = date.to_string();
    let funnel: Vec<FunnelRow> = client.query(queries::FUNNEL).bind(&day).fetch_all().await?;
    let revenue: Vec<RevenueRow> = client
        .query(queries::REVENUE)
        .bind(&day)
        .fetch_all()
        .await?;
    let stability: Vec<StabilityRow> = client
        .query(queries::STABILITY)
        .bind(&day)
        .fetch_all()
        .await?;
    let watermark: u32 = client
        .query(queries::WATERMARK)
        .bind(&day)
        .bind(&day)
        .fetch_one()
        .await?;
    Ok(MarketplaceReport {
        schema_version: SCHEMA_VERSION,
        date: day,
        watermark,
        funnel,
        revenue,
        stability: stability.into_iter().map(Into::into).collect(),
    })
}

/// Builds and uploads the reports of `date`; returns the keys written.
pub async fn run(
    client: &Client,
    store: &ReportStore,
    date: Date,
) -> anyhow::Result<(MarketplaceReport, Vec<String>)> {
    let report = build(client, date).await?;
    let key = marketplace_key(&report.date);
    store
        .put(&key, report.to_json(), "application/json")
        .await?;
    tracing::info!(bucket = store.bucket(), %key, "report written");
    Ok((report, vec![key]))
}
