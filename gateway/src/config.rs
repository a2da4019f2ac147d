//! The gateway's settings, parsed once from flags with environment fallbacks.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use pipeline::config::{RedisArgs, TelemetryArgs, parse_duration};

/// gRPC ingest gateway: authenticates stores, validates events, queues them in Redis
#[derive(Parser, Clone, Debug)]
#[command(name = "gateway", version)]
pub struct Settings {
    /// Address to listen on for gRPC
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// TOML file of stores allowed to publish: id, region, token_sha256
    #[arg(long, env = "GATEWAY_STORES_FILE")]
    pub stores_file: PathBuf,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Largest number of events in one request
    #[arg(long, env = "GATEWAY_MAX_EVENTS", default_value_t = 10_000)]
    pub max_events_per_request: usize,
    /// Largest decoded (and decompressed) request message, in bytes
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How far in the future occurred_at may be (clock skew)
    #[arg(long, env = "GATEWAY_MAX_FUTURE_SKEW", default_value = "5m", value_parser = parse_duration)]
    pub max_future_skew: Duration,
    /// How old occurred_at may be
    #[arg(long, env = "GATEWAY_MAX_EVENT_AGE", default_value = "7d", value_parser = parse_duration)]
    pub max_event_age: Duration,
    /// How long in-flight requests may take to finish after SIGTERM
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Settings {
    /// The validation limits these settings configure.
    pub fn limits(&self) -> pipeline::validate::Limits {
        pipeline::validate::Limits {
            max_future_skew: self.max_future_skew,
            max_age: self.max_event_age,
        }
    }
}
