//! Every SQL statement the reporter runs. Each must run on ClickHouse 18.16 and on current
//! releases; a test executes them all on both.
//!
//! Duplicates (a redelivered entry, a store's retry) are collapsed with `FINAL`, which
//! merges ReplacingMergeTree rows with the same key at query time, so every count and sum
//! below is exactly-once. The commerce figures come from the per-day rollups
//! (`commerce_daily`, `audience_daily`, migration 4), which [`crate::rollup`] builds from one
//! `FINAL` read of the day before the report reads them, and which are themselves read with
//! `FINAL` (the latest build of a day replaces the earlier ones). A SummingMergeTree view
//! would count a redelivered row twice; a rollup built from the deduplicated day does not.
//! The probe figures are still computed from `probe_results FINAL` at report time.
//! Parameters are `?`, bound client-side in order; all are dates (`YYYY-MM-DD`).
//!
//! Stability per region, store and target counts the probes taken from inside the store's
//! region: the store's own (`vantage_region` unspecified) and a prober's of that region. A
//! probe from another continent measures the distance as much as the store, so those go
//! to the vantage matrix (`VANTAGE_MATRIX`), which shows every probe by where it came from.
//!
//! Money: `price` is `Decimal(18, 9)`, an Int64 of nanos underneath, so `price * quantity`
//! would overflow past ~9.2e9 units (`Code: 407 Decimal math overflow`). Every line total
//! is widened first, `toDecimal128(price, 9) * quantity`, and its sums are
//! `Decimal(38, 9)`: exact up to ~1.7e29 units (README, "Money limits").

/// The filter that keeps the probes taken inside the store's region (see the module doc).
macro_rules! in_region {
    () => {
        "(vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))"
    };
}

/// The figures of a [`crate::report::StabilityRow`] after its region, store and target, and
/// the day's in-region probes they are computed from; the query adds its `GROUP BY`.
macro_rules! stability_figures {
    () => {
        concat!(
            "    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.5)(response_time_ms)) AS response_p50_ms,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms,
    toFloat64(quantileExact(0.99)(response_time_ms)) AS response_p99_ms,
    toFloat64(quantileExact(0.5)(network_latency_ms)) AS latency_p50_ms,
    toFloat64(quantileExact(0.95)(network_latency_ms)) AS latency_p95_ms,
    toFloat64(quantileExact(0.99)(network_latency_ms)) AS latency_p99_ms,
    toFloat64(if(countIf(bandwidth_bytes_per_second > 0) = 0, 0,
        avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0))) AS bandwidth_avg_bps,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples,
    toFloat64(avg(cpu_load)) AS cpu_load_avg,
    toFloat64(max(cpu_load)) AS cpu_load_max
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND ",
            in_region!(),
            "\n"
        )
    };
}

