//! The rollups the report and the dashboards are read from: per day (migrations 4 and 5:
//! `commerce_daily`, `audience_daily`, `probe_daily`, `probe_minutes`, and `rollup_builds`)
//! for the report, per hour (migration 7: `commerce_hourly`, `probe_hourly`, and
//! `rollup_hour_builds`; migration 8: `arrivals_minutes`; migration 9: `category_hourly`) for
//! the dashboards; each built from one deduplicated read of its day or hour, and rebuilt
//! whenever the day's or hour's rows changed since.
//!
//! A build reads the day of `commerce_events` once with `FINAL` (every event once, however
//! many copies of it were loaded) and groups it by every dimension the report needs (day,
//! type, seller, product, category id and code, brand, currency, region) into events, units
//! and the exact `Decimal(38, 9)` revenue; the day's distinct users and sessions, of the
//! marketplace and of each seller, are counted by `uniqExact`, which is blind to copies. The
//! probes are read the same way (twice: per vantage, and per minute inside the store's
//! region), their timings kept as value histograms from which `queries` takes exact quantiles.
//! Every row of a build carries its version, the build's start in Unix nanoseconds: a build
//! that starts later reads every row an earlier one read (the day only grows), so the highest
//! version is the most complete. `ReplacingMergeTree(version)` read with `FINAL` then holds,
//! for each group, the row of the latest build; and since an event never leaves its day nor
//! changes its dimensions, every group of an earlier build is also a group of the later one,
//! which replaces it: no stale group survives (ARCHITECTURE.md, "Rollups").
//!
//! When to rebuild: the build records the day's `count()` and `max(received_at)` over both
//! event tables (cheap, without `FINAL`), read before its `FINAL` reads. [`ensure`] rebuilds a
//! day whose current pair differs: a late event or a copy adds a row (and usually a later
//! `received_at`), a background merge of copies removes one. Either way the rebuild is exact;
//! the pair only decides whether one is needed.
//!
//! An hour is built and recorded the same way ([`ensure_hours`], the same record and
//! side-by-side statements), grouped by what the dashboards' panels filter and group by
//! (region, store, seller, currency; region, store, target, vantage; the minute received,
//! region and store; the purchases by region, store and category), and its hour chosen before
//! `FINAL` collapses copies (`PREWHERE`), so that a build merges one hour's rows. The minute
//! an event was received is the only dimension a later copy changes, so the arrivals' build
//! writes the groups of earlier builds again (empty ones with zero rows), and no stale group
//! survives there either.
//!
//! On a cluster the rollup tables are Distributed, sharded by day or hour, and the build's
//! inserts wait for every shard (`insert_distributed_sync`), so the report that follows reads
//! them.

use std::collections::BTreeMap;

use clickhouse::Client;
use time::{Date, OffsetDateTime};

use crate::fetch::QueryError;

/// The state of a day's base rows, commerce and probes together: `count()` and
/// `max(received_at)` (Unix seconds), without `FINAL`. Params: date, date.
pub const BASE_STATE: &str = "\
SELECT count() AS rows, toUInt32(max(received_at)) AS received
FROM (
    SELECT received_at FROM commerce_events WHERE toDate(occurred_at) = toDate(?)
    UNION ALL
    SELECT received_at FROM probe_results WHERE toDate(occurred_at) = toDate(?)
)";

/// The latest build of a day: the base state it read, its version, and the rows it wrote
/// into the day's rollups (migration 10; 0 for a build recorded before it). Params: date.
pub const BUILT_STATE: &str = "\
SELECT base_rows AS rows, toUInt32(base_received) AS received, version, built_rows
FROM rollup_builds FINAL
WHERE day = toDate(?)";

/// The rows of the build `version` of a day that this server holds in the day's rollups
/// (every table [`BUILD`] writes), counted without `FINAL`: a build writes each group once,
/// so its rows are its groups, and a later build that replaced some of them in a merge makes
/// the count smaller, never larger. Params: version, then the date four times.
pub const BUILD_ROWS: &str = "\
SELECT toUInt64(countIf(version = ?)) AS rows
FROM (
    SELECT version FROM commerce_daily WHERE day = toDate(?)
    UNION ALL
    SELECT version FROM audience_daily WHERE day = toDate(?)
    UNION ALL
    SELECT version FROM probe_daily WHERE day = toDate(?)
    UNION ALL
    SELECT version FROM probe_minutes WHERE day = toDate(?)
)";

/// The day's commerce groups, every event once (`FINAL`). Params: version, date.
pub const BUILD_COMMERCE: &str = "\
INSERT INTO commerce_daily
SELECT
    toDate(occurred_at) AS day,
    type,
    seller_id,
    product_id,
    category_id,
    category_code,
    brand,
    currency,
    region,
    count() AS events,
    sum(toUInt64(quantity)) AS units,
    sum(toDecimal128(price, 9) * quantity) AS revenue,
    toUInt64(?) AS version
FROM commerce_events FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY day, type, seller_id, product_id, category_id, category_code, brand, currency, region";

/// The day's distinct users and sessions of the marketplace. No `FINAL`: a copy repeats a
/// user and session already counted, which `uniqExact` ignores. Params: version, date.
pub const BUILD_AUDIENCE: &str = "\
INSERT INTO audience_daily
SELECT
    toDate(occurred_at) AS day,
    'marketplace' AS scope,
    toUInt64(0) AS seller_id,
    uniqExact(user_id) AS users,
    uniqExact(session_id) AS sessions,
    toUInt64(?) AS version
