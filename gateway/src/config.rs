//! The gateway's settings, parsed once from flags with environment fallbacks.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use pipeline::config::{RedisArgs, TelemetryArgs, parse_duration, parse_positive_duration};

/// gRPC ingest gateway: authenticates stores, validates events, queues them in Redis
#[derive(Parser, Clone, Debug)]
#[command(
    name = "gateway",
    version,
    after_help = "Edit the stores file (add, rotate, revoke, list): gateway stores --help"
)]
pub struct Settings {
    /// Address to listen on for gRPC
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// TOML file of stores allowed to publish: id, region, token_sha256
    #[arg(long, env = "GATEWAY_STORES_FILE")]
    pub stores_file: PathBuf,
    /// How often to check the stores file for changes (it is also reloaded on SIGHUP);
    /// `0s` to reload on SIGHUP only
    #[arg(long, env = "GATEWAY_STORES_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub stores_reload_interval: Duration,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Largest number of events in one request
    #[arg(long, env = "GATEWAY_MAX_EVENTS", default_value_t = 10_000)]
    pub max_events_per_request: usize,
    /// Rejected events of one request whose raw bytes are queued for `rejected_events`;
    /// further ones are counted only (every one is still listed in the response)
    #[arg(long, env = "GATEWAY_MAX_REJECTED_KEPT", default_value_t = crate::ingest::DEFAULT_MAX_REJECTED_KEPT)]
    pub max_rejected_kept: usize,
    /// Largest decoded (and decompressed) request message, in bytes
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How far in the future occurred_at may be (clock skew)
    #[arg(long, env = "GATEWAY_MAX_FUTURE_SKEW", default_value = "5m", value_parser = parse_duration)]
    pub max_future_skew: Duration,
    /// How old occurred_at may be
    #[arg(long, env = "GATEWAY_MAX_EVENT_AGE", default_value = "7d", value_parser = parse_positive_duration)]
    pub max_event_age: Duration,
    /// How long in-flight requests may take to finish after SIGTERM
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Refuse writes while the consumer group's backlog (or the stream length, when no group
    /// exists) exceeds this many entries
    #[arg(long, env = "GATEWAY_MAX_BACKLOG", default_value_t = 100_000)]
    pub max_backlog: u64,
    /// Refuse writes while Redis uses more than this share of its maxmemory (ignored when
    /// maxmemory is 0)
    #[arg(long, env = "GATEWAY_MAX_REDIS_MEMORY_RATIO", default_value_t = 0.9, value_parser = parse_ratio)]
    pub max_redis_memory_ratio: f64,
    /// Replicas that must confirm an entry (`WAIT` after `XADD`) before the store is told
    /// OK; if fewer confirm within GATEWAY_ACK_TIMEOUT the store gets UNAVAILABLE
    /// (`REDIS_NOT_REPLICATED`). 0 answers once the primary has the entry
    #[arg(long, env = "GATEWAY_ACK_REPLICAS", default_value_t = 0)]
    pub ack_replicas: u32,
    /// How long the replicas of GATEWAY_ACK_REPLICAS may take to confirm an entry; below
    /// the Redis client's 3 s unresponsive limit
    #[arg(long, env = "GATEWAY_ACK_TIMEOUT", default_value = "1s", value_parser = parse_ack_timeout)]
    pub ack_timeout: Duration,
    /// Requests of one PublishStream call being validated and queued at the same time
    #[arg(long, env = "GATEWAY_STREAM_MAX_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub stream_max_in_flight: u16,
    /// Bytes that requests in flight may hold together, across all connections (received
    /// bytes, then each message's decoded cost); past it new requests are refused with
    /// RESOURCE_EXHAUSTED and RetryInfo. At least the cost of one largest message
    #[arg(long, env = "GATEWAY_MAX_IN_FLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,
    /// Requests one connection may have in progress at once; more wait for a free slot
    #[arg(long, env = "GATEWAY_MAX_REQUESTS_PER_CONNECTION", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_per_connection: u32,
    /// HTTP/2 streams a client may open at once on one connection
    #[arg(long, env = "GATEWAY_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Longest a Publish call may take in all, and a PublishStream message once its first
    /// byte has arrived (slow senders are cut off)
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Largest HTTP/2 header list a client may send, in bytes (HPACK-decoded)
    #[arg(long, env = "GATEWAY_MAX_HEADER_LIST_BYTES", default_value_t = 16 * 1024)]
    pub max_header_list_bytes: u32,
    /// Interval of HTTP/2 keepalive pings to each client
    #[arg(long, env = "GATEWAY_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_positive_duration)]
    pub http2_keepalive_interval: Duration,
    /// How long a keepalive ping may wait for its answer before the connection is closed
    #[arg(long, env = "GATEWAY_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http2_keepalive_timeout: Duration,
    /// Connections are closed (GOAWAY, then `GATEWAY_REQUEST_TIMEOUT` to finish their calls)
    /// after this long, so that idle and long-lived connections cannot pile up forever and
    /// clients rebalance across gateways
    #[arg(long, env = "GATEWAY_MAX_CONNECTION_AGE", default_value = "10m", value_parser = parse_positive_duration)]
    pub max_connection_age: Duration,
    /// A connection with no call in progress and none started for this long is closed
    /// (keepalive pings do not count as use)
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Who may use server reflection: anyone (public), callers with a store token
    /// (authenticated) or nobody (off)
    #[arg(long, env = "GATEWAY_REFLECTION", value_enum, default_value_t = crate::edge::Reflection::Authenticated)]
    pub reflection: crate::edge::Reflection,
    /// PEM certificate chain to serve TLS with; requires GATEWAY_TLS_KEY
    #[arg(long, env = "GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of GATEWAY_TLS_CERT; requires GATEWAY_TLS_CERT
    #[arg(long, env = "GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve on a non-loopback address even without TLS or with the published demo stores
    /// (a demo only); the one accepted value is `i-understand-this-gateway-is-unsafe`
    #[arg(long, env = "GATEWAY_INSECURE_DEMO", default_value = "",
          value_parser = crate::preflight::parse_insecure_demo)]
    pub insecure_demo: crate::preflight::InsecureDemo,
    /// Check the settings (exposure, stores file, TLS files, Redis URL), print the outcome
    /// and exit without serving
    #[arg(long)]
    pub preflight: bool,
}

