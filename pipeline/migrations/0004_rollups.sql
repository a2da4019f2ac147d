-- Per-day rollups of the commerce events (issue #19): what the reporter's commerce figures
-- are summed from, so that a report reads a few hundred thousand rows instead of a day of
-- events with FINAL. The reporter builds them (reporter/src/rollup.rs): one FINAL read of a
-- day, grouped by every dimension the report needs, written with a new version; it rebuilds a
-- day whenever the day's rows changed (count() and max(received_at), recorded in
-- rollup_builds). A rebuild rewrites every group of the day with a higher version, and a
-- group never vanishes (events only arrive, each with fixed dimensions), so
-- ReplacingMergeTree(version) read with FINAL holds exactly the latest build of each day.
-- ARCHITECTURE.md, "Rollups", gives the argument in full.
--
-- In a cluster each table is sharded by its day (schema::SHARDING_KEYS): every version of a
-- group is on one shard, where FINAL replaces it.

CREATE TABLE IF NOT EXISTS commerce_daily
(
    day           Date,
    type          Enum8('view' = 1, 'cart' = 2, 'remove_from_cart' = 3, 'purchase' = 4),
    seller_id     UInt64,
    product_id    UInt64,
    category_id   UInt64,
    category_code String,
    brand         String,
    currency      String,
    region        Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    events        UInt64,
    units         UInt64,
    revenue       Decimal(38, 9),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, type, seller_id, product_id, category_id, category_code, brand, currency, region);

-- Distinct users and sessions per day: of the whole marketplace (scope 'marketplace',
-- seller_id 0) and of each seller. Exact figures of the day; they do not add up over days.
CREATE TABLE IF NOT EXISTS audience_daily
(
    day       Date,
    scope     Enum8('marketplace' = 1, 'seller' = 2),
    seller_id UInt64,
    users     UInt64,
    sessions  UInt64,
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, scope, seller_id);

-- One row per build of a day: the state of the base table the build read, and its version.
CREATE TABLE IF NOT EXISTS rollup_builds
(
    day           Date,
    base_rows     UInt64,
    base_received DateTime('UTC'),
    version       UInt64,
    built_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY day;