FROM commerce_events
WHERE toDate(occurred_at) = toDate(?)
GROUP BY day";

/// The day's distinct users and sessions of each seller. Params: version, date.
pub const BUILD_SELLER_AUDIENCE: &str = "\
INSERT INTO audience_daily
SELECT
    toDate(occurred_at) AS day,
    'seller' AS scope,
    seller_id,
    uniqExact(user_id) AS users,
    uniqExact(session_id) AS sessions,
    toUInt64(?) AS version
FROM commerce_events
WHERE toDate(occurred_at) = toDate(?)
GROUP BY day, seller_id";

/// The measures of a group of probes both the daily and the hourly probe rollups keep, each
/// followed by `,` and a new line: counts, bandwidth and load, and the value histograms of the
/// response time and network latency (`sumMap`: the values sorted, their counts).
macro_rules! probe_measures {
    () => {
        "    count() AS probes,
    toUInt64(sum(up)) AS up,
    toUInt64(sumIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0)) AS bandwidth_sum,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples,
    sum(cpu_load) AS cpu_load_sum,
    max(cpu_load) AS cpu_load_max,
    sumMap([response_time_ms], [toUInt64(1)]) AS response,
    sumMap([network_latency_ms], [toUInt64(1)]) AS latency,
"
    };
}

/// The day's probes per region, store, target and vantage, every probe once (`FINAL`), with
/// the value histograms of its four timings (`sumMap`: the values sorted, their counts).
/// Params: version, date.
pub const BUILD_PROBES: &str = concat!(
    "INSERT INTO probe_daily
SELECT
    toDate(occurred_at) AS day,
    region,
    store_id,
    target,
    vantage_region,
",
    probe_measures!(),
    "    sumMap([tls_handshake_ms], [toUInt64(1)]) AS tls,
    sumMap([time_to_first_byte_ms], [toUInt64(1)]) AS ttfb,
    toUInt64(?) AS version
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY day, region, store_id, target, vantage_region"
);

/// The day's probes taken inside the store's region, per region, store, target and minute,
/// every probe once (`FINAL`), with the histogram of their response times (the filter is
/// `queries`' `in_region!`). Params: version, date.
pub const BUILD_PROBE_MINUTES: &str = "\
INSERT INTO probe_minutes
SELECT
    toDate(occurred_at) AS day,
    region,
    store_id,
    target,
    toUInt32(toStartOfMinute(occurred_at)) AS minute,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    sumMap([response_time_ms], [toUInt64(1)]) AS response,
    toUInt64(?) AS version
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
    AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
GROUP BY day, region, store_id, target, minute";

/// The statement that records a build of `date`: the base state it read, its version, and
/// the rows it wrote ([`BUILD_ROWS`]). Written out rather than bound: every value is a
/// number or a date.
pub fn record(date: &str, state: BaseState, version: u64, built_rows: u64) -> String {
    record_in(
        "rollup_builds",
        "day",
        &[(format!("toDate('{date}')"), state)],
        version,
        ("built_rows", format!("toUInt64({built_rows})")),
    )
}

/// The statement that records builds in `table` (the days' or the hours' record): for each
/// value `at` (an SQL expression) of its `key` column, the base state the build read; and
/// one more column of the record, with its value (an SQL expression): the days' rows built,
/// the hours' revision.
fn record_in(
    table: &str,
    key: &str,
    builds: &[(String, BaseState)],
    version: u64,
    (column, value): (&str, String),
) -> String {
    let rows: Vec<String> = builds
        .iter()
        .map(|(at, state)| {
            format!(
                "SELECT {at}, toUInt64({}), toDateTime({}, 'UTC'), toUInt64({version}), now(), {value}",
                state.rows, state.received
            )
        })
        .collect();
    format!(
        "INSERT INTO {table} ({key}, base_rows, base_received, version, built_at, {column}) {}",
        rows.join(" UNION ALL ")
    )
}

/// The statements of one build, in order, with their names.
pub const BUILD: &[(&str, &str)] = &[
    ("build_commerce", BUILD_COMMERCE),
    ("build_audience", BUILD_AUDIENCE),
    ("build_seller_audience", BUILD_SELLER_AUDIENCE),
    ("build_probes", BUILD_PROBES),
    ("build_probe_minutes", BUILD_PROBE_MINUTES),
];

/// Every table a build writes, and the record of builds.
pub const ROLLUP_TABLES: &[&str] = &[
    "commerce_daily",
    "audience_daily",
    "probe_daily",
    "probe_minutes",
    "rollup_builds",
];

/// A day's base state, as [`BASE_STATE`] and [`BUILT_STATE`] read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct BaseState {
    pub rows: u64,
    pub received: u32,
}

impl BaseState {
    fn new(rows: u64, received: u32) -> BaseState {
        BaseState { rows, received }
    }
}

/// What [`ensure`] did for one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The rollup was built from this state of the base rows.
    Built(BaseState),
    /// The base rows are as the latest build read them (or there are none, and none built).
    Current,
}

/// The error of `query` for `at` (a date or an hour).
fn failed(
    query: &'static str,
    at: impl std::fmt::Display,
) -> impl FnOnce(clickhouse::error::Error) -> QueryError {
    let date = at.to_string();
    move |source| QueryError {
        query,
        date,
        source,
    }
}

