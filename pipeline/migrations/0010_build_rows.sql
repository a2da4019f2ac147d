-- The rows each build of a day wrote into the day's rollups (commerce_daily, audience_daily,
-- probe_daily and probe_minutes), recorded with the build in rollup_builds.
--
-- The record is written after the rollups' rows, but with replicated tables (issue #18) each
-- table replicates on its own: a replica can fetch a build's record before its rows, and a
-- report read there then found the day current and read rollups that lacked groups, a report
-- that nothing would ever rewrite (its watermark is the data's, which had not changed). The
-- reporter now trusts a build only when the server it reads holds as many rows of the build's
-- version as the build wrote, and rebuilds the day otherwise (reporter/src/rollup.rs,
-- `ensure`; ARCHITECTURE.md, "Rollups").
--
-- The builds recorded before this migration read 0 here: their days are rebuilt once, at the
-- next check. (18.16 has no ADD COLUMN IF NOT EXISTS; the runner counts an ADD COLUMN that
-- finds its column as applied.)

ALTER TABLE rollup_builds ADD COLUMN built_rows UInt64 DEFAULT 0;
