//! The archiver's settings and subcommands, parsed once from flags with environment fallbacks.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipeline::config::{
    ClickHouseArgs, RedisArgs, TelemetryArgs, parse_date, parse_duration, parse_positive_duration,
};
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
    /// Check the day's refused events (archive/rejected/) again under today's rules and
    /// append those now valid to the stream, each once: an event replayed before is skipped
    ReplayRejected {
        /// The day (UTC) the events were received, YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
        /// Count what would be replayed, and append nothing
        #[arg(long)]
        dry_run: bool,
        /// How far in the future occurred_at may be, from the time the gateway received
        /// the event (the gateway's GATEWAY_MAX_FUTURE_SKEW)
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        max_future_skew: Duration,
        /// How old occurred_at may be when the gateway received the event (the gateway's
        /// GATEWAY_MAX_EVENT_AGE)
        #[arg(long, default_value = "7d", value_parser = parse_positive_duration)]
        max_event_age: Duration,
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
        default_value = "archiver",
        value_parser = pipeline::config::parse_name
    )]
    pub archiver_group: String,
    /// Consumer name, unique within the group and stable across restarts: a restarted
    /// archiver rewrites the segment it was writing from its own pending entries (defaults
    /// to the host name)
    #[arg(long, global = true, env = "ARCHIVER_NAME", default_value_t = pipeline::config::host_name("archiver"), value_parser = pipeline::config::parse_name)]
    pub archiver_name: String,
}

/// When a segment is sealed and written: whichever comes first.
#[derive(Args, Clone, Debug)]
pub struct SegmentArgs {
    /// Largest Parquet object, in bytes: a segment is sealed before an entry could take
    /// one of its files past it (at least 128 KiB; 64-256 MiB suits analysts' engines)
    #[arg(long, global = true, env = "ARCHIVER_OBJECT_BYTES", default_value_t = 128 * 1024 * 1024, value_parser = parse_object_bytes)]
    pub object_bytes: usize,
    /// Entry bytes of the stream the archiver's open segments may hold in all (as the
    /// consumer counts an entry: its batch and id), each of its STREAM_SHARDS shards an equal
    /// share, at least one entry each: a segment's entries stay in Redis, unacknowledged,
    /// until it is written, so this bounds the archiver's share of Redis's memory whatever
    /// the rate and the shards (what arrives while a segment is written comes on top). The
    /// default is a quarter of compose's maxmemory (1gb); raise both for larger objects at
    /// high rates
    #[arg(long, global = true, env = "ARCHIVER_SEGMENT_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = parse_segment_bytes)]
    pub segment_bytes: usize,
    /// Segments end when this period of the wall clock ends (aligned to the epoch: `1h`
    /// ends them on the hour)
    #[arg(long, global = true, env = "ARCHIVER_ROLL_EVERY", default_value = "1h", value_parser = parse_positive_duration)]
    pub roll_every: Duration,
    /// Stream entries per XREADGROUP, at most: a read also asks for no more than
    /// ARCHIVER_READ_BYTES' worth of entries
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_READ_COUNT",
        default_value_t = 100
    )]
    pub read_count: u64,
    /// About the most entry bytes one XREADGROUP asks for: as many entries of the largest
    /// size read so far (at least half the largest entry the gateway writes) as fit, at least
    /// one, so that a reply stays under about twice this. Redis holds a reply
    /// whole in its memory, which counts against its maxmemory, and the archiver reads it
    /// whole
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_READ_BYTES",
        default_value_t = consumer::batch::MIN_READ_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub read_bytes: u64,
}

impl SegmentArgs {
    /// The stream bytes one shard's segment may hold: an equal share of
    /// `ARCHIVER_SEGMENT_BYTES` among the archiver's `shards` workers. All of them may sit on
    /// one Redis (a single server holds every shard key), so the bound is the archiver's,
    /// not each worker's. At least one byte: a segment always takes its first entry.
    pub fn segment_bytes_per_shard(&self, shards: usize) -> usize {
        (self.segment_bytes / shards.max(1)).max(1)
    }
}

/// The smallest object bound: room for the footer and a few pages.
pub const MIN_OBJECT_BYTES: usize = 128 * 1024;

fn parse_segment_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a segment holds at least one entry: 0 bytes would hold none".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a number of bytes: {e}")),
    }
}

