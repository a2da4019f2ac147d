//! The consumer's settings, parsed once from flags with environment fallbacks.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipeline::config::{
    ClickHouseArgs, RedisArgs, TelemetryArgs, parse_duration, parse_positive_duration,
};

/// Loads queued events from Redis streams into ClickHouse
#[derive(Parser, Clone, Debug)]
#[command(name = "consumer", version)]
pub struct Settings {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub recovery: RecoveryArgs,
    /// After SIGTERM, how long the last batch may take to flush; what is not flushed by then
    /// stays pending and is loaded again by the next consumer
    #[arg(long, env = "CONSUMER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// What to do; without a subcommand the consumer loads the stream until stopped
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The consumer's subcommands besides loading, for an operator.
#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// List dead-lettered entries, one per line: id, original id, delivery count, reason
    DeadLetters,
    /// Put dead-lettered entries back onto the main stream and remove them from the
    /// dead-letter stream
    Replay {
        /// Ids in the dead-letter stream, as listed by `dead-letters`
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Replay every dead-lettered entry
        #[arg(long)]
        all: bool,
    },
}

/// Which consumer group and consumer this process is.
#[derive(Args, Clone, Debug)]
pub struct GroupArgs {
    /// Consumer group; every group sees every entry once
    #[arg(long, global = true, env = "CONSUMER_GROUP", default_value = "loader", value_parser = pipeline::config::parse_name)]
    pub consumer_group: String,
    /// Consumer name, unique within the group and stable across restarts, so a restarted
    /// consumer finds its own pending entries (defaults to the host name)
    #[arg(long, global = true, env = "CONSUMER_NAME", default_value_t = pipeline::config::host_name("consumer"), value_parser = pipeline::config::parse_name)]
    pub consumer_name: String,
    /// Other groups created at the start of the stream if missing (comma-separated, e.g. the
    /// archiver's), so trimming keeps every entry for them even before their first reader
    /// starts; empty names are ignored, so an empty variable names none
    #[arg(
        long,
        global = true,
        env = "CONSUMER_RETAIN_GROUPS",
        value_delimiter = ','
    )]
    pub retain_groups: Vec<String>,
}

impl GroupArgs {
    /// The groups of `CONSUMER_RETAIN_GROUPS`, trimmed, without empty names: an empty
    /// variable (`CONSUMER_RETAIN_GROUPS=`, as an env file leaves one) parses as one empty
    /// name, and a group of that name, which no reader would ever acknowledge for, would keep
    /// every entry from trimming until Redis filled and the gateway refused every write.
    pub fn retained_groups(&self) -> impl Iterator<Item = &str> {
        self.retain_groups
            .iter()
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
    }
}