/// The base state of `date` now.
pub async fn base_state(client: &Client, date: Date) -> Result<BaseState, QueryError> {
    client
        .query(BASE_STATE)
        .bind(date.to_string())
        .bind(date.to_string())
        .fetch_one()
        .await
        .map_err(failed("base_state", date))
}

/// The latest build of a day, as [`BUILT_STATE`] reads it.
#[derive(Clone, Copy, Debug, clickhouse::Row, serde::Deserialize)]
struct Built {
    rows: u64,
    received: u32,
    version: u64,
    built_rows: u64,
}

impl Built {
    fn state(&self) -> BaseState {
        BaseState::new(self.rows, self.received)
    }
}

/// The latest build of `date`, if any.
async fn latest_build(client: &Client, date: Date) -> Result<Option<Built>, QueryError> {
    client
        .query(BUILT_STATE)
        .bind(date.to_string())
        .fetch_optional()
        .await
        .map_err(failed("built_state", date))
}

/// The base state the latest build of `date` read, if any.
pub async fn built_state(client: &Client, date: Date) -> Result<Option<BaseState>, QueryError> {
    Ok(latest_build(client, date).await?.map(|b| b.state()))
}

/// The rows of the build `version` of `date` this server holds ([`BUILD_ROWS`]).
pub async fn build_rows(client: &Client, date: Date, version: u64) -> Result<u64, QueryError> {
    versioned(client, BUILD_ROWS, version, &date.to_string())
        .fetch_one()
        .await
        .map_err(failed("build_rows", date))
}

/// `sql` with its parameters bound as [`render`] writes them in: `version` first, then `at`
/// (a date or an hour) for every `?` after it.
fn versioned(client: &Client, sql: &str, version: u64, at: &str) -> clickhouse::query::Query {
    let mut query = client.query(sql).bind(version);
    for _ in 1..sql.matches('?').count() {
        query = query.bind(at);
    }
    query
}

/// The version of a build starting now: Unix nanoseconds.
fn version_now() -> u64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(now).unwrap_or_default()
}