/// The identities of one table's rows on the day that also have a row on another day of
/// the window around it (see [`CONFLICTS`]). Params: the date, five times.
macro_rules! conflicts_of {
    ($table:literal) => {
        concat!(
            "    SELECT DISTINCT store_id, event_id FROM ",
            $table,
            "
    WHERE toDate(occurred_at) = toDate(?)
        AND (store_id, event_id) GLOBAL IN (
            SELECT store_id, event_id FROM ",
            $table,
            "
            PREWHERE event_id GLOBAL IN (
                SELECT event_id FROM ",
            $table,
            " WHERE toDate(occurred_at) = toDate(?))
            WHERE toDate(occurred_at) >= toDate(?) - 7 AND toDate(occurred_at) <= toDate(?) + 7
                AND toDate(occurred_at) != toDate(?))
"
        )
    };
}

/// Commerce events and units per type on one day. Params: date.
pub const FUNNEL: &str = "\
SELECT toString(type) AS type, sum(events) AS events, sum(units) AS units
FROM commerce_daily FINAL
WHERE day = toDate(?)
GROUP BY type
ORDER BY type";

/// Purchase revenue per currency on one day, as exact decimal text. Params: date.
pub const REVENUE: &str = "\
SELECT currency, toString(sum(revenue)) AS revenue, sum(events) AS purchases
FROM commerce_daily FINAL
WHERE day = toDate(?) AND type = 'purchase'
GROUP BY currency
ORDER BY currency";

/// Probe stability per region on one day, every store and target together (`store_id`
/// and `target` are `*`), from the probes taken inside the store's region (see the module
/// doc). Exact quantiles, so they equal a sort of the raw values. A bandwidth of 0 is a probe
/// that did not measure it, left out of the average and counted in `bandwidth_samples` no
/// more. Params: date.
pub const STABILITY: &str = concat!(
    "\
SELECT
    toString(region) AS region,
    '*' AS store_id,
    '*' AS target,
",
    stability_figures!(),
    "GROUP BY region
ORDER BY region"
);

/// Probe stability per region and probe target on one day, every store together, from
/// the probes taken inside the store's region. Params: date.
pub const STABILITY_BY_TARGET: &str = concat!(
    "\
SELECT
    toString(region) AS region,
    '*' AS store_id,
    target,
",
    stability_figures!(),
    "GROUP BY region, target
ORDER BY region, target"
);

/// Probe stability per store on one day, every target together, from the probes taken
/// inside the store's region. Params: date.
pub const STABILITY_BY_STORE: &str = concat!(
    "\
SELECT
    toString(region) AS region,
    store_id,
    '*' AS target,
",
    stability_figures!(),
    "GROUP BY region, store_id
ORDER BY region, store_id"
);

/// Response times from each vantage to the stores of each region on one day, every probe
/// (a store's own probe has the vantage `unspecified`, shown as `self`): the matrix of
/// "how fast is a store in B from A". Params: date.
pub const VANTAGE_MATRIX: &str = "\
SELECT
    if(vantage_region = 'unspecified', 'self', toString(vantage_region)) AS vantage,
    toString(region) AS region,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.5)(response_time_ms)) AS response_p50_ms,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms,
    toFloat64(quantileExact(0.99)(response_time_ms)) AS response_p99_ms,
    toFloat64(quantileExact(0.5)(network_latency_ms)) AS latency_p50_ms,
    toFloat64(quantileExact(0.95)(network_latency_ms)) AS latency_p95_ms,
    toFloat64(quantileExact(0.95)(tls_handshake_ms)) AS tls_p95_ms,
    toFloat64(quantileExact(0.95)(time_to_first_byte_ms)) AS ttfb_p95_ms,
    toFloat64(if(countIf(bandwidth_bytes_per_second > 0) = 0, 0,
        avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0))) AS bandwidth_avg_bps,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY vantage, region
ORDER BY vantage, region";

/// Probes per store, target and minute from inside the store's region: the input of uptime
/// as time (`uptime.rs`). Params: date.
pub const UPTIME_MINUTES: &str = concat!(
    "\
SELECT
    toString(region) AS region,
    store_id,
    target,
    toUInt32(toStartOfMinute(occurred_at)) AS minute,
    count() AS probes,
    toUInt64(sum(up)) AS up
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND ",
    in_region!(),
    "
GROUP BY region, store_id, target, minute
ORDER BY region, store_id, target, minute"
);

/// Probes per region and minute (Unix seconds of the minute's start), the input of
/// incident detection: the SLO comparison happens in Rust so thresholds stay configuration,
/// not SQL. Params: date.
pub const MINUTES: &str = concat!(
    "\
SELECT
    toString(region) AS region,
    toUInt32(toStartOfMinute(occurred_at)) AS minute,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND ",
    in_region!(),
    "
GROUP BY region, minute
ORDER BY region, minute"
);

/// Funnel counts per seller, category, brand and product on one day; the reporter sums
/// these exactly into products, categories (by id, the code only a label), brands, sellers
/// and the marketplace. Params: date.
pub const ITEMS: &str = "\
SELECT
    seller_id,
    category_id,
    category_code,
    brand,
    product_id,
    sumIf(events, type = 'view') AS views,
    sumIf(events, type = 'cart') AS carts,
    sumIf(events, type = 'purchase') AS purchases,
    sumIf(units, type = 'purchase') AS units
FROM commerce_daily FINAL
WHERE day = toDate(?)
GROUP BY seller_id, category_id, category_code, brand, product_id
ORDER BY seller_id, category_id, category_code, brand, product_id";

/// Purchase revenue per seller, category, brand, product and currency on one day, as exact
/// decimal text. Params: date.
pub const ITEM_REVENUE: &str = "\
SELECT
    seller_id,
    category_id,
    category_code,
    brand,
    product_id,
    currency,
    toString(sum(revenue)) AS revenue,
    sum(events) AS purchases
FROM commerce_daily FINAL
WHERE day = toDate(?) AND type = 'purchase'
GROUP BY seller_id, category_id, category_code, brand, product_id, currency
ORDER BY seller_id, category_id, category_code, brand, product_id, currency";

/// Distinct users and sessions on one day, as the rollup build counted them (`uniqExact`,
/// blind to duplicate rows). Params: date.
pub const AUDIENCE: &str = "\
SELECT users, sessions
FROM audience_daily FINAL
WHERE day = toDate(?) AND scope = 'marketplace'";

