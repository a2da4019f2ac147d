-- Arrivals per hour (issue #19): what the pipeline-health panels over received_at ("Delivery
-- delay by region", "Rows loaded per minute by table") read for the hours the reporter built,
-- instead of every row of their range with FINAL. An hour here is the hour the events
-- occurred in, as in migration 7, so the same builds and records serve: an hour's build
-- (reporter/src/rollup.rs) reads the hour once with FINAL, every event once as the copy
-- received last, and groups it by the minute that copy was received in, region and store,
-- for each event table: rows, and the delay from occurred to received (seconds) as a sum and
-- as a value histogram (sumMap), from which the panel takes the exact p95.
--
-- Unlike migration 7's groups, a group here can vanish: a copy received later moves its
-- event to a later minute. So a build also writes every group an earlier build of the hour
-- wrote, with zero rows when nothing is left in it, and ReplacingMergeTree(version) read
-- with FINAL still holds exactly the latest build of each hour (ARCHITECTURE.md, "Rollups").
--
-- In a cluster the table is sharded by its hour (schema::SHARDING_KEYS), like migration 7's.

CREATE TABLE IF NOT EXISTS arrivals_minutes
(
    hour        DateTime('UTC'),
    received    DateTime('UTC'),
    event_table Enum8('commerce_events' = 1, 'probe_results' = 2),
    region      Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id    String,
    rows        UInt64,
    delay_sum   Int64,
    delay_s     Tuple(Array(Int64), Array(UInt64)),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, received, event_table, region, store_id);
