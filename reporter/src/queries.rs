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
//! The probe figures come the same way from `probe_daily` and `probe_minutes` (migration 5),
//! their exact quantiles from value histograms ([`quantile!`]).
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

/// `quantileExact(level)` of the values of a histogram `h` of `probes` values (a `sumMap`
/// of the rollups' `(values, counts)`, the values sorted): the value at rank
/// `floor(level * probes)`, counting from 0, which is where `quantileExact` picks its value
/// from the sorted values (the same on 18.16 and current releases). Exact, and histograms
/// merge exactly, so it equals `quantileExact` over the probes themselves.
macro_rules! quantile {
    ($level:literal, $h:literal) => {
        concat!(
            "toFloat64(arrayFirst((v, c) -> c > toUInt64(",
            $level,
            " * probes), tupleElement(",
            $h,
            ", 1), arrayCumSum(tupleElement(",
            $h,
            ", 2))))"
        )
    };
}

/// The response and latency quantiles a stability row and a vantage cell share, from the
/// histograms of [`probe_sums!`], each followed by `,` and a new line.
macro_rules! timings {
    () => {
        concat!(
            quantile!("0.5", "response"),
            " AS response_p50_ms,\n    ",
            quantile!("0.95", "response"),
            " AS response_p95_ms,\n    ",
            quantile!("0.99", "response"),
            " AS response_p99_ms,\n    ",
            quantile!("0.5", "latency"),
            " AS latency_p50_ms,\n    ",
            quantile!("0.95", "latency"),
            " AS latency_p95_ms,\n    ",
        )
    };
}

/// The sums a [`crate::report::StabilityRow`] or a vantage cell is computed from, over the
/// rows of `probe_daily` of a group: probes, up, the merged histograms, bandwidth and load.
macro_rules! probe_sums {
    () => {
        "    sum(probes) AS n,
    sum(up) AS n_up,
    sumMap(tupleElement(response_time_ms, 1), tupleElement(response_time_ms, 2)) AS response,
    sumMap(tupleElement(network_latency_ms, 1), tupleElement(network_latency_ms, 2)) AS latency,
    sumMap(tupleElement(tls_handshake_ms, 1), tupleElement(tls_handshake_ms, 2)) AS tls,
    sumMap(tupleElement(time_to_first_byte_ms, 1), tupleElement(time_to_first_byte_ms, 2)) AS ttfb,
    sum(bandwidth_sum) AS bw_sum,
    sum(bandwidth_samples) AS bw_samples,
    sum(cpu_load_sum) AS load_sum,
    max(cpu_load_max) AS load_max
FROM probe_daily FINAL
WHERE day = toDate(?)"
    };
}

/// The bandwidth average over the probes that measured it (a bandwidth of 0 did not),
/// 0 when none did, and how many did: `avgIf(…, > 0)` from the exact integer sum.
macro_rules! bandwidth {
    () => {
        "    toFloat64(if(bw_samples = 0, 0, bw_sum / bw_samples)) AS bandwidth_avg_bps,
    bw_samples AS bandwidth_samples"
    };
}

