//! The archiver's settings and subcommands, parsed once from flags with environment fallbacks.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipeline::config::{ClickHouseArgs, RedisArgs, TelemetryArgs, parse_duration};
use time::Date;

// Defined beside the client it configures; named here with the other settings.
pub use crate::store::ArchiveS3Args;

/// Archives every stream entry's events to Parquet in S3; verifies and restores ClickHouse
/// from the archive
#[derive(Parser, Clone)]
#[command(name = "archiver", version)]
pub struct Settings {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub s3: ArchiveS3Args,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub group: ArchiverGroupArgs,
    #[command(flatten)]
    pub segment: SegmentArgs,
    /// What to do; without a subcommand the archiver archives the stream until stopped
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The archiver's subcommands besides archiving, for an operator.
#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Compare a day's archive with ClickHouse: event ids in one and not the other, counts
    /// per table, type and region; exits non-zero on any difference
    Verify {
        /// The day (UTC), YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
    },
    /// Load a day's archived events that ClickHouse lacks back into it (events already
    /// there are skipped, so a restore can be repeated)
    Restore {
        /// The day (UTC), YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
    },
    /// Rewrite a day's manifest from the objects in the bucket
    Manifest {
        /// The day (UTC), YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
    },
}

/// Which consumer group and consumer this archiver is.
#[derive(Args, Clone, Debug)]
pub struct ArchiverGroupArgs {
    /// The archiver's consumer group: its own, so it never delays loading (name it in the
    /// consumer's CONSUMER_RETAIN_GROUPS so trimming waits for it from the start)
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_GROUP",
        default_value = "archiver"
    )]
    pub archiver_group: String,
    /// Consumer name, unique within the group and stable across restarts: a restarted
    /// archiver rewrites the segment it was writing from its own pending entries (defaults
    /// to the host name)
    #[arg(long, global = true, env = "ARCHIVER_NAME", default_value_t = default_name())]
    pub archiver_name: String,
}

/// When a segment is sealed and written: whichever comes first.
#[derive(Args, Clone, Debug)]
pub struct SegmentArgs {
    /// Stream bytes (encoded batches) per segment, per shard; its Parquet files are smaller
    #[arg(long, global = true, env = "ARCHIVER_SEGMENT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub segment_bytes: usize,
    /// Segments end when this period of the wall clock ends (aligned to the epoch: `1h`
    /// ends them on the hour)
    #[arg(long, global = true, env = "ARCHIVER_ROLL_EVERY", default_value = "1h", value_parser = parse_duration)]
    pub roll_every: Duration,
    /// Stream entries per XREADGROUP
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_READ_COUNT",
        default_value_t = 100
    )]
    pub read_count: u64,
}

fn parse_date(s: &str) -> Result<Date, String> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "archiver".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_subcommands_parse() {
        let s = Settings::try_parse_from(["archiver"]).unwrap();
        assert_eq!(s.command, None);
        assert_eq!(s.group.archiver_group, "archiver");
        assert_eq!(s.segment.roll_every, Duration::from_secs(3600));
        assert_eq!(s.s3.archive_bucket, "lake");
        let s = Settings::try_parse_from(["archiver", "verify", "--date", "2026-01-31"]).unwrap();
        assert_eq!(
            s.command,
            Some(Command::Verify {
                date: time::macros::date!(2026 - 01 - 31)
            })
        );
        assert!(Settings::try_parse_from(["archiver", "restore", "--date", "31.1.2026"]).is_err());
    }
}
