-- Identities seen on two days, per day (issue #19): what the data-quality panel sums, so that
-- it reads one row a day instead of grouping a month of event ids. The reporter builds it
-- (reporter/src/rollup.rs, `ensure_conflicts`): for each day, the identities
-- (store_id, event_id) of the day's commerce events and probes that also have a row on one
-- of the 7 days before it (the gateway's acceptance window), and how many of those have it
-- in an earlier month. An identity on k days is counted on each day but its first: k - 1.
--
-- A day's figure changes when a row arrives on the day or on one of the 7 days before it, so
-- each build records that window's count() and max(received_at) of both event tables, and
-- the reporter rebuilds when they changed. ReplacingMergeTree(version) read with FINAL keeps
-- the latest build of each day (a build that starts later reads every row an earlier one
-- read). In a cluster it is sharded by its day (schema::SHARDING_KEYS).

CREATE TABLE IF NOT EXISTS conflicts_daily
(
    day             Date,
    conflicts       UInt64,
    across_months   UInt64,
    window_rows     UInt64,
    window_received DateTime('UTC'),
    version         UInt64,
    built_at        DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY day;
