//! The consumer's settings, parsed once from flags with environment fallbacks.

use std::time::Duration;

use clap::{Args, Parser};
use pipeline::config::{ClickHouseArgs, RedisArgs, TelemetryArgs, parse_duration};

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
}

/// Which consumer group and consumer this process is.
#[derive(Args, Clone, Debug)]
pub struct GroupArgs {
    /// Consumer group; every group sees every entry once
    #[arg(long, env = "CONSUMER_GROUP", default_value = "loader")]
    pub consumer_group: String,
    /// Consumer name, unique within the group and stable across restarts, so a restarted
    /// consumer finds its own pending entries (defaults to the host name)
    #[arg(long, env = "CONSUMER_NAME", default_value_t = default_consumer_name())]
    pub consumer_name: String,
}

/// When a batch is flushed to ClickHouse: whichever limit is reached first.
#[derive(Args, Clone, Debug)]
pub struct BatchArgs {
    /// Rows per flush
    #[arg(long, env = "CONSUMER_BATCH_ROWS", default_value_t = 100_000)]
    pub batch_rows: usize,
    /// Encoded entry bytes per flush
    #[arg(long, env = "CONSUMER_BATCH_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub batch_bytes: usize,
    /// Age of the oldest entry of a batch before it is flushed
    #[arg(long, env = "CONSUMER_BATCH_AGE", default_value = "1s", value_parser = parse_duration)]
    pub batch_age: Duration,
    /// Stream entries per XREADGROUP
    #[arg(long, env = "CONSUMER_READ_COUNT", default_value_t = 1_000)]
    pub read_count: u64,
}

fn default_consumer_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "consumer".to_owned())
}