/// A share such as `0.9`: positive; above 1 only makes sense to disable the check in tests.
fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number such as 0.9")),
    }
}

/// A `WAIT` timeout: at least a millisecond (`WAIT n 0` would block for ever), and below
/// [`pipeline::config::UNRESPONSIVE_AFTER`], past which the client drops the connection.
fn parse_ack_timeout(s: &str) -> Result<Duration, String> {
    let timeout = parse_duration(s)?;
    if timeout < Duration::from_millis(1) || timeout >= pipeline::config::UNRESPONSIVE_AFTER {
        return Err(format!(
            "{s:?} must be at least 1ms and below {:?}",
            pipeline::config::UNRESPONSIVE_AFTER
        ));
    }
    Ok(timeout)
}

impl Settings {
    /// How many replicas must confirm each entry, if any.
    pub fn replication(&self) -> Option<crate::queue::Replication> {
        (self.ack_replicas > 0).then_some(crate::queue::Replication {
            replicas: self.ack_replicas,
            timeout: self.ack_timeout,
        })
    }

    /// The validation limits these settings configure.
    pub fn limits(&self) -> pipeline::validate::Limits {
        pipeline::validate::Limits {
            max_future_skew: self.max_future_skew,
            max_age: self.max_event_age,
        }
    }

    /// The bounds of one request these settings configure.
    pub fn bounds(&self) -> crate::ingest::Bounds {
        crate::ingest::Bounds {
            max_events: self.max_events_per_request,
            max_rejected_kept: self.max_rejected_kept,
        }
    }

    /// The backpressure thresholds these settings configure.
    pub fn backpressure(&self) -> crate::backpressure::Limits {
        crate::backpressure::Limits {
            max_backlog: self.max_backlog,
            max_memory_ratio: self.max_redis_memory_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Settings, clap::Error> {
        let mut args = vec!["gateway", "--stores-file", "stores.toml"];
        args.extend_from_slice(extra);
        Settings::try_parse_from(args)
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        let only_cert = parse(&["--tls-cert", "c.pem"]).unwrap_err().to_string();
        assert!(only_cert.contains("--tls-key"), "{only_cert}");
        let only_key = parse(&["--tls-key", "k.pem"]).unwrap_err().to_string();
        assert!(only_key.contains("--tls-cert"), "{only_key}");
        let both = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert!(both.tls_cert.is_some() && both.tls_key.is_some());
        assert!(parse(&[]).unwrap().tls_cert.is_none());
    }

    #[test]
    fn limits_are_checked_at_startup() {
        assert!(parse(&["--max-redis-memory-ratio", "0"]).is_err());
        assert!(parse(&["--max-redis-memory-ratio", "nan"]).is_err());
        assert!(parse(&["--stream-max-in-flight", "0"]).is_err());
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults.max_backlog, 100_000);
        assert_eq!(defaults.max_redis_memory_ratio, 0.9);
        assert_eq!(defaults.stream_max_in_flight, 32);
        assert_eq!(defaults.idle_timeout, Duration::from_secs(300));
        assert_eq!(defaults.max_rejected_kept, 100);
        assert_eq!(defaults.reflection, crate::edge::Reflection::Authenticated);
        assert!(parse(&["--reflection", "sometimes"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        // a zero would cut every call or connection at once: refused, with the reason
        for flag in [
            "--request-timeout",
            "--http2-keepalive-interval",
            "--http2-keepalive-timeout",
            "--max-connection-age",
            "--idle-timeout",
            "--max-event-age",
        ] {
            let e = parse(&[flag, "0s"]).unwrap_err().to_string();
            assert!(e.contains("is zero"), "{flag}: {e}");
        }
        // where zero means something (no clock skew allowed, no reload poll), it is taken
        assert!(parse(&["--max-future-skew", "0s"]).is_ok());
        assert!(parse(&["--stores-reload-interval", "0s"]).is_ok());
        assert!(
            defaults.replication().is_none(),
            "no replica waited for by default"
        );
        assert!(parse(&["--ack-timeout", "0s"]).is_err());
        assert!(parse(&["--ack-timeout", "3s"]).is_err());
        let acked = parse(&["--ack-replicas", "1", "--ack-timeout", "500ms"]).unwrap();
        assert_eq!(
            acked.replication(),
            Some(crate::queue::Replication {
                replicas: 1,
                timeout: Duration::from_millis(500)
            })
        );
    }
}