/// When a batch is flushed to ClickHouse: whichever limit is reached first.
#[derive(Args, Clone, Debug)]
pub struct BatchArgs {
    /// Rows per flush, estimated from entry sizes, once the consumer has caught up: a read
    /// asks for this many rows' worth of entries (at least 8 MiB), and while reads come back
    /// full, a backlog, batches grow to CONSUMER_BATCH_BYTES instead
    #[arg(
        long,
        global = true,
        env = "CONSUMER_BATCH_ROWS",
        default_value_t = 100_000
    )]
    pub batch_rows: usize,
    /// Encoded entry bytes per flush, at most 2 GiB: reads ask for no more than what is left
    /// of it, so it sets the insert size at a backlog (about 970k events of 137 bytes) and
    /// bounds the consumer's memory. With sorted inserts a batch holds its rows, prepared as
    /// its entries are read, as records of about its size, and lets the entries' bytes go
    /// (peak RSS 226-231 MiB in scripts/bench; ClickHouse 1.10-1.21 µs of CPU per event
    /// against 1.31-1.37 at 64 MiB; docs/BENCHMARKS.md, "A batch's rows prepared as its
    /// entries are read"); a batch whose prepared rows do not load is read again and then
    /// holds both for its retries. Without sorted inserts it holds the entries, copied into
    /// one allocation of this size that the next batch reuses
    #[arg(long, global = true, env = "CONSUMER_BATCH_BYTES", default_value_t = 128 * 1024 * 1024, value_parser = parse_batch_bytes)]
    pub batch_bytes: usize,
    /// Send the event tables' rows in the tables' key order, so that ClickHouse writes them
    /// without sorting them: measured in scripts/bench, ClickHouse 1.31 µs of CPU per event
    /// against 1.73 and the pipeline 2.66 against 3.08, for 0.44 µs of the consumer's against
    /// 0.31 and a peak RSS of 208 MiB against 142 (docs/BENCHMARKS.md, "sorted inserts on by
    /// default"). false for a consumer short of CPU or memory beside a ClickHouse with
    /// CPU to spare
    #[arg(long, global = true, env = "CONSUMER_SORTED_INSERTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub sorted_inserts: bool,
    /// Age of the oldest entry of a batch before it is flushed
    #[arg(long, global = true, env = "CONSUMER_BATCH_AGE", default_value = "1s", value_parser = parse_duration)]
    pub batch_age: Duration,
    /// Stream entries per XREADGROUP or XAUTOCLAIM, at most: a read also asks for no more
    /// than what is left of CONSUMER_BATCH_BYTES and CONSUMER_BATCH_ROWS' worth of bytes
    #[arg(
        long,
        global = true,
        env = "CONSUMER_READ_COUNT",
        default_value_t = 1_000
    )]
    pub read_count: u64,
}

/// How entries that do not load, or whose consumer died, are dealt with.
#[derive(Args, Clone, Debug)]
pub struct RecoveryArgs {
    /// Loads of an entry interrupted by the consumer dying, after which the entry is
    /// dead-lettered instead of loaded again
    #[arg(
        long,
        global = true,
        env = "CONSUMER_MAX_DELIVERIES",
        default_value_t = 5
    )]
    pub max_deliveries: u64,
    /// Idle time after which another consumer's pending entries are taken over, since
    /// their consumer is presumed dead
    #[arg(long, global = true, env = "CONSUMER_CLAIM_IDLE", default_value = "30s", value_parser = parse_positive_duration)]
    pub claim_idle: Duration,
    /// How long ClickHouse may take to confirm an insert before the attempt counts as failed
    /// and the next goes to the next replica of CLICKHOUSE_URL: the longest a frozen or
    /// partitioned server holds loading; far above what a batch takes
    #[arg(long, global = true, env = "CONSUMER_INSERT_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub insert_timeout: Duration,
}

/// The most `CONSUMER_BATCH_BYTES` may be: a flush's rows, held as records when sorted, are
/// addressed by 32-bit offsets (`pipeline::native`), and records take about the entries'
/// bytes (67 MB for a 64 MiB batch, docs/BENCHMARKS.md), so 2 GiB leaves them twice the room.
const MAX_BATCH_BYTES: usize = 2 << 30;

fn parse_batch_bytes(s: &str) -> Result<usize, String> {
    let bytes: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of bytes: {e}"))?;
    if bytes == 0 || bytes > MAX_BATCH_BYTES {
        return Err(format!(
            "{bytes} bytes is not between 1 and {MAX_BATCH_BYTES} (2 GiB): a batch is held in \
             memory, and a sorted flush's rows are addressed by 32-bit offsets"
        ));
    }
    Ok(bytes)
}

