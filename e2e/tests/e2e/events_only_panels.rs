//! The dashboards' panels as they read the events alone, before they read the hourly rollups
//! (migrations 7 and 8) or the daily commerce rollup (migration 4), or the events without
//! `FINAL` (`dashboards::BLIND_TO_COPIES`): the oracle of
//! `panels_over_built_rollups_and_the_events_equal_the_events_alone`. Each is the panel's query
//! as it was, with `FINAL`, except that the incident windows' targets are sorted
//! (`arraySort`), and the product, category and seller tables order ties of revenue by
//! currency too, as the panels now do (a product, category or seller with the same revenue in
//! two currencies could otherwise fall either side of the `LIMIT`).

/// (the query's name, as `dashboards::queries` names it; its SQL reading the events only)
pub(crate) const EVENTS_ONLY: &[(&str, &str)] = &[
    (
        "products-categories.json: region",
        r"SELECT DISTINCT toString(region) AS region
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
ORDER BY region",
    ),
    (
        "products-categories.json: store",
        r"SELECT DISTINCT store_id
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
ORDER BY store_id",
    ),
    (
        "products-categories.json: seller",
        r"SELECT toString(seller_id) AS seller
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY seller
ORDER BY count() DESC, seller
LIMIT 1000",
    ),
    (
        "products-categories.json: Events per minute",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    count() * 60 / $__interval_s AS events_per_minute
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY time
ORDER BY time",
    ),
    (
        "products-categories.json: Events per minute by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    count() * 60 / $__interval_s AS events_per_minute
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "products-categories.json: Funnel steps",
        r"SELECT
    toString(type) AS step,
    count() AS events
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY type
ORDER BY type",
    ),
    (
        "products-categories.json: Purchases per view by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    countIf(type = 'purchase') / greatest(countIf(type = 'view'), 1) AS purchases_per_view
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: region",
        r"SELECT DISTINCT toString(region) AS region
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
ORDER BY region",
    ),
    (
        "store-stability.json: store",
        r"SELECT DISTINCT store_id
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
ORDER BY store_id",
    ),
    (
        "store-stability.json: Availability by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    100 * sum(up) / count() AS availability
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: Availability over the range",
        r"SELECT
    toString(region) AS region,
    100 * sum(up) / count() AS availability
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY region
ORDER BY region",
    ),
    (
        "store-stability.json: Incident windows (availability below 99%)",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS window_start,
    toString(region) AS region,
    count() AS probes,
    count() - sum(up) AS down,
    round(100 * sum(up) / count(), 2) AS availability,
    arraySort(groupUniqArray(target)) AS targets
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY window_start, region
HAVING sum(up) < 0.99 * count()
ORDER BY window_start DESC, region
LIMIT 500",
    ),
    (
        "store-stability.json: Response time p50 / p95 / p99 by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    quantileExact(0.5)(response_time_ms) AS p50,
    quantileExact(0.95)(response_time_ms) AS p95,
    quantileExact(0.99)(response_time_ms) AS p99
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: Network latency p50 / p95 by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    quantileExact(0.5)(network_latency_ms) AS p50,
    quantileExact(0.95)(network_latency_ms) AS p95
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: Bandwidth by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0) AS average,
    minIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0) AS minimum
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: Load by region",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    avg(cpu_load) AS average,
    max(cpu_load) AS maximum
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "store-stability.json: Regions over the range",
        r"SELECT
    toString(region) AS region,
    count() AS probes,
    round(100 * sum(up) / count(), 3) AS availability_pct,
    quantileExact(0.5)(response_time_ms) AS response_p50_ms,
    quantileExact(0.95)(response_time_ms) AS response_p95_ms,
    quantileExact(0.99)(response_time_ms) AS response_p99_ms,
    quantileExact(0.5)(network_latency_ms) AS latency_p50_ms,
    round(avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0) / 1000000, 1) AS bandwidth_avg_mbps,
    round(max(cpu_load), 3) AS load_max,
    uniqExact(store_id) AS stores
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY region
ORDER BY region",
    ),
    (
        "store-stability.json: From each vantage to each store region",
        r"SELECT
    if(vantage_region = 'unspecified', 'self', toString(vantage_region)) AS vantage,
    toString(region) AS store_region,
    count() AS probes,
    round(100 * sum(up) / count(), 3) AS availability_pct,
    quantileExact(0.5)(response_time_ms) AS response_p50_ms,
    quantileExact(0.95)(response_time_ms) AS response_p95_ms,
    quantileExact(0.95)(network_latency_ms) AS latency_p95_ms,
    quantileExact(0.95)(time_to_first_byte_ms) AS ttfb_p95_ms
FROM probe_results FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY vantage, store_region
ORDER BY vantage, store_region",
    ),
    (
        "products-categories.json: Top products by revenue",
        r"SELECT
    product_id,
    any(category_code) AS category,
    currency,
    toFloat64(sumIf(toDecimal128(price, 9) * quantity, type = 'purchase')) AS revenue,
    countIf(type = 'view') AS views,
    countIf(type = 'purchase') AS purchases,
    round(100 * purchases / greatest(views, 1), 2) AS conversion_pct
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY product_id, currency
ORDER BY revenue DESC, product_id, currency
LIMIT 20",
    ),
    (
        "products-categories.json: Top products by traffic",
        r"SELECT
    product_id,
    any(category_code) AS category,
    countIf(type = 'view') AS views,
    countIf(type = 'cart') AS carts,
    countIf(type = 'purchase') AS purchases,
    round(100 * purchases / greatest(views, 1), 2) AS conversion_pct
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY product_id
ORDER BY views DESC, product_id
LIMIT 20",
    ),
    (
        "products-categories.json: Categories by revenue, traffic and conversion",
        r"SELECT
    category_code AS category,
    currency,
    toFloat64(sumIf(toDecimal128(price, 9) * quantity, type = 'purchase')) AS revenue,
    countIf(type = 'view') AS views,
    countIf(type = 'purchase') AS purchases,
    round(100 * purchases / greatest(views, 1), 2) AS conversion_pct,
    uniqExact(product_id) AS products
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY category_code, currency
ORDER BY revenue DESC, category, currency
LIMIT 50",
    ),
    (
        "products-categories.json: Sellers",
        r"SELECT
    seller_id,
    currency,
    toFloat64(sumIf(toDecimal128(price, 9) * quantity, type = 'purchase')) AS revenue,
    countIf(type = 'purchase') AS purchases,
    uniqExactIf(product_id, type = 'purchase') AS products_sold,
    round(100 * purchases / greatest(countIf(type = 'view'), 1), 2) AS conversion_pct
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY seller_id, currency
ORDER BY revenue DESC, seller_id, currency
LIMIT 50",
    ),
    (
        "products-categories.json: Top categories: revenue over time",
        r"SELECT
    toDateTime(intDiv(toUInt32(occurred_at), $__interval_s) * $__interval_s) AS time,
    category_code AS category,
    toFloat64(sum(toDecimal128(price, 9) * quantity)) AS revenue
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at) AND type = 'purchase'
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY time, category
ORDER BY time, category",
    ),
    (
        "pipeline-health.json: Freshness by region (received → queryable)",
        r"SELECT
    region,
    toInt64(toUInt32(now())) - toInt64(toUInt32(max(received_at))) AS seconds_since_last_row,
    max(received_at) AS last_received_at
FROM
(
    SELECT toString(region) AS region, received_at
    FROM commerce_events FINAL
    WHERE received_at >= now() - 3600 AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region) AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
    UNION ALL
    SELECT toString(region) AS region, received_at
    FROM probe_results FINAL
    WHERE received_at >= now() - 3600 AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region) AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
)
GROUP BY region
ORDER BY region",
    ),
    (
        "pipeline-health.json: Delivery delay by region (occurred → received)",
        r"SELECT
    toDateTime(intDiv(toUInt32(received_at), $__interval_s) * $__interval_s) AS time,
    toString(region) AS region,
    avg(toInt64(toUInt32(received_at)) - toInt64(toUInt32(occurred_at))) AS average,
    quantileExact(0.95)(toInt64(toUInt32(received_at)) - toInt64(toUInt32(occurred_at))) AS p95
FROM commerce_events FINAL
WHERE $__timeFilter(received_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
GROUP BY time, region
ORDER BY time, region",
    ),
    (
        "pipeline-health.json: Rows loaded per minute by table",
        r"SELECT time, table, rows
FROM
(
    SELECT toDateTime(intDiv(toUInt32(received_at), $__interval_s) * $__interval_s) AS time, 'commerce_events' AS table, count() * 60 / $__interval_s AS rows
    FROM commerce_events FINAL
    WHERE $__timeFilter(received_at) AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region) AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
    GROUP BY time
    UNION ALL
    SELECT toDateTime(intDiv(toUInt32(received_at), $__interval_s) * $__interval_s) AS time, 'probe_results' AS table, count() * 60 / $__interval_s AS rows
    FROM probe_results FINAL
    WHERE $__timeFilter(received_at) AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region) AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
    GROUP BY time
)
ORDER BY time, table",
    ),
    (
        "products-categories.json: Conversion funnel by region",
        r"SELECT
    toString(region) AS region,
    uniqExactIf(session_id, type = 'view') AS viewing_sessions,
    uniqExactIf(session_id, type = 'cart') AS carting_sessions,
    uniqExactIf(session_id, type = 'purchase') AS purchasing_sessions,
    round(100 * purchasing_sessions / greatest(viewing_sessions, 1), 2) AS conversion_pct
FROM commerce_events FINAL
WHERE $__timeFilter(occurred_at)
  AND $__conditionalAll(toString(region) IN (${region:singlequote}), $region)
  AND $__conditionalAll(store_id IN (${store:singlequote}), $store)
  AND $__conditionalAll(toString(seller_id) IN (${seller:singlequote}), $seller)
GROUP BY region
ORDER BY region",
    ),
];
