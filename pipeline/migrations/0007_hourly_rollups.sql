-- Per-hour rollups for the dashboards (issue #19): what the Grafana panels read for the
-- closed hours the reporter has built, so that a 30-day panel reads tens of thousands of rows
-- instead of a month of events with FINAL. They keep what the panels filter by (region,
-- store) and group by, and nothing finer: a table per panel family, each small enough to read
-- in well under a second (docs/BENCHMARKS.md, "Hourly rollups"). Products and sessions are
-- left out: per store and hour they are nearly as many rows as the events.
--
-- Built like the daily rollups (reporter/src/rollup.rs): one FINAL read of an hour, every
-- event once, grouped and written with a new version; rebuilt whenever the hour's rows changed
-- (count() and max(received_at), recorded in rollup_hour_builds). ReplacingMergeTree(version)
-- read with FINAL holds exactly the latest build of each hour (ARCHITECTURE.md, "Rollups").
-- A panel reads these for the hours recorded in rollup_hour_builds and the event tables for
-- the rest of its range (the open hour, partial hours at its edges).
--
-- In a cluster each table is sharded by its hour's day (schema::SHARDING_KEYS): every version
-- of a group is on one shard, where FINAL replaces it.

-- Commerce events per hour, region, store, seller and currency, the event types as columns:
-- events of each type and the revenue of the purchases, exact (Decimal(38, 9)).
CREATE TABLE IF NOT EXISTS commerce_hourly
(
    hour      DateTime('UTC'),
    region    Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id  String,
    seller_id UInt64,
    currency  String,
    views     UInt64,
    carts     UInt64,
    removals  UInt64,
    purchases UInt64,
    revenue   Decimal(38, 9),
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, region, store_id, seller_id, currency);

-- Probes per hour, region, store, target and vantage: counts, bandwidth and load sums and
-- extremes, and value histograms of the timings the panels show (the values sorted, their
-- counts; sumMap), from which exact quantiles are read as from probe_daily.
CREATE TABLE IF NOT EXISTS probe_hourly
(
    hour                  DateTime('UTC'),
    region                Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id              String,
    target                String,
    vantage_region        Enum8('unspecified' = 0, 'europe' = 1, 'america' = 2, 'asia' = 3),
    probes                UInt64,
    up                    UInt64,
    bandwidth_sum         UInt64,
    bandwidth_samples     UInt64,
    cpu_load_sum          Float64,
    cpu_load_max          Float64,
    response_time_ms      Tuple(Array(UInt32), Array(UInt64)),
    network_latency_ms    Tuple(Array(UInt32), Array(UInt64)),
    time_to_first_byte_ms Tuple(Array(UInt32), Array(UInt64)),
    bandwidth_min         UInt64,
    version               UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, region, store_id, target, vantage_region);

-- One row per build of an hour: the state of the event tables the build read, and its
-- version. The panels read the hourly rollups only for the hours recorded here.
CREATE TABLE IF NOT EXISTS rollup_hour_builds
(
    hour          DateTime('UTC'),
    base_rows     UInt64,
    base_received DateTime('UTC'),
    version       UInt64,
    built_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY hour;
