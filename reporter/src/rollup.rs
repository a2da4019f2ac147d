//! The per-day rollups the report is read from (migrations 4 and 5: `commerce_daily`,
//! `audience_daily`, `probe_daily`, `probe_minutes`, and `rollup_builds`): built from one
//! deduplicated read of the day, and rebuilt whenever the day's rows changed since.
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
//! On a cluster the rollup tables are Distributed, sharded by day, and the build's inserts
//! wait for every shard (`insert_distributed_sync`), so the report that follows reads them.

use clickhouse::Client;
use time::Date;

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

/// The base state the latest build of a day read. Params: date.
pub const BUILT_STATE: &str = "\
SELECT base_rows AS rows, toUInt32(base_received) AS received
FROM rollup_builds FINAL
WHERE day = toDate(?)";

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

/// The day's probes per region, store, target and vantage, every probe once (`FINAL`), with
/// the value histograms of its four timings (`sumMap`: the values sorted, their counts).
/// Params: version, date.
pub const BUILD_PROBES: &str = "\
INSERT INTO probe_daily
SELECT
    toDate(occurred_at) AS day,
    region,
    store_id,
    target,
    vantage_region,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toUInt64(sumIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0)) AS bandwidth_sum,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples,
    sum(cpu_load) AS cpu_load_sum,
    max(cpu_load) AS cpu_load_max,
    sumMap([response_time_ms], [toUInt64(1)]) AS response,
    sumMap([network_latency_ms], [toUInt64(1)]) AS latency,
    sumMap([tls_handshake_ms], [toUInt64(1)]) AS tls,
    sumMap([time_to_first_byte_ms], [toUInt64(1)]) AS ttfb,
    toUInt64(?) AS version
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY day, region, store_id, target, vantage_region";

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

/// The statement that records a build of `date`: the base state it read and its version.
/// Written out rather than bound: every value is a number or a date.
pub fn record(date: &str, state: BaseState, version: u64) -> String {
    format!(
        "INSERT INTO rollup_builds (day, base_rows, base_received, version, built_at) \
         SELECT toDate('{date}'), toUInt64({}), toDateTime({}, 'UTC'), toUInt64({version}), now()",
        state.rows, state.received
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

/// What [`ensure`] did for one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The rollup was built from this state of the base rows.
    Built(BaseState),
    /// The base rows are as the latest build read them (or there are none, and none built).
    Current,
}

fn failed(query: &'static str, date: Date) -> impl FnOnce(clickhouse::error::Error) -> QueryError {
    move |source| QueryError {
        query,
        date: date.to_string(),
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

/// The base state the latest build of `date` read, if any.
pub async fn built_state(client: &Client, date: Date) -> Result<Option<BaseState>, QueryError> {
    client
        .query(BUILT_STATE)
        .bind(date.to_string())
        .fetch_optional()
        .await
        .map_err(failed("built_state", date))
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
    // side by side: a FINAL read runs in one thread on 18.16, so the statements share the
    // cores rather than wait for each other (docs/BENCHMARKS.md)
    let mut statements = tokio::task::JoinSet::new();
    for &(name, sql) in BUILD {
        let client = client.clone();
        statements.spawn(async move {
            client
                .query(sql)
                .bind(version)
                .bind(date.to_string())
                .with_setting("insert_distributed_sync", "1")
                .execute()
                .await
                .map_err(failed(name, date))
        });
    }
    while let Some(done) = statements.join_next().await {
        // a panicked statement task is a bug; a failed statement fails the build
        done.expect("a rollup statement task panicked")?;
    }
    client
        .query(&record(&date.to_string(), state, version))
        .with_setting("insert_distributed_sync", "1")
        .execute()
        .await
        .map_err(failed("record_build", date))?;
    metrics::histogram!("reporter_rollup_build_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(date = %date, rows = state.rows, "rollup built");
    Ok(state)
}

/// Whether a build that read `built` (none: never built) still holds for the rows `now`.
fn is_current(built: Option<BaseState>, now: BaseState) -> bool {
    match built {
        Some(built) => built == now,
        None => now.rows == 0,
    }
}

/// Brings the rollups of `date` up to date: builds them when the base rows changed since
/// the latest build (or there is none and the day has rows).
pub async fn ensure(client: &Client, date: Date) -> Result<Outcome, QueryError> {
    let now = base_state(client, date).await?;
    let built = built_state(client, date).await?;
    if is_current(built, now) {
        return Ok(Outcome::Current);
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
        );
        assert!(
            record.contains("toDate('2026-01-15'), toUInt64(3), toDateTime(9, 'UTC'), toUInt64(7)")
        );
    }
}