/// Distinct users and sessions per seller on one day. Params: date.
pub const SELLER_AUDIENCE: &str = "\
SELECT seller_id, users, sessions
FROM audience_daily FINAL
WHERE day = toDate(?) AND scope = 'seller'
ORDER BY seller_id";

/// Products viewed but never purchased between two days, inclusive: the candidates to
/// discontinue. Params: first date, last date.
pub const UNSOLD: &str = "\
SELECT seller_id, product_id, sumIf(events, type = 'view') AS views
FROM commerce_daily FINAL
WHERE day >= toDate(?) AND day <= toDate(?)
GROUP BY seller_id, product_id
HAVING sumIf(events, type = 'purchase') = 0 AND sumIf(events, type = 'view') > 0
ORDER BY seller_id, product_id";

/// The latest `received_at` of the data a report reads (Unix seconds): its watermark.
/// Params: first date, last date, first date, last date.
pub const WATERMARK: &str = "\
SELECT toUInt32(max(received_at)) AS watermark
FROM (
    SELECT received_at FROM commerce_events
    WHERE toDate(occurred_at) >= toDate(?) AND toDate(occurred_at) <= toDate(?)
    UNION ALL
    SELECT received_at FROM probe_results
    WHERE toDate(occurred_at) >= toDate(?) AND toDate(occurred_at) <= toDate(?)
)";

/// Data quality: events of the day whose identity `(store_id, event_id)` also has a row on
/// another day within the gateway's acceptance window (7 days) on either side. A retry must
/// resend the identical event; one whose `occurred_at` moved to another day is a second row
/// that `FINAL` cannot collapse (the day is in the sort key, and months are partitions), so
/// it is counted here instead of hidden.
///
/// Two steps, so that the large set is of fixed-size keys and the neighbours are read one
/// column at a time (#19): the day's `event_id`s (UUIDs) make a set, and the other days of
/// the window read only their `event_id` column against it (`PREWHERE`); the few rows that
/// match are the candidates, whose full identity the day is then checked against. An id two
/// stores chose alike is a candidate that the second step drops. Measured on 18.16 with one
/// full neighbour day, 2.3 times faster than one set of `(store_id, event_id)` pairs
/// (docs/BENCHMARKS.md, "Conflicting ids"). `GLOBAL IN`: on a cluster each subquery reads
/// the Distributed table once and ships its set to every shard (a plain `IN` over two
/// Distributed tables is refused, `distributed_product_mode = 'deny'`); on one server it is
/// a plain `IN`. Params: the date, ten times.
pub const CONFLICTS: &str = concat!(
    "SELECT toUInt64(count()) AS conflicts\nFROM (\n",
    conflicts_of!("commerce_events"),
    "    UNION ALL\n",
    conflicts_of!("probe_results"),
    ")"
);

/// Every query with its name, for the engine checks.
pub const ALL: &[(&str, &str)] = &[
    ("funnel", FUNNEL),
    ("revenue", REVENUE),
    ("stability", STABILITY),
    ("stability_by_target", STABILITY_BY_TARGET),
    ("stability_by_store", STABILITY_BY_STORE),
    ("vantage_matrix", VANTAGE_MATRIX),
    ("uptime_minutes", UPTIME_MINUTES),
    ("minutes", MINUTES),
    ("items", ITEMS),
    ("item_revenue", ITEM_REVENUE),
    ("audience", AUDIENCE),
    ("seller_audience", SELLER_AUDIENCE),
    ("unsold", UNSOLD),
    ("watermark", WATERMARK),
    ("conflicts", CONFLICTS),
];

/// A query with every `?` replaced by a date literal, for engines without client binding.
pub fn render(sql: &str, date: &str) -> String {
    sql.replace('?', &format!("'{date}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redelivered entry or a store's retry leaves a second copy of a row until a merge.
    /// Each query collapses it (`FINAL`) or is blind to it: `uniqExact` and `DISTINCT` count
    /// a copy once, `max` of a copy is the same value.
    #[test]
    fn every_query_counts_a_duplicate_row_once() {
        const BLIND: &[&str] = &["uniqExact(", "DISTINCT", "max("];
        for (name, sql) in ALL {
            for table in ["commerce_events", "probe_results"] {
                let reads = sql.matches(&format!("FROM {table}")).count();
                let collapsed = sql.matches(&format!("FROM {table} FINAL")).count();
                assert!(
                    reads == collapsed || BLIND.iter().any(|b| sql.contains(b)),
                    "query {name} reads {table} without FINAL and counts duplicates"
                );
            }
        }
    }
}
