//! One report run: query the day, build the marketplace and seller reports, upload every
//! object, then the manifest that lists them.

use clickhouse::Client;
use pipeline::retry::fails_over;
use time::{Date, OffsetDateTime};

use crate::{
    build::{self, Options},
    error::Error,
    fetch::{self, DataState},
    manifest::{Manifest, Superseded},
    objects::{self, Object},
    report::MarketplaceReport,
    store::ReportStore,
};

/// Which sellers get their own report.
#[derive(Clone, Debug, PartialEq)]
pub enum Sellers {
    /// The `n` largest by revenue in the reporting currency.
    Largest(usize),
    /// Exactly these.
    Ids(Vec<u64>),
}

/// What a run does beyond the day.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub build: Options,
    pub sellers: Sellers,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            build: Options::default(),
            sellers: Sellers::Largest(3),
        }
    }
}

/// What a run wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub report: MarketplaceReport,
    pub seller_ids: Vec<u64>,
    pub manifest: Manifest,
    /// Every key written, the manifest last.
    pub keys: Vec<String>,
}

/// Queries the day and renders every object of its reports; no upload. The same data
/// gives the same objects, byte for byte. Also returns the sellers reported and the state
/// of the data read, which the manifest records.
pub async fn render(
    client: &Client,
    date: Date,
    options: &RunOptions,
) -> Result<(MarketplaceReport, Vec<u64>, Vec<Object>, DataState), Error> {
    let fetched = fetch::fetch(client, date, options.build.plan.unsold_days).await?;
    let report = build::marketplace(&fetched, &options.build)?;
    let seller_ids = match &options.sellers {
        Sellers::Largest(n) => build::largest_sellers(&fetched, &options.build.rates, *n)?,
        Sellers::Ids(ids) => ids.clone(),
    };
    let mut out = objects::marketplace(&report);
    for id in &seller_ids {
        out.extend(objects::seller(&build::seller(
            &fetched,
            &options.build,
            *id,
        )?));
    }
    Ok((report, seller_ids, out, fetched.data))
}

/// Builds and uploads the reports of `date` with `options`; the manifest goes last, so
/// a manifest in S3 means every object it lists is there.
pub async fn run_with(
    client: &Client,
    store: &ReportStore,
    date: Date,
    options: &RunOptions,
) -> Result<Written, Error> {
    run_superseding(client, store, date, options, None).await
}

/// [`run_with`] through the replicas of `CLICKHOUSE_URL`, in order: when a query fails in
/// a way another replica may not (unreachable, timed out, read-only without its keeper:
/// `pipeline::retry::fails_over`), the whole run starts again on the next replica. A run
/// is idempotent and its manifest goes last, so a run cut short leaves nothing half-written
/// behind. Every replica holds the same rows (ReplicatedMergeTree), so the report does not
/// depend on which one answered.
pub async fn run_on_replicas(
    clients: &[Client],
    store: &ReportStore,
    date: Date,
    options: &RunOptions,
) -> Result<Written, Error> {
    let mut replicas = clients.iter().peekable();
    while let Some(client) = replicas.next() {
        match run_with(client, store, date, options).await {
            Err(Error::Query(e)) if replicas.peek().is_some() && fails_over(&e.source) => {
                tracing::warn!(date = %date, error = %e, "report failed on one replica, trying the next");
            }
            result => return result,
        }
    }
    Err(Error::NoClickHouse)
}

/// Like [`run_with`], recording in the manifest the run it rewrites (`supersedes`).
pub async fn run_superseding(
    client: &Client,
    store: &ReportStore,
    date: Date,
    options: &RunOptions,
    supersedes: Option<Superseded>,
) -> Result<Written, Error> {
    let started = std::time::Instant::now();
    let result = write_reports(client, store, date, options, supersedes).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("reporter_runs_total", "outcome" => outcome).increment(1);
    // 1 or 0: what the container's healthcheck reads (compose.yaml, service reporter)
    metrics::gauge!("reporter_last_run_success").set(if result.is_ok() { 1.0 } else { 0.0 });
    if result.is_ok() {
        // what the "no successful report for a day" alert reads (deploy/prometheus/alerts.yml)
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        metrics::gauge!("reporter_last_success_timestamp_seconds").set(now.as_secs_f64());
    }
    metrics::histogram!("reporter_run_duration_seconds").record(started.elapsed().as_secs_f64());
    result
}

/// The body of [`run_with`], measured and counted there.
async fn write_reports(
    client: &Client,
    store: &ReportStore,
    date: Date,
    options: &RunOptions,
    supersedes: Option<Superseded>,
) -> Result<Written, Error> {
    let (report, seller_ids, objects, data) = render(client, date, options).await?;
    let mut manifest = Manifest::new(&report.date, data, OffsetDateTime::now_utc(), &objects);
    manifest.supersedes = supersedes;
    let mut keys = Vec::with_capacity(objects.len() + 1);
    for o in objects.into_iter().chain([manifest.object()]) {
        store.put(&o.key, o.body, o.content_type, &[]).await?;
        keys.push(o.key);
    }
    tracing::info!(
        bucket = store.bucket(),
        date = %report.date,
        objects = keys.len(),
        sellers = seller_ids.len(),
        "reports written"
    );
    metrics::counter!("reporter_objects_written_total").increment(keys.len() as u64);
    Ok(Written {
        report,
        seller_ids,
        manifest,
        keys,
    })
}

/// Builds and uploads the reports of `date` with the default options; returns the
/// marketplace report and the keys written.
pub async fn run(
    client: &Client,
    store: &ReportStore,
    date: Date,
) -> Result<(MarketplaceReport, Vec<String>), Error> {
    let written = run_with(client, store, date, &RunOptions::default()).await?;
    Ok((written.report, written.keys))
}
