//! The simulator's settings and subcommands, from flags with environment fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Simulates store fleets in Europe, America and Asia sending events to the gateway
#[derive(Parser, Clone, Debug)]
#[command(name = "simulator", version)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Command,
    /// `LOG_FORMAT` and `METRICS_LISTEN`, as every service has them
    #[command(flatten)]
    pub telemetry: pipeline::config::TelemetryArgs,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Streams events to a gateway
    Run(RunArgs),
    /// Prints the gateway stores file (TOML) for the simulated fleet
    StoresFile(FleetArgs),
    /// Replays a CSV of the public "eCommerce behavior data from multi category store" dataset
    Replay(ReplayArgs),
    /// Writes a CSV in the replay format from the scenario's sessions (simulator/data/sample.csv)
    SampleCsv(SampleArgs),
    /// Benchmark reference: pipelined XADDs of batch-sized entries straight into Redis
    BenchRedis(BenchRedisArgs),
    /// Benchmark reference: RowBinary or Native bulk insert, and single-row INSERTs, into ClickHouse
    BenchClickhouse(BenchClickhouseArgs),
    /// Benchmark probe: publishes marker events and times until ClickHouse can query them
    BenchLatency(BenchLatencyArgs),
}

/// The simulated fleet.
#[derive(Args, Clone, Debug)]
pub struct FleetArgs {
    /// Stores per region
    #[arg(long, env = "SIMULATOR_STORES_PER_REGION", default_value_t = 2)]
    pub stores_per_region: usize,
    /// Secret the store tokens are derived from; the gateway only sees their hashes
    #[arg(
        long,
        env = "SIMULATOR_TOKEN_SECRET",
        default_value = "demo",
        hide_env_values = true
    )]
    pub token_secret: String,
    /// Scenario TOML (default: the embedded simulator/scenarios/default.toml); its
    /// per-region store counts win over --stores-per-region
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

/// How events travel to the gateway.
#[derive(Args, Clone, Debug)]
pub struct SendArgs {
    /// Gateway URL; several, comma-separated, spread the connections over them (as a load
    /// balancer in front of several gateways would)
    #[arg(
        long,
        env = "SIMULATOR_GATEWAY",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub gateway: Vec<String>,
    /// Events per second over the whole fleet; 0 for as fast as possible
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Events per request
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Send over PublishStream (falls back to Publish if the gateway lacks it)
    #[arg(long)]
    pub streaming: bool,
    /// Write the ground truth JSON here
    #[arg(long)]
    pub truth_out: Option<PathBuf>,
    /// Hide the progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Do not keep the acknowledged event ids in memory (long benchmark runs)
    #[arg(long)]
    pub forget_ids: bool,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub send: SendArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// How long to send, in seconds (ignored when --total is set)
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Send exactly this many events, then stop
    #[arg(long)]
    pub total: Option<u64>,
    /// Seed of the generator; the same seed gives the same events
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Unix second the events' occurred_at starts from (default: now)
    #[arg(long)]
    pub time_base: Option<i64>,
    /// Simulated events per second of event time (default: --rate, or the scenario's
    /// clock.events_per_second when --rate is 0)
    #[arg(long)]
    pub clock_rate: Option<f64>,
    /// Draw and encode this many requests (--batch-size events each, the fleet's stores in
    /// turn) once, then send them in turn again and again, each time with fresh event ids:
    /// a load generator that costs a benchmark's two cores less than the gateway it drives.
    /// The events repeat but for their ids; the ground truth counts every send. 0 draws
    /// every request anew. The requests are held in memory: with --batch-size, at most
    /// 1,000,000 events (about 600 bytes each), refused at start otherwise
    #[arg(long, default_value_t = 0)]
    pub reuse_requests: usize,
}

#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub send: SendArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// The CSV file (header event_time,event_type,product_id,category_id,...)
    #[arg(long)]
    pub file: PathBuf,
    /// Compress the file's timeline by this factor (2 = gaps half as long)
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Unix second the file's last event is moved to (default: now)
    #[arg(long)]
    pub now: Option<i64>,
}

#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// Rows to write
    #[arg(long, default_value_t = 2_000)]
    pub rows: usize,
    /// Seed of the generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file (default: stdout)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct BenchRedisArgs {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Stream to write (deleted before unless `--append`, and after unless `--keep`)
    #[arg(long, default_value = "bench-raw")]
    pub stream_key: String,
    /// Events per entry, as the gateway batches them
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Events in all
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// XADDs in flight at once
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Leave the entries in the stream afterwards, for a consumer to drain
    /// (`scripts/bench-drain`)
    #[arg(long)]
    pub keep: bool,
    /// Add the entries after those the stream holds instead of replacing them: for a stream
    /// of small entries followed by large ones (`scripts/bench-drain`, DRAIN_SMALL_FIRST)
    #[arg(long)]
    pub append: bool,
    /// Every entry its own events, of the fleet's stores in turn, generated before the clock
    /// starts; without it one entry is written again and again. A consumer that drains them
    /// then loads distinct rows, which compress as the pipeline's do
    /// (`scripts/bench-consumer-callgrind`); memory holds every entry
    #[arg(long)]
    pub distinct: bool,
}