impl RecoveryArgs {
    /// How often to look for idle entries of dead consumers: often enough that an entry
    /// waits little longer than `claim_idle`, rarely enough to cost nothing.
    pub fn claim_every(&self) -> Duration {
        self.claim_idle.min(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_consumer_loads_and_subcommands_parse() {
        let s = Settings::try_parse_from(["consumer"]).unwrap();
        assert_eq!(s.command, None);
        assert_eq!(s.recovery.max_deliveries, 5);
        assert_eq!(s.recovery.claim_idle, Duration::from_secs(30));
        assert_eq!(s.recovery.claim_every(), Duration::from_secs(5));
        assert_eq!(
            s.recovery.insert_timeout,
            crate::sink::DEFAULT_INSERT_TIMEOUT
        );
        let s = Settings::try_parse_from(["consumer", "dead-letters"]).unwrap();
        assert_eq!(s.command, Some(Command::DeadLetters));
        let s = Settings::try_parse_from(["consumer", "replay", "1-0", "2-0"]).unwrap();
        assert_eq!(
            s.command,
            Some(Command::Replay {
                ids: vec!["1-0".into(), "2-0".into()],
                all: false
            })
        );
        let s = Settings::try_parse_from(["consumer", "replay", "--all"]).unwrap();
        assert!(matches!(s.command, Some(Command::Replay { all: true, .. })));
        assert!(Settings::try_parse_from(["consumer", "replay"]).is_err());
        assert!(Settings::try_parse_from(["consumer", "replay", "1-0", "--all"]).is_err());
    }

    #[test]
    fn empty_retained_group_names_are_ignored() {
        let groups = |args: &[&str]| {
            let s = Settings::try_parse_from(args).unwrap();
            s.group
                .retained_groups()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(groups(&["consumer"]).is_empty());
        // what an empty CONSUMER_RETAIN_GROUPS gives clap
        assert!(groups(&["consumer", "--retain-groups", ""]).is_empty());
        assert_eq!(
            groups(&["consumer", "--retain-groups", " archiver, ,audit,"]),
            ["archiver", "audit"]
        );
    }

    /// An env file's `CONSUMER_GROUP=` must stop the consumer at startup: a group named ""
    /// would be a group of its own, and the real one's entries would wait unread.
    #[test]
    fn empty_or_padded_group_and_consumer_names_are_refused_at_startup() {
        let s = Settings::try_parse_from(["consumer"]).unwrap();
        assert_eq!(s.group.consumer_group, "loader");
        assert!(!s.group.consumer_name.is_empty());
        for (flag, value, says) in [
            ("--consumer-group", "", "empty"),
            ("--consumer-group", "loader ", "spaces"),
            ("--consumer-name", "", "empty"),
            ("--stream-key", "", "empty"),
            ("--stream-key", "a}b", "brace"),
        ] {
            let e = Settings::try_parse_from(["consumer", flag, value])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(flag) && e.contains(says),
                "{flag} {value:?}: {e}"
            );
        }
    }

    #[test]
    fn inserts_are_sorted_unless_turned_off() {
        let s = Settings::try_parse_from(["consumer"]).unwrap();
        assert!(s.batch.sorted_inserts);
        let s = Settings::try_parse_from(["consumer", "--sorted-inserts", "false"]).unwrap();
        assert!(!s.batch.sorted_inserts);
    }

    #[test]
    fn batch_bytes_past_2_gib_or_zero_are_refused_at_startup() {
        let s = Settings::try_parse_from(["consumer"]).unwrap();
        assert_eq!(s.batch.batch_bytes, 128 << 20);
        let s = Settings::try_parse_from(["consumer", "--batch-bytes", "2147483648"]).unwrap();
        assert_eq!(s.batch.batch_bytes, 2 << 30);
        for bad in ["2147483649", "0", "64MiB"] {
            let e = Settings::try_parse_from(["consumer", "--batch-bytes", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("bytes"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_shutdown_grace_is_ten_seconds_unless_set() {
        let s = Settings::try_parse_from(["consumer"]).unwrap();
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        let s = Settings::try_parse_from(["consumer", "--shutdown-grace", "2m"]).unwrap();
        assert_eq!(s.shutdown_grace, Duration::from_secs(120));
        assert!(Settings::try_parse_from(["consumer", "--shutdown-grace", "soon"]).is_err());
    }

    /// A zero insert timeout would fail every insert, and a zero claim idle would take over
    /// entries other consumers are still loading: both refused at startup, with the reason.
    #[test]
    fn timeouts_that_zero_would_break_are_refused() {
        for flag in ["--insert-timeout", "--claim-idle"] {
            let e = Settings::try_parse_from(["consumer", flag, "0s"])
                .unwrap_err()
                .to_string();
            assert!(e.contains("is zero"), "{flag}: {e}");
        }
    }
}
