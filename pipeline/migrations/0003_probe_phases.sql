-- What the prober measures (issue #16): where a probe was taken from, and the phases of the
-- probe that `response_time_ms` and `network_latency_ms` (DNS + TCP connect) do not show.
--
-- Added columns, one ALTER per column: ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`,
-- so the runner counts an ADD COLUMN that finds its column already there as applied
-- (schema.rs, `already_applied`): a rerun after a partial run, or two consumers migrating
-- at once, converge. One column per statement, so that such a statement did nothing else.
-- Rows loaded before this migration read the defaults: vantage 'unspecified' (a store's
-- own probe, taken from no named vantage) and 0 ms for the phases nobody measured.

ALTER TABLE probe_results ADD COLUMN vantage_region Enum8('unspecified' = 0, 'europe' = 1, 'america' = 2, 'asia' = 3) DEFAULT 'unspecified';

ALTER TABLE probe_results ADD COLUMN tls_handshake_ms UInt32 DEFAULT 0;

ALTER TABLE probe_results ADD COLUMN time_to_first_byte_ms UInt32 DEFAULT 0;
