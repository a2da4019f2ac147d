-- Per-day rollups of the probes (issue #19), built and read like migration 4's commerce
-- rollups (reporter/src/rollup.rs; ARCHITECTURE.md, "Rollups"): one FINAL read of a day,
-- ReplacingMergeTree(version) read with FINAL, sharded by day in a cluster.
--
-- Exact quantiles come from value histograms: every measured value with the number of probes
-- that measured it, as sumMap gives them (the values sorted, their counts). Histograms merge
-- exactly (sumMap again), and the value at rank floor(level * n) of a merged histogram is what
-- quantileExact(level) returns over the probes themselves (reporter/src/queries.rs).

-- Per day, region, store, target and vantage: every figure of the stability tables and the
-- vantage matrix.
CREATE TABLE IF NOT EXISTS probe_daily
(
    day               Date,
    region            Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id          String,
    target            String,
    vantage_region    Enum8('unspecified' = 0, 'europe' = 1, 'america' = 2, 'asia' = 3),
    probes            UInt64,
    up                UInt64,
    bandwidth_sum     UInt64,
    bandwidth_samples UInt64,
    cpu_load_sum      Float64,
    cpu_load_max      Float64,
    response_time_ms   Tuple(Array(UInt32), Array(UInt64)),
    network_latency_ms Tuple(Array(UInt32), Array(UInt64)),
    tls_handshake_ms   Tuple(Array(UInt32), Array(UInt64)),
    time_to_first_byte_ms Tuple(Array(UInt32), Array(UInt64)),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, region, store_id, target, vantage_region);

-- Per day, region, store, target and minute (Unix seconds of its start), the probes taken
-- inside the store's region only: uptime as time and the minutes incidents are found in.
CREATE TABLE IF NOT EXISTS probe_minutes
(
    day              Date,
    region           Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id         String,
    target           String,
    minute           UInt32,
    probes           UInt64,
    up               UInt64,
    response_time_ms Tuple(Array(UInt32), Array(UInt64)),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, region, store_id, target, minute);