/// Builds the rollups of `date` unconditionally, and records the build.
pub async fn build(client: &Client, date: Date) -> Result<BaseState, QueryError> {
    let started = std::time::Instant::now();
    let version = version_now();
    // read before the FINAL read: rows arriving meanwhile make the next check rebuild
    let state = base_state(client, date).await?;
    let day = date.to_string();
    run_side_by_side(client, BUILD, version, &day).await?;
    // on this server, whose inserts the statements were: every row of the build
    let built_rows = build_rows(client, date, version).await?;
    let record = record(&day, state, version, built_rows);
    execute(client, &record, "record_build", &day).await?;
    metrics::histogram!("reporter_rollup_build_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(date = %date, rows = state.rows, "rollup built");
    Ok(state)
}

/// Runs the statements of one build of `at` (a date or an hour, every parameter after the
/// first) with `version` (their first) side by side: a FINAL read runs in one thread on
/// 18.16, so the statements share the cores rather than wait for each other
/// (docs/BENCHMARKS.md).
async fn run_side_by_side(
    client: &Client,
    statements: &[(&'static str, &'static str)],
    version: u64,
    at: &str,
) -> Result<(), QueryError> {
    let mut running = tokio::task::JoinSet::new();
    for &(name, sql) in statements {
        let client = client.clone();
        let at = at.to_owned();
        running.spawn(async move {
            versioned(&client, sql, version, &at)
                .with_setting("insert_distributed_sync", "1")
                .execute()
                .await
                .map_err(failed(name, at))
        });
    }
    while let Some(done) = running.join_next().await {
        // a panicked statement task is a bug; a failed statement fails the build
        done.expect("a rollup statement task panicked")?;
    }
    Ok(())
}

/// Runs one written-out statement (a record of a build), its inserts waiting for the shards.
async fn execute(
    client: &Client,
    sql: &str,
    query: &'static str,
    at: &str,
) -> Result<(), QueryError> {
    client
        .query(sql)
        .with_setting("insert_distributed_sync", "1")
        .execute()
        .await
        .map_err(failed(query, at))
}

/// Whether a build that read `built` (none: never built) still holds for the rows `now`.
fn is_current(built: Option<BaseState>, now: BaseState) -> bool {
    match built {
        Some(built) => built == now,
        None => now.rows == 0,
    }
}

/// Brings the rollups of `date` up to date: builds them when the base rows changed since
/// the latest build (or there is none and the day has rows), or when this server does not
/// hold every row that build wrote. Each replicated table replicates on its own, so a
/// replica can hold a build's record before its rows; a report read there would lack groups
/// and never be rewritten (its data did not change). A build here is exact, and its rows
/// replace the late ones when they arrive (a higher version).
pub async fn ensure(client: &Client, date: Date) -> Result<Outcome, QueryError> {
    let now = base_state(client, date).await?;
    let built = latest_build(client, date).await?;
    if is_current(built.map(|b| b.state()), now) {
        let Some(built) = built else {
            return Ok(Outcome::Current);
        };
        let held = build_rows(client, date, built.version).await?;
        if held == built.built_rows {
            return Ok(Outcome::Current);
        }
        metrics::counter!("reporter_rollup_incomplete_builds_total").increment(1);
        tracing::info!(
            date = %date,
            held,
            built_rows = built.built_rows,
            "this server holds a part of the day's latest rollup build: rebuilding"
        );
    }
    build(client, date).await.map(Outcome::Built)
}

/// [`ensure`] for every day from `first` to `last`, inclusive.
pub async fn ensure_days(client: &Client, first: Date, last: Date) -> Result<(), QueryError> {
    let mut day = first;
    while day <= last {
        ensure(client, day).await?;
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    Ok(())
}

/// The per-hour state of the base rows of every hour from the first parameter to the second
/// (excluded; both `'YYYY-MM-DD hh:mm:ss'` in UTC): `count()` and `max(received_at)`, commerce
/// and probes together, without `FINAL`; an hour without rows is absent.
pub const HOURS_STATE: &str = "\
SELECT toUInt32(hour) AS hour, count() AS rows, toUInt32(max(received_at)) AS received
FROM (
    SELECT toStartOfHour(occurred_at) AS hour, received_at FROM commerce_events
    WHERE occurred_at >= toDateTime(?, 'UTC') AND occurred_at < toDateTime(?, 'UTC')
    UNION ALL
    SELECT toStartOfHour(occurred_at) AS hour, received_at FROM probe_results
    WHERE occurred_at >= toDateTime(?, 'UTC') AND occurred_at < toDateTime(?, 'UTC')
)
GROUP BY hour";

/// The base state the latest build of each hour in the same range read, and its revision.
pub const HOURS_BUILT: &str = "\
SELECT toUInt32(hour) AS hour, base_rows AS rows, toUInt32(base_received) AS received, revision
FROM rollup_hour_builds FINAL
WHERE hour >= toDateTime(?, 'UTC') AND hour < toDateTime(?, 'UTC')";

/// The hour's commerce events per region, store, seller and currency, every event once
/// (`FINAL`), the types as columns. The `PREWHERE` on the hour runs before `FINAL` collapses
/// copies: the copies of an event share its `occurred_at`, so they are kept or dropped
/// together, and `FINAL` merges only the hour's rows, not the day's. Params: version, hour.
pub const BUILD_COMMERCE_HOUR: &str = "\
INSERT INTO commerce_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    region,
    store_id,
    seller_id,
    currency,
    countIf(type = 'view') AS views,
    countIf(type = 'cart') AS carts,
    countIf(type = 'remove_from_cart') AS removals,
    countIf(type = 'purchase') AS purchases,
    sumIf(toDecimal128(price, 9) * quantity, type = 'purchase') AS revenue,
    toUInt64(?) AS version
FROM commerce_events FINAL
PREWHERE toStartOfHour(occurred_at) = toDateTime(?, 'UTC')
GROUP BY hour, region, store_id, seller_id, currency";

/// The hour's purchases per region, store and category code, every purchase once (`FINAL`,
/// the hour taken before it as in [`BUILD_COMMERCE_HOUR`], and the type too: the copies of an
/// event share its type, so they are kept or dropped together, and `FINAL` merges only the
/// hour's purchases): how many, and their exact revenue. "Top categories: revenue over time"
/// reads these for built hours. Params: version, hour.
pub const BUILD_CATEGORY_HOUR: &str = "\
INSERT INTO category_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    region,
    store_id,
    category_code,
    count() AS purchases,
    sum(toDecimal128(price, 9) * quantity) AS revenue,
    toUInt64(?) AS version
FROM commerce_events FINAL
PREWHERE toStartOfHour(occurred_at) = toDateTime(?, 'UTC')
    AND type = 'purchase'
GROUP BY hour, region, store_id, category_code";

/// The hour's probes per region, store, target and vantage, every probe once (`FINAL`, the
/// hour taken before it as in [`BUILD_COMMERCE_HOUR`]), with the value histograms of the
/// timings the dashboards show and the least bandwidth measured. Params: version, hour.
pub const BUILD_PROBE_HOUR: &str = concat!(
    "INSERT INTO probe_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    region,
    store_id,
    target,
    vantage_region,
",
    probe_measures!(),
    "    sumMap([time_to_first_byte_ms], [toUInt64(1)]) AS ttfb,
    toUInt64(minIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0)) AS bandwidth_min,
    toUInt64(?) AS version
FROM probe_results FINAL
PREWHERE toStartOfHour(occurred_at) = toDateTime(?, 'UTC')
GROUP BY hour, region, store_id, target, vantage_region"
);

/// The hour's events of one event table (`$table`) per minute received, region and store,
/// every event once as the copy received last (`FINAL`, the hour taken before it as in
/// [`BUILD_COMMERCE_HOUR`]): rows, and the delay from occurred to received as a sum and a
/// value histogram. A copy received later moves its event to a later minute, so a group of an
/// earlier build can be empty now: every group the table holds for the hour is written again
/// (with zero rows if nothing is left in it), and the latest build replaces all of them.
/// The table's name is `materialize`d in both branches: as a constant, 18.16 refused the
/// statement over a cluster's Distributed tables once the hour held rows ("Cannot convert
/// column event_table because it is non constant in source stream", code 171; e2e test
/// `every_clickhouse_panel_gives_the_same_answer_on_the_cluster`). Params: version, hour,
/// hour.
macro_rules! build_arrivals_hour {
    ($table:literal) => {
        concat!(
            "INSERT INTO arrivals_minutes
SELECT hour, received, event_table, region, store_id, sum(n) AS rows, sum(delay) AS delay_sum,
    sumMap(delay_v, delay_c) AS delay_s, toUInt64(?) AS version
FROM (
    SELECT
        toStartOfHour(occurred_at) AS hour,
        toStartOfMinute(received_at) AS received,
        materialize('",
            $table,
            "') AS event_table,
        region,
        store_id,
        toUInt64(1) AS n,
        toInt64(toUInt32(received_at)) - toInt64(toUInt32(occurred_at)) AS delay,
        [delay] AS delay_v,
        [toUInt64(1)] AS delay_c
    FROM ",
            $table,
            " FINAL
    PREWHERE toStartOfHour(occurred_at) = toDateTime(?, 'UTC')
    UNION ALL
    SELECT hour, received, materialize('",
            $table,
            "') AS event_table, region, store_id, toUInt64(0) AS n,
        toInt64(0) AS delay, emptyArrayInt64() AS delay_v, emptyArrayUInt64() AS delay_c
    FROM arrivals_minutes
    WHERE hour = toDateTime(?, 'UTC') AND event_table = '",
            $table,
            "'
)
GROUP BY hour, received, event_table, region, store_id"
        )
    };
}

/// The hour's commerce events by the minute they were received ([`build_arrivals_hour`]).
/// Params: version, hour, hour.
pub const BUILD_COMMERCE_ARRIVALS_HOUR: &str = build_arrivals_hour!("commerce_events");

/// The hour's probes by the minute they were received ([`build_arrivals_hour`]). Params:
/// version, hour, hour.
pub const BUILD_PROBE_ARRIVALS_HOUR: &str = build_arrivals_hour!("probe_results");

/// What a build of an hour writes, recorded with it (`rollup_hour_builds.revision`): 1, the
/// statements of [`BUILD_HOUR`] since migration 9 (`category_hourly` too); 0, a build from
/// before (before migration 8, without `arrivals_minutes` either), which [`ensure_hours`]
/// builds again and the category and arrival panels do not read.
pub const HOUR_REVISION: u8 = 1;

/// The statements of one build of an hour, with their names.
pub const BUILD_HOUR: &[(&str, &str)] = &[
    ("build_commerce_hour", BUILD_COMMERCE_HOUR),
    ("build_probe_hour", BUILD_PROBE_HOUR),
    ("build_category_hour", BUILD_CATEGORY_HOUR),
    ("build_commerce_arrivals_hour", BUILD_COMMERCE_ARRIVALS_HOUR),
    ("build_probe_arrivals_hour", BUILD_PROBE_ARRIVALS_HOUR),
];

/// The statement that records builds of hours (`'YYYY-MM-DD hh:mm:ss'`, UTC), each with
/// the base state it read.
pub fn record_hours(hours: &[(String, BaseState)], version: u64) -> String {
    let builds: Vec<(String, BaseState)> = hours
        .iter()
        .map(|(hour, state)| (format!("toDateTime('{hour}', 'UTC')"), *state))
        .collect();
    record_in(
        "rollup_hour_builds",
        "hour",
        &builds,
        version,
        ("revision", format!("toUInt8({HOUR_REVISION})")),
    )
}

/// An hour as the hourly statements take it: `'YYYY-MM-DD hh:00:00'` of its start, UTC.
pub fn hour_text(start: OffsetDateTime) -> String {
    let at = start.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:00:00", at.date(), at.hour())
}

/// The start of the hour holding `at`.
pub fn hour_start(at: OffsetDateTime) -> OffsetDateTime {
    let seconds = at.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(seconds - seconds.rem_euclid(3600))
        .expect("an hour start is a valid time")
}

/// Builds the hourly rollups of the hour starting at `start` unconditionally, and records
/// the build with `state`, the base state read before.
pub async fn build_hour(
    client: &Client,
    start: OffsetDateTime,
    state: BaseState,
) -> Result<(), QueryError> {
    let started = std::time::Instant::now();
    let version = version_now();
    let hour = hour_text(start);
    run_side_by_side(client, BUILD_HOUR, version, &hour).await?;
    let record = record_hours(&[(hour.clone(), state)], version);
    execute(client, &record, "record_hour_build", &hour).await?;
    metrics::histogram!("reporter_hourly_rollup_build_seconds")
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(hour = %hour, rows = state.rows, "hourly rollup built");
    Ok(())
}

/// One hour's base state now, as [`HOURS_STATE`] reads it.
#[derive(Clone, Copy, Debug, clickhouse::Row, serde::Deserialize)]
struct HourState {
    hour: u32,
    rows: u64,
    received: u32,
}

/// The base state the latest build of an hour read, and its revision, as [`HOURS_BUILT`]
/// reads them.
#[derive(Clone, Copy, Debug, clickhouse::Row, serde::Deserialize)]
struct HourBuilt {
    hour: u32,
    rows: u64,
    received: u32,
    revision: u8,
}

/// Brings the hourly rollups of every hour from `first` to `end` (hour starts; `end`
/// excluded, so the caller passes the open hour) up to date: two cheap reads (every hour's
/// base state now, without `FINAL`, and the state its latest build read), then a build of
/// each hour whose state differs or whose build is of an older [`HOUR_REVISION`] (it lacks a
/// table), oldest first. Unlike a day, an hour without rows is recorded
/// too, since the dashboards read the rollups only for recorded hours; it has no groups to
/// build, so the empty hours are recorded together, in one statement. Returns how many hours
/// were built or recorded.
pub async fn ensure_hours(
    client: &Client,
    first: OffsetDateTime,
    end: OffsetDateTime,
) -> Result<usize, QueryError> {
    let (first, end) = (hour_start(first), hour_start(end));
    let (from, to) = (hour_text(first), hour_text(end));
    let now: BTreeMap<i64, BaseState> = hour_rows(client, HOURS_STATE, "hours_state", &from, &to)
        .await?
        .into_iter()
        .map(|h: HourState| (i64::from(h.hour), BaseState::new(h.rows, h.received)))
        .collect();
    let built: BTreeMap<i64, (BaseState, u8)> =
        hour_rows(client, HOURS_BUILT, "hours_built", &from, &to)
            .await?
            .into_iter()
            .map(|h: HourBuilt| {
                let state = BaseState::new(h.rows, h.received);
                (i64::from(h.hour), (state, h.revision))
            })
            .collect();
    let mut empty = Vec::new();
    let mut count = 0;
    let mut hour = first;
    while hour < end {
        let at = hour.unix_timestamp();
        let state = now.get(&at).copied().unwrap_or_default();
        match built.get(&at) {
            Some(&(read, revision)) if read == state && revision == HOUR_REVISION => {}
            // never built and still empty: nothing to group
            None if state.rows == 0 => empty.push((hour_text(hour), state)),
            _ => {
                build_hour(client, hour, state).await?;
                count += 1;
            }
        }
        hour += time::Duration::HOUR;
    }
    if !empty.is_empty() {
        let record = record_hours(&empty, version_now());
        execute(client, &record, "record_empty_hours", &from).await?;
        count += empty.len();
    }
    if count > 0 {
        tracing::info!(from = %from, to = %to, hours = count, "hourly rollups brought up to date");
    }
    Ok(count)
}

/// The rows `sql` ([`HOURS_STATE`] or [`HOURS_BUILT`]) reads for the hours from `from` to `to`.
async fn hour_rows<R: clickhouse::RowOwned + clickhouse::RowRead>(
    client: &Client,
    sql: &str,
    name: &'static str,
    from: &str,
    to: &str,
) -> Result<Vec<R>, QueryError> {
    let mut query = client.query(sql);
    // HOURS_STATE reads both event tables over the range, HOURS_BUILT one record
    for _ in 0..sql.matches('?').count() / 2 {
        query = query.bind(from).bind(to);
    }
    query.fetch_all::<R>().await.map_err(failed(name, from))
}

/// The identities of one event table's rows on the day that also have a row on one of the 7
/// days before it, and whether one such row is in an earlier month (see
/// [`conflicts_statement`]). Two steps: a set of the day's `event_id`s (fixed-size keys) that
/// the earlier days read their `event_id` column against (`PREWHERE`); the few matches are
/// then checked against the day by full identity, so an id two stores chose alike drops out
/// there. One set of `(store_id, event_id)` pairs instead was 2.6 times slower on 18.16
/// (docs/BENCHMARKS.md, "Conflicting ids"). The `GLOBAL IN`s ship each set to every shard of
/// a cluster (a plain `IN` over two Distributed tables is refused,
/// `distributed_product_mode = 'deny'`). `DAY` is the date.
macro_rules! earlier_copies_of {
    ($table:literal) => {
        concat!(
            "    SELECT toUInt64(count()) AS conflicts, toUInt64(countIf(earlier_month)) AS across_months
    FROM (
        SELECT store_id, event_id,
            max(toStartOfMonth(occurred_at) != toStartOfMonth(toDate(DAY))) AS earlier_month
        FROM ", $table, "
        PREWHERE event_id GLOBAL IN (
            SELECT event_id FROM ", $table, " WHERE toDate(occurred_at) = toDate(DAY))
        WHERE toDate(occurred_at) >= toDate(DAY) - 7 AND toDate(occurred_at) < toDate(DAY)
        GROUP BY store_id, event_id
    )
    WHERE (store_id, event_id) GLOBAL IN (
        SELECT store_id, event_id FROM ", $table, "
        PREWHERE event_id GLOBAL IN (
            SELECT event_id FROM ", $table, "
            PREWHERE event_id GLOBAL IN (
                SELECT event_id FROM ", $table, " WHERE toDate(occurred_at) = toDate(DAY))
            WHERE toDate(occurred_at) >= toDate(DAY) - 7 AND toDate(occurred_at) < toDate(DAY))
        WHERE toDate(occurred_at) = toDate(DAY))
"
        )
    };
}

/// The rows of a day's conflict window, the day and the 7 before it, of both event tables:
/// `count()` and `max(received_at)`, without `FINAL`. `DAY` is the date.
const WINDOW_STATE: &str = "\
SELECT toUInt64(sum(rows)) AS rows, toUInt32(max(received)) AS received
FROM (
    SELECT count() AS rows, max(received_at) AS received FROM commerce_events
    WHERE toDate(occurred_at) >= toDate(DAY) - 7 AND toDate(occurred_at) <= toDate(DAY)
    UNION ALL
    SELECT count() AS rows, max(received_at) AS received FROM probe_results
    WHERE toDate(occurred_at) >= toDate(DAY) - 7 AND toDate(occurred_at) <= toDate(DAY)
)";

/// The window state the latest conflict build of a day read. `DAY` is the date.
const CONFLICTS_BUILT_STATE: &str = "\
SELECT window_rows AS rows, toUInt32(window_received) AS received
FROM conflicts_daily FINAL
WHERE day = toDate(DAY)";

/// The conflict build of a day: its figures over both tables, the window state it read
/// before, and its version. `DAY`, `ROWS`, `RECEIVED` and `VERSION` are written in.
const BUILD_CONFLICTS: &str = concat!(
    "INSERT INTO conflicts_daily
    (day, conflicts, across_months, window_rows, window_received, version, built_at)
SELECT toDate(DAY), sum(conflicts), sum(across_months), toUInt64(ROWS),
    toDateTime(RECEIVED, 'UTC'), toUInt64(VERSION), now()
FROM (
",
    earlier_copies_of!("commerce_events"),
    "    UNION ALL
",
    earlier_copies_of!("probe_results"),
    ")"
);

/// [`WINDOW_STATE`] for `date`.
pub fn window_state_query(date: &str) -> String {
    WINDOW_STATE.replace("DAY", &format!("'{date}'"))
}

/// [`CONFLICTS_BUILT_STATE`] for `date`.
pub fn conflicts_built_query(date: &str) -> String {
    CONFLICTS_BUILT_STATE.replace("DAY", &format!("'{date}'"))
}

/// The statement of a conflict build of `date`, every value written in (each is a date or a
/// number).
pub fn conflicts_statement(date: &str, window: BaseState, version: u64) -> String {
    BUILD_CONFLICTS
        .replace("DAY", &format!("'{date}'"))
        .replace("ROWS", &window.rows.to_string())
        .replace("RECEIVED", &window.received.to_string())
        .replace("VERSION", &version.to_string())
}

/// Brings the conflict figures of `date` up to date (`conflicts_daily`, which the
/// data-quality panel sums): builds them when the rows of the day or of the 7 days before it
/// changed since the latest build (or there is none and the window has rows).
pub async fn ensure_conflicts(client: &Client, date: Date) -> Result<Outcome, QueryError> {
    let day = date.to_string();
    let now: BaseState = client
        .query(&window_state_query(&day))
        .fetch_one()
        .await
        .map_err(failed("conflicts_window_state", date))?;
    let built: Option<BaseState> = client
        .query(&conflicts_built_query(&day))
        .fetch_optional()
        .await
        .map_err(failed("conflicts_built_state", date))?;
    if is_current(built, now) {
        return Ok(Outcome::Current);
    }
    let started = std::time::Instant::now();
    client
        .query(&conflicts_statement(&day, now, version_now()))
        .with_setting("insert_distributed_sync", "1")
        .execute()
        .await
        .map_err(failed("build_conflicts", date))?;
    metrics::histogram!("reporter_conflicts_build_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(date = %date, window_rows = now.rows, "conflict figures built");
    Ok(Outcome::Built(now))
}

/// A statement of [`BUILD`] with its parameters written in, for engines without
/// client binding: the version first, then every `?` left as the date.
pub fn render(sql: &str, version: u64, date: &str) -> String {
    sql.replacen('?', &version.to_string(), 1)
        .replace('?', &format!("'{date}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idea of `queries::every_query_counts_a_duplicate_row_once`, for the rollups: a
    /// build reads the events with `FINAL` or only through `uniqExact` (blind to copies), and
    /// every read of a rollup table uses `FINAL`, so that only the latest build of a day counts.
    #[test]
    fn builds_count_a_copy_once_and_reads_see_the_latest_build_only() {
        for (name, sql) in BUILD {
            let base = ["commerce_events", "probe_results"]
                .into_iter()
                .filter(|t| sql.contains(&format!("FROM {t}")))
                .collect::<Vec<_>>();
            assert_eq!(base.len(), 1, "{name} reads one base table");
            let table = base[0];
            assert_eq!(sql.matches(&format!("FROM {table}")).count(), 1, "{name}");
            let collapsed = sql.contains(&format!("FROM {table} FINAL"));
            assert!(
                collapsed || (sql.contains("uniqExact(") && !sql.contains("count()")),
                "build {name} reads {table} without FINAL and counts copies"
            );
            assert!(sql.contains("toUInt64(?) AS version"), "{name}");
        }
        let reads = crate::queries::ALL
            .iter()
            .map(|(name, sql)| (*name, *sql))
            .chain([("built_state", BUILT_STATE)]);
        let mut rollup_reads = 0;
        for (name, sql) in reads {
            for table in ROLLUP_TABLES {
                let plain = sql.matches(&format!("FROM {table}")).count();
                let final_ = sql.matches(&format!("FROM {table} FINAL")).count();
                assert_eq!(plain, final_, "{name} reads {table} without FINAL");
                rollup_reads += plain;
            }
        }
        // 7 commerce queries, 6 probe queries and the build state
        assert_eq!(rollup_reads, 14);
    }

    /// The conflict statements have every value written in, read `conflicts_daily` only with
    /// `FINAL`, and count identities (a copy of a row repeats its identity, which the
    /// `GROUP BY` and the sets hold once), never rows.
    #[test]
    fn conflict_statements_are_complete_and_read_the_latest_build() {
        let window = BaseState {
            rows: 12,
            received: 34,
        };
        let build = conflicts_statement("2026-03-01", window, 56);
        for placeholder in ["DAY", "ROWS", "RECEIVED", "VERSION", "?"] {
            assert!(
                !build.contains(placeholder),
                "{placeholder} left in {build}"
            );
        }
        assert!(build.contains("toUInt64(12),\n    toDateTime(34, 'UTC'), toUInt64(56)"));
        assert_eq!(build.matches("GROUP BY store_id, event_id").count(), 2);
        assert_eq!(build.matches("toDate('2026-03-01')").count(), 17);
        let built = conflicts_built_query("2026-03-01");
        assert!(built.contains("FROM conflicts_daily FINAL"));
        assert!(!window_state_query("2026-03-01").contains("DAY"));
    }

    /// The hourly builds read their event table once, with `FINAL`, the hour chosen by a
    /// `PREWHERE` on `occurred_at` alone (which a copy of an event shares, so copies are kept
    /// or dropped together before `FINAL` collapses them); the records are complete.
    #[test]
    fn hourly_builds_count_a_copy_once_and_records_are_complete() {
        for (name, sql) in BUILD_HOUR {
            let table = ["commerce_events", "probe_results"]
                .into_iter()
                .find(|t| sql.contains(&format!("FROM {t} FINAL")))
                .unwrap_or_else(|| panic!("{name} reads an event table with FINAL"));
            // the arrivals also read the groups of earlier builds, to write them again
            let carried = sql.matches("FROM arrivals_minutes\n").count();
            assert_eq!(
                carried,
                usize::from(sql.starts_with("INSERT INTO arrivals_minutes")),
                "{name}"
            );
            assert!(carried == 0 || sql.contains("toUInt64(0) AS n"), "{name}");
            assert_eq!(
                sql.matches("FROM ").count() - sql.matches("FROM (").count() - carried,
                1,
                "{name} reads {table} once"
            );
            assert!(sql.contains("PREWHERE toStartOfHour(occurred_at) = toDateTime(?, 'UTC')\n"));
            assert!(sql.contains("toUInt64(?) AS version"), "{name}");
        }
        assert!(HOURS_BUILT.contains("FROM rollup_hour_builds FINAL"));
        let state = BaseState {
            rows: 3,
            received: 9,
        };
        let two = record_hours(
            &[
                ("2026-01-15 05:00:00".to_owned(), state),
                ("2026-01-15 06:00:00".to_owned(), Default::default()),
            ],
            7,
        );
        assert!(two.starts_with(
            "INSERT INTO rollup_hour_builds (hour, base_rows, base_received, version, built_at, \
             revision) SELECT"
        ));
        assert!(two.contains(
            "SELECT toDateTime('2026-01-15 05:00:00', 'UTC'), toUInt64(3), toDateTime(9, 'UTC'), \
             toUInt64(7), now(), toUInt8(1) UNION ALL SELECT toDateTime('2026-01-15 06:00:00', \
             'UTC'), toUInt64(0), toDateTime(0, 'UTC'), toUInt64(7), now(), toUInt8(1)"
        ));
        let at = time::macros::datetime!(2026-01-15 05:59:59 UTC);
        assert_eq!(
            hour_start(at),
            time::macros::datetime!(2026-01-15 05:00 UTC)
        );
        assert_eq!(hour_text(hour_start(at)), "2026-01-15 05:00:00");
    }

    #[test]
    fn statements_render_with_the_version_first() {
        assert_eq!(
            render("SELECT toUInt64(?), toDate(?), toDate(?)", 7, "2026-01-15"),
            "SELECT toUInt64(7), toDate('2026-01-15'), toDate('2026-01-15')"
        );
        let record = record(
            "2026-01-15",
            BaseState {
                rows: 3,
                received: 9,
            },
            7,
            11,
        );
        assert_eq!(
            record,
            "INSERT INTO rollup_builds (day, base_rows, base_received, version, built_at, \
             built_rows) SELECT toDate('2026-01-15'), toUInt64(3), toDateTime(9, 'UTC'), \
             toUInt64(7), now(), toUInt64(11)"
        );
    }

    /// The count that decides whether this server holds a whole build reads every table a
    /// build writes, once, by the day alone; and it is the one read of a rollup table without
    /// `FINAL`, which would drop rows a later build replaced rather than count them.
    #[test]
    fn build_rows_reads_every_table_a_build_writes() {
        let written: std::collections::BTreeSet<&str> = BUILD
            .iter()
            .map(|(name, sql)| {
                let first = sql.lines().next().unwrap_or_default();
                first
                    .strip_prefix("INSERT INTO ")
                    .unwrap_or_else(|| panic!("{name} starts with its INSERT: {first}"))
            })
            .collect();
        assert_eq!(written.len(), 4, "{written:?}");
        for table in &written {
            let read = format!("SELECT version FROM {table} WHERE day = toDate(?)\n");
            assert_eq!(BUILD_ROWS.matches(&read).count(), 1, "{table}");
        }
        assert_eq!(
            BUILD_ROWS.matches("FROM ").count() - BUILD_ROWS.matches("FROM (").count(),
            written.len()
        );
        assert!(!BUILD_ROWS.contains("FINAL"));
        assert!(BUILD_ROWS.starts_with("SELECT toUInt64(countIf(version = ?)) AS rows\n"));
        assert_eq!(
            render(BUILD_ROWS, 7, "2026-01-15")
                .matches("toDate('2026-01-15')")
                .count(),
            written.len()
        );
    }
}
