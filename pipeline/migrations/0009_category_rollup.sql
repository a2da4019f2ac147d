-- Purchases per hour and category (issue #19): what "Top categories: revenue over time" reads
-- for the hours the reporter built when its buckets are whole hours, instead of a month of
-- purchases with FINAL (1.77 s at 30M events a day, docs/BENCHMARKS.md). Categories are not
-- in migration 7's commerce_hourly: with the seller as well they are nearly as many groups as
-- the purchases. Per hour, region, store and category code they are few (195,093 groups for
-- 1,891,325 purchases at 30M a day); the panel reads this table only with every seller
-- selected, as it reads commerce_daily (no store) only with every store selected.
--
-- Built with the hourly rollups of migration 7, the same way and with the same records
-- (reporter/src/rollup.rs): an hour's build reads the hour's purchases once with FINAL, every
-- event once, and writes each group's purchases and exact revenue (Decimal(38, 9)) with a new
-- version. An event never changes its hour, region, store, category or type, so every group of
-- an earlier build is a group of the later one, and ReplacingMergeTree(version) read with
-- FINAL holds exactly the latest build of each hour (ARCHITECTURE.md, "Rollups").
--
-- The hours built before this migration have no rows here, yet they are recorded in
-- rollup_hour_builds. So the record of an hour gains its build's revision: 0 for the builds
-- before this migration (the column's default), 1 for a build that also wrote this table. The
-- panel reads this table only for hours recorded with revision 1 (and so do the panels over
-- migration 8's arrivals_minutes, which hours built before migration 8 lack), and the reporter
-- rebuilds a recorded hour of an older revision as it rebuilds an hour whose rows changed. (A column
-- per ALTER, as in migration 3: 18.16 has no ADD COLUMN IF NOT EXISTS, and the runner counts
-- an ADD COLUMN that finds its column as applied.)
--
-- In a cluster the table is sharded by its hour (schema::SHARDING_KEYS), like migration 7's.

CREATE TABLE IF NOT EXISTS category_hourly
(
    hour          DateTime('UTC'),
    region        Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id      String,
    category_code String,
    purchases     UInt64,
    revenue       Decimal(38, 9),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, region, store_id, category_code);

ALTER TABLE rollup_hour_builds ADD COLUMN revision UInt8 DEFAULT 0;
