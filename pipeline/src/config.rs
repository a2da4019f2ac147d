//! Argument groups shared by the binaries, each flag with an environment fallback.
//!
//! Every service flattens the groups it needs into its own `Settings`; nothing below a
//! service's `config.rs` reads the environment.

use std::{fmt, net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// Where the Redis stream lives.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// Redis URL (`redis://`, `rediss://` for TLS)
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Stream key the gateway writes and the consumer reads
    #[arg(long, global = true, env = "STREAM_KEY", default_value = "events")]
    pub stream_key: String,
}

impl RedisArgs {
    /// A fred client for this URL, with timeouts that turn an outage into errors within
    /// seconds instead of requests queued forever. Not yet connected.
    pub fn client(&self) -> Result<fred::clients::Client, fred::error::Error> {
        use fred::prelude::*;
        let config = Config::from_url(&self.redis_url)?;
        Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(5);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(5);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
    }
}

/// Where ClickHouse is.
#[derive(Args, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// Database holding the pipeline's tables
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_DATABASE",
        default_value = "marketplace"
    )]
    pub clickhouse_database: String,
    /// ClickHouse user
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub clickhouse_user: String,
    /// ClickHouse password
    #[arg(
        long,
        env = "CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: String,
}

impl fmt::Debug for ClickHouseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseArgs")
            .field("clickhouse_url", &self.clickhouse_url)
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clickhouse_user", &self.clickhouse_user)
            .field("clickhouse_password", &"<redacted>")
            .finish()
    }
}

impl ClickHouseArgs {
    /// A client without a database, for creating it.
    pub fn server_client(&self) -> clickhouse::Client {
        // Validation fetches the schema with RowBinaryWithNamesAndTypes, which 18.16 lacks.
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            .with_compression(clickhouse::Compression::Lz4)
            .with_validation(false)
    }

    /// A client bound to the pipeline's database.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client()
            .with_database(&self.clickhouse_database)
    }
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

/// Logging and metrics.
#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// Log format
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the Prometheus `/metrics` endpoint; none if unset
    #[arg(long, global = true, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Parses a duration such as `500ms`, `5s`, `2m`, `7d` (for clap).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("{s:?} has no unit: use ms, s, m, h or d"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}: use ms, s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
