//! Every SQL statement the reporter runs. Each must run on ClickHouse 18.16 and on current
//! releases; a test executes them all on both.
//!
//! Duplicates (a redelivered entry, a store's retry) are collapsed with `FINAL`, which
//! merges ReplacingMergeTree rows with the same key at query time.
//! Parameters are `?`, bound client-side in order.

/// Commerce events and units per type on one day. Params: date.
pub const FUNNEL: &str = "\
SELECT toString(type) AS type, count() AS events, sum(toUInt64(quantity)) AS units
FROM commerce_events FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY type
ORDER BY type";

/// Purchase revenue per currency on one day, as exact decimal text. Params: date.
pub const REVENUE: &str = "\
SELECT currency, toString(sum(price * quantity)) AS revenue, count() AS purchases
FROM commerce_events FINAL
WHERE toDate(occurred_at) = toDate(?) AND type = 'purchase'
GROUP BY currency
ORDER BY currency";

/// Probe stability per region on one day. Params: date.
pub const STABILITY: &str = "\
SELECT
    toString(region) AS region,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.5)(response_time_ms)) AS response_p50_ms,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms,
    toFloat64(quantileExact(0.99)(response_time_ms)) AS response_p99_ms,
    toFloat64(quantileExact(0.5)(network_latency_ms)) AS latency_p50_ms,
    toFloat64(avg(bandwidth_bytes_per_second)) AS bandwidth_avg_bps,
    toFloat64(max(cpu_load)) AS cpu_load_max
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY region
ORDER BY region";

/// The latest `received_at` included in the day's data: the report's watermark. Params: date.
pub const WATERMARK: &str = "\
SELECT toUInt32(max(received_at)) AS watermark
FROM (
    SELECT received_at FROM commerce_events WHERE toDate(occurred_at) = toDate(?)
    UNION ALL
    SELECT received_at FROM probe_results WHERE toDate(occurred_at) = toDate(?)
)";

/// Every query with its name and number of date parameters, for the engine checks.
pub const ALL: &[(&str, &str)] = &[
    ("funnel", FUNNEL),
    ("revenue", REVENUE),
    ("stability", STABILITY),
    ("watermark", WATERMARK),
];

/// A query with every `?` replaced by a date literal, for engines without client binding.
pub fn render(sql: &str, date: &str) -> String {
    sql.replace('?', &format!("'{date}'"))
}