#[derive(Args, Clone, Debug)]
pub struct BenchClickhouseArgs {
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Scratch database, dropped and recreated
    #[arg(long, default_value = "bench_raw")]
    pub database: String,
    /// Rows of the bulk insert
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Single-row INSERTs of the per-event baseline
    #[arg(long, default_value_t = 2_000)]
    pub single_inserts: usize,
    /// How the rows' event ids run: `sequential` ids arrive sorted by the tables' key (the
    /// best case, ClickHouse skips the sort), `random` ids are version-4 UUIDs as stores send
    /// them, sent as they come for the server to sort (with `--format native` too, where the
    /// consumer sorts each insert: the reference of an unsorted insert); `random-sorted` the
    /// same ids in ClickHouse's order of a UUID, across all the rows (one insert: what a loader
    /// that sorted its insert sends; with `--insert-rows`, inserts whose ids do not overlap, a
    /// bound)
    #[arg(long, value_enum, default_value_t = BenchIds::Sequential)]
    pub ids: BenchIds,
    /// How the rows travel: `rowbinary` row by row (the serde rows of `clickhouse::Insert`),
    /// `native` as Native columns in blocks of `--block-rows`
    #[arg(long, value_enum, default_value_t = BenchFormat::Rowbinary)]
    pub format: BenchFormat,
    /// Compression of the request body, as the consumer's `CLICKHOUSE_COMPRESSION`: `lz4` in
    /// ClickHouse's compressed blocks (`decompress=1`), or `none`; with `--format native` the
    /// frames are the consumer's own (`NativeInsert::with_compression`), LZ4 or stored
    #[arg(long, value_enum, default_value_t = pipeline::config::Compression::Lz4)]
    pub compression: pipeline::config::Compression,
    /// Rows per Native block (`--format native`), `pipeline::native::BLOCK_ROWS` as the
    /// consumer sends them
    #[arg(long, default_value_t = pipeline::native::BLOCK_ROWS)]
    pub block_rows: usize,
    /// Rows per insert, the bulk split into inserts as the consumer flushes (default: one
    /// insert of all `--rows`)
    #[arg(long)]
    pub insert_rows: Option<usize>,
    /// What the rows are: `fleet`, the load's (the commerce events `simulator run` generates
    /// for `--stores-per-region` stores in turn, `--batch` events each), or `one-store`,
    /// 10,000 events of one store (the reference of the rows in docs/BENCHMARKS.md up to
    /// 2026-12-06). Either way the pool of distinct rows (`--pool-rows` of the fleet's, the
    /// one store's 10,000) is reused with fresh ids, so memory stays small
    #[arg(long, value_enum, default_value_t = BenchRows::Fleet)]
    pub rows_from: BenchRows,
    /// Stores per region of `--rows-from fleet`, as `scripts/bench`'s load (BENCH_STORES)
    #[arg(long, default_value_t = 10)]
    pub stores_per_region: usize,
    /// Events per store in turn of `--rows-from fleet`, as `scripts/bench`'s requests
    /// (BENCH_BATCH)
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Distinct rows of `--rows-from fleet` (`one-store` has 10,000), held in memory: from
    /// 1 to 1,000,000
    #[arg(long, default_value_t = 100_000, value_parser = parse_pool_rows)]
    pub pool_rows: usize,
}

/// The most events `simulator run --reuse-requests` may hold (its requests times their
/// `--batch-size`), and the most rows of `bench-clickhouse --pool-rows`: each is generated
/// once and kept for the whole run, a few hundred bytes apiece, so a mistyped count would
/// otherwise end in the machine running out of memory rather than in an error.
pub const MAX_HELD_EVENTS: usize = 1_000_000;

fn parse_pool_rows(s: &str) -> Result<usize, String> {
    let rows: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of rows: {e}"))?;
    if rows == 0 || rows > MAX_HELD_EVENTS {
        return Err(format!(
            "{rows} rows is not between 1 and {MAX_HELD_EVENTS}: the pool is held in memory"
        ));
    }
    Ok(rows)
}

/// The rows of `simulator bench-clickhouse`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchRows {
    /// The load's: the fleet's stores in turn, as `simulator run` generates them
    Fleet,
    /// 10,000 events of one store
    OneStore,
}

/// The insert format of `simulator bench-clickhouse`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchFormat {
    Rowbinary,
    Native,
}

/// The event ids of `simulator bench-clickhouse`'s rows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchIds {
    /// Ascending with the row: every insert in the key's order, and no two overlap
    Sequential,
    /// Random version-4 ids, sent as they come, for the server to sort
    Random,
    /// Random ids, all rows in the key's order: inserts that do not overlap
    RandomSorted,
    /// Random ids, each insert in the key's order, as the consumer sends them: inserts
    /// that overlap, so that merges interleave them
    RandomEachSorted,
}

#[derive(Args, Clone, Debug)]
pub struct BenchLatencyArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub gateway: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    #[arg(long, default_value = "marketplace")]
    pub database: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Seconds to publish markers for
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Milliseconds between markers
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn pool_rows(value: &str) -> Result<usize, String> {
        let parsed =
            Settings::try_parse_from(["simulator", "bench-clickhouse", "--pool-rows", value])
                .map_err(|e| e.to_string())?;
        match parsed.command {
            Command::BenchClickhouse(args) => Ok(args.pool_rows),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn pool_rows_are_refused_outside_what_memory_can_hold() {
        assert_eq!(pool_rows("100000"), Ok(100_000));
        assert_eq!(pool_rows("1000000"), Ok(MAX_HELD_EVENTS));
        for (value, says) in [
            ("0", "0 rows is not between 1 and 1000000"),
            ("1000001", "1000001 rows is not between 1 and 1000000"),
            ("many", "\"many\" is not a number of rows"),
        ] {
            let err = pool_rows(value).unwrap_err();
            assert!(err.contains(says), "{value}: {err}");
        }
    }
}