fn parse_object_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of bytes: {e}"))?;
    if n < MIN_OBJECT_BYTES {
        return Err(format!(
            "{n} is below the smallest bound, {MIN_OBJECT_BYTES} bytes"
        ));
    }
    Ok(n)
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
        assert_eq!(s.segment.segment_bytes, 256 * 1024 * 1024);
        let Err(e) = Settings::try_parse_from(["archiver", "--segment-bytes", "0"]) else {
            panic!("a segment bound of 0 bytes was taken");
        };
        assert!(e.to_string().contains("at least one entry"), "{e}");
        assert_eq!(s.segment.segment_bytes_per_shard(1), 256 * 1024 * 1024);
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

    /// The bound is the archiver's: its shard workers share it equally, so a process that
    /// runs every shard on one Redis holds no more than `--segment-bytes` in all; each still
    /// takes at least one entry.
    #[test]
    fn shard_workers_share_the_segment_bound() {
        let s = Settings::try_parse_from(["archiver", "--segment-bytes", "1000"]).unwrap();
        assert_eq!(s.segment.segment_bytes_per_shard(1), 1000);
        assert_eq!(s.segment.segment_bytes_per_shard(4), 250);
        assert_eq!(s.segment.segment_bytes_per_shard(3), 333);
        assert!(3 * s.segment.segment_bytes_per_shard(3) <= 1000);
        assert_eq!(s.segment.segment_bytes_per_shard(1024), 1);
        assert_eq!(s.segment.segment_bytes_per_shard(0), 1000);
    }

    /// An env file's `ARCHIVER_GROUP=` must stop the archiver at startup: a group named ""
    /// is not the one the consumer retains entries for, and the lake would miss what was
    /// trimmed before it read.
    #[test]
    fn empty_or_padded_group_and_archiver_names_are_refused_at_startup() {
        for (flag, value, says) in [
            ("--archiver-group", "", "empty"),
            ("--archiver-group", " archiver", "spaces"),
            ("--archiver-name", "", "empty"),
            ("--stream-key", "", "empty"),
        ] {
            let Err(e) = Settings::try_parse_from(["archiver", flag, value]) else {
                panic!("{flag} {value:?} was accepted");
            };
            let e = e.to_string();
            assert!(
                e.contains(flag) && e.contains(says),
                "{flag} {value:?}: {e}"
            );
        }
    }

    /// A zero roll interval would seal a segment at every entry: refused, with the reason.
    #[test]
    fn a_zero_roll_interval_is_refused() {
        let Err(e) = Settings::try_parse_from(["archiver", "--roll-every", "0s"]) else {
            panic!("a zero roll interval was taken");
        };
        assert!(e.to_string().contains("is zero"), "{e}");
    }

    #[test]
    fn objects_are_bounded_at_128_mib_unless_set_and_never_below_128_kib() {
        let s = Settings::try_parse_from(["archiver"]).unwrap();
        assert_eq!(s.segment.object_bytes, 128 * 1024 * 1024);
        let s = Settings::try_parse_from(["archiver", "--object-bytes", "131072"]).unwrap();
        assert_eq!(s.segment.object_bytes, MIN_OBJECT_BYTES);
        for bad in ["131071", "0", "-1", "64MiB", ""] {
            assert!(
                Settings::try_parse_from(["archiver", "--object-bytes", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reads_are_bounded_at_8_mib_unless_set_and_never_at_zero_bytes() {
        let s = Settings::try_parse_from(["archiver"]).unwrap();
        assert_eq!(s.segment.read_bytes, 8 * 1024 * 1024);
        assert_eq!(s.segment.read_count, 100);
        let s = Settings::try_parse_from(["archiver", "--read-bytes", "1"]).unwrap();
        assert_eq!(s.segment.read_bytes, 1);
        for bad in ["0", "-1", "8MiB", ""] {
            assert!(
                Settings::try_parse_from(["archiver", "--read-bytes", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn replay_rejected_takes_a_date_a_dry_run_and_the_gateway_s_window() {
        let s = Settings::try_parse_from(["archiver", "replay-rejected", "--date", "2026-12-02"])
            .unwrap();
        assert_eq!(
            s.command,
            Some(Command::ReplayRejected {
                date: time::macros::date!(2026 - 12 - 02),
                dry_run: false,
                max_future_skew: Duration::from_secs(300),
                max_event_age: Duration::from_secs(7 * 86_400),
            })
        );
        let s = Settings::try_parse_from([
            "archiver",
            "replay-rejected",
            "--date",
            "2026-12-02",
            "--dry-run",
            "--max-event-age",
            "30d",
        ])
        .unwrap();
        assert!(matches!(
            s.command,
            Some(Command::ReplayRejected { dry_run: true, max_event_age, .. })
                if max_event_age == Duration::from_secs(30 * 86_400)
        ));
        assert!(Settings::try_parse_from(["archiver", "replay-rejected"]).is_err());
    }
}