/// A [`crate::report::StabilityRow`] of the day's in-region probes, grouped by `$group`
/// (region, and a store or a target); the query names its groups `region`, `store_id` and
/// `target` (`'*'` for every one).
macro_rules! stability {
    ($keys:literal, $group:literal) => {
        concat!(
            "SELECT
    region, store_id, target, n AS probes, n_up AS up,
    ",
            timings!(),
            quantile!("0.99", "latency"),
            " AS latency_p99_ms,
",
            bandwidth!(),
            ",
    toFloat64(load_sum / n) AS cpu_load_avg,
    toFloat64(load_max) AS cpu_load_max
FROM (
    SELECT
    ",
            $keys,
            ",
",
            probe_sums!(),
            " AND ",
            in_region!(),
            "
    GROUP BY ",
            $group,
            "
)
ORDER BY ",
            $group
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
pub const STABILITY: &str = stability!(
    "toString(region) AS region, '*' AS store_id, '*' AS target",
    "region"
);

/// Probe stability per region and probe target on one day, every store together, from
/// the probes taken inside the store's region. Params: date.
pub const STABILITY_BY_TARGET: &str = stability!(
    "toString(region) AS region, '*' AS store_id, target",
    "region, target"
);

/// Probe stability per store on one day, every target together, from the probes taken
/// inside the store's region. Params: date.
pub const STABILITY_BY_STORE: &str = stability!(
    "toString(region) AS region, store_id, '*' AS target",
    "region, store_id"
);

/// Response times from each vantage to the stores of each region on one day, every probe
/// (a store's own probe has the vantage `unspecified`, shown as `self`): the matrix of
/// "how fast is a store in B from A". Params: date.
pub const VANTAGE_MATRIX: &str = concat!(
    "SELECT
    vantage, region, n AS probes, n_up AS up,
    ",
    timings!(),
    quantile!("0.95", "tls"),
    " AS tls_p95_ms,
    ",
    quantile!("0.95", "ttfb"),
    " AS ttfb_p95_ms,
",
    bandwidth!(),
    "
FROM (
    SELECT
    if(vantage_region = 'unspecified', 'self', toString(vantage_region)) AS vantage,
    toString(region) AS region,
",
    probe_sums!(),
    "
    GROUP BY vantage, region
)
ORDER BY vantage, region"
);

/// Probes per store, target and minute from inside the store's region (`probe_minutes` holds
/// only those): the input of uptime as time (`uptime.rs`). Params: date.
pub const UPTIME_MINUTES: &str = "\
SELECT
    toString(region) AS region,
    store_id,
    target,
    minute,
    sum(probes) AS probes,
    sum(up) AS up
FROM probe_minutes FINAL
WHERE day = toDate(?)
GROUP BY region, store_id, target, minute
ORDER BY region, store_id, target, minute";

/// Probes per region and minute (Unix seconds of the minute's start), the input of
/// incident detection: the SLO comparison happens in Rust so thresholds stay configuration,
/// not SQL. Params: date.
pub const MINUTES: &str = concat!(
    "SELECT
    region, minute, n AS probes, n_up AS up,
    ",
    quantile!("0.95", "response"),
    " AS response_p95_ms
FROM (
    SELECT
    toString(region) AS region,
    minute,
    sum(probes) AS n,
    sum(up) AS n_up,
    sumMap(tupleElement(response_time_ms, 1), tupleElement(response_time_ms, 2)) AS response
    FROM probe_minutes FINAL
    WHERE day = toDate(?)
    GROUP BY region, minute
)
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

/// The state of the data a report reads: the latest `received_at` (Unix seconds), its
/// watermark, and the rows, copies included (`count()` without `FINAL`: not a figure of any
/// report, but what tells that rows arrived since, whatever their `received_at`).
/// Params: first date, last date, first date, last date.
pub const WATERMARK: &str = "\
SELECT toUInt32(max(received_at)) AS watermark, count() AS rows
FROM (
    SELECT received_at FROM commerce_events
    WHERE toDate(occurred_at) >= toDate(?) AND toDate(occurred_at) <= toDate(?)
    UNION ALL
    SELECT received_at FROM probe_results
    WHERE toDate(occurred_at) >= toDate(?) AND toDate(occurred_at) <= toDate(?)
)";

/// Data quality: the identities `(store_id, event_id)` of the day that also have a row on one
/// of the 7 days before it (the gateway's acceptance window): a retry whose `occurred_at`
/// moved to a later day is a second row that `FINAL` cannot collapse (the day is in the sort
/// key), so it is counted here instead of hidden. The figure is the day's row of
/// `conflicts_daily`, which `rollup::ensure_conflicts` brings up to date before the report
/// reads; the dashboards sum the same rows. No row: no event in the window, no conflict.
/// Params: date.
pub const CONFLICTS: &str = "\
SELECT conflicts
FROM conflicts_daily FINAL
WHERE day = toDate(?)";

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
