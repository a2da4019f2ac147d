//! Argument groups shared by the binaries, each flag with an environment fallback.
//!
//! Every service flattens the groups it needs into its own `Settings`; nothing below a
//! service's `config.rs` reads the environment.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, ValueEnum};

/// Where the Redis stream lives, and how to log in to it.
#[derive(Args, Clone)]
pub struct RedisArgs {
    // `redis://user:password@host:port` logs in as the service's ACL user
    // (deploy/redis/users.acl); `rediss-cluster://` is a cluster over TLS. With Sentinel the
    // host and every `node` are sentinels; the client asks them for the primary of
    // `sentinelServiceName` and asks again after every disconnect, so a failover needs no
    // operator (docs/DEPLOY.md, "High availability").
    /// Redis URL (`redis://`, `rediss://` for TLS, `redis-cluster://host:port?node=host:port`
    /// for a Redis Cluster, `redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port`
    /// for a primary with replicas behind Redis Sentinel)
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Stream key the gateway writes and the consumer reads
    #[arg(long, global = true, env = "STREAM_KEY", default_value = "events", value_parser = parse_stream_key)]
    pub stream_key: String,
    /// Shards the stream is split into (keys `{STREAM_KEY:i}`), so a Redis Cluster spreads
    /// it over its masters; gateways and consumers must agree on it
    #[arg(long, global = true, env = "STREAM_SHARDS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub stream_shards: u16,
    /// PEM file of the CA certificates the Redis server's certificate must chain to, for
    /// `rediss://`; the system's trusted roots when unset
    #[arg(long, global = true, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<PathBuf>,
}

/// The URL's password is a secret: Debug (and so any settings dump) shows the rest only.
impl fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis_url", &redacted_url(&self.redis_url))
            .field("stream_key", &self.stream_key)
            .field("stream_shards", &self.stream_shards)
            .field("redis_tls_ca_file", &self.redis_tls_ca_file)
            .finish()
    }
}

/// `url` with the user info's password replaced by `<redacted>`, for logs.
fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:<redacted>@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl RedisArgs {
    /// The stream's shard keys.
    pub fn shards(&self) -> crate::shard::Shards {
        crate::shard::Shards::new(&self.stream_key, self.stream_shards)
    }

    /// The fred configuration for this URL: server, credentials, and TLS for `rediss://`.
    ///
    /// A `rediss://` URL always gets a TLS connector here, verified against
    /// `--redis-tls-ca-file` or the system's roots; a TLS setting on a plaintext URL is
    /// refused rather than ignored, so an operator never believes a connection is encrypted
    /// when it is not.
    pub fn config(&self) -> Result<fred::types::config::Config, fred::error::Error> {
        use fred::error::{Error, ErrorKind};
        let mut config = fred::types::config::Config::from_url(&self.redis_url)?;
        match (&config.tls, &self.redis_tls_ca_file) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss:// (or \
                     rediss-cluster://): the connection would not use TLS",
                ));
            }
            (Some(_), None) => {} // fred's default: the system's trusted roots
            (Some(_), Some(ca_file)) => {
                config.tls = Some(tls_trusting(ca_file)?.into());
            }
        }
        Ok(config)
    }

    /// A fred client for this URL, with timeouts that turn an outage into errors within
    /// seconds instead of requests queued forever. Not yet connected; its first connection
    /// fails at once if it cannot be made (fred's `fail_fast`), so that a worker started
    /// against a wrong or dead Redis says so and exits.
    pub fn client(&self) -> Result<fred::clients::Client, fred::error::Error> {
        self.build(true)
    }

    /// The same client, but its first connection retries as a lost one does (the reconnect
    /// policy, without end) instead of failing once: for the gateway, which starts and answers
    /// UNAVAILABLE while its Redis is down or refusing (`MISCONF` refuses the handshake's
    /// PING), and must serve once Redis is back without being restarted.
    pub fn client_retrying_first_connect(
        &self,
    ) -> Result<fred::clients::Client, fred::error::Error> {
        self.build(false)
    }

    fn build(&self, fail_fast: bool) -> Result<fred::clients::Client, fred::error::Error> {
        use fred::prelude::*;
        let mut config = self.config()?;
        config.fail_fast = fail_fast;
        Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(5);
                c.max_command_attempts = 1;
                // A primary that stopped answering without closing the connection (paused,
                // partitioned) is left after this long, so that behind Sentinel the client
                // reconnects to whichever primary the sentinels name. Blocking reads are
                // exempt. A primary demoted to replica answers READONLY, which reconnects
                // too (fred's `custom-reconnect-errors` default).
                c.unresponsive.max_timeout = Some(UNRESPONSIVE_AFTER);
                c.unresponsive.interval = Duration::from_millis(500);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(5);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
    }
}

/// How long a Redis connection may leave a command unanswered before the client drops it
/// and reconnects. Longer than any non-blocking command takes, including the gateway's
/// `WAIT` (`GATEWAY_ACK_TIMEOUT` must stay below it).
pub const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(3);

/// A rustls client configuration trusting exactly the CA certificates in `ca_file` (PEM).
fn tls_trusting(ca_file: &Path) -> Result<fred::rustls::ClientConfig, fred::error::Error> {
    use fred::{
        error::{Error, ErrorKind},
        rustls::{
            ClientConfig, RootCertStore,
            pki_types::{CertificateDer, pem::PemObject},
        },
    };
    let tls_error = |what: String| Error::new(ErrorKind::Tls, what);
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(format!(
                "reading REDIS_TLS_CA_FILE {}: {e}",
                ca_file.display()
            ))
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(tls_error(format!(
            "REDIS_TLS_CA_FILE {} holds no usable CA certificate",
            ca_file.display()
        )));
    }
    // The build has one rustls crypto provider (aws-lc-rs, see the workspace Cargo.toml),
    // so rustls picks it by itself.
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Where ClickHouse is.
#[derive(Args, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL; with replicas, the URL of every replica, comma-separated: the
    /// consumer loads (and the reporter reads) through the first that answers and moves on to
    /// the next when it fails
    ///
    /// Several URLs need `--clickhouse-replicated` (or a cluster): each must hold the same
    /// tables. Migrations are applied to each of them.
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// Whether every node holds replicas coordinated by ZooKeeper (or ClickHouse Keeper):
    /// migrations then create `Replicated…MergeTree` tables
    ///
    /// Each server's config must name the keeper (`<zookeeper>`) and its `<macros>` `shard`
    /// and `replica`; a table's path is `/clickhouse/tables/{shard}/<database>/<table>`.
    /// Migrations run on every node of `--clickhouse-url` (or `--clickhouse-shard-urls`),
    /// a node that is down is migrated at the next start.
    #[arg(long, global = true, env = "CLICKHOUSE_REPLICATED")]
    pub clickhouse_replicated: bool,
    /// Replicas that must have written an insert before ClickHouse confirms it (`insert_quorum`); 0 confirms once one has
    ///
    /// With 2 on two replicas an acknowledged event survives the loss of either machine's
    /// disk, but loading stops while one replica is down (entries wait in Redis); with 0 loading
    /// goes on through the survivor, and rows the dead replica confirmed in its last moment,
    /// before the other fetched them, are lost with its disk (docs/DEPLOY.md §10).
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_INSERT_QUORUM",
        default_value_t = 0
    )]
    pub clickhouse_insert_quorum: u8,
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
    /// ClickHouse cluster name (in `<remote_servers>`) when the tables are sharded; unset for one server
    ///
    /// With a cluster, each event table is a `Distributed(<cluster>, …)` table over
    /// `<table>_local` tables on every shard, and inserts wait for every shard
    /// (`insert_distributed_sync=1`). Requires `--clickhouse-shard-urls`.
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_CLUSTER",
        requires = "clickhouse_shard_urls"
    )]
    pub clickhouse_cluster: Option<String>,
    /// HTTP URLs of one node per shard of the cluster (with `--clickhouse-replicated`, of every replica of every shard), comma-separated; used only to apply migrations
    ///
    /// Distributed DDL (`ON CLUSTER`) needs ZooKeeper or ClickHouse Keeper, which a deployment
    /// may not have, so migrations are applied to each shard directly. Requires
    /// `--clickhouse-cluster`.
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_SHARD_URLS",
        value_delimiter = ',',
        requires = "clickhouse_cluster"
    )]
    pub clickhouse_shard_urls: Vec<String>,
    /// How requests to ClickHouse carry their data: `lz4` in ClickHouse's compressed blocks, or `none`
    ///
    /// `lz4`, the default, for a ClickHouse across a network: the consumer's inserts travel
    /// at about 0.4 of their size. `none` for one on the same host, as compose.yaml deploys
    /// it: the consumer's Native inserts go as stored blocks (`pipeline::native`, still
    /// checksummed, read by the server as LZ4 blocks are), which cost the consumer about a
    /// fifth less CPU per event and the server the same (docs/BENCHMARKS.md, "Stored
    /// frames"); other requests go uncompressed.
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value_t = Compression::Lz4
    )]
    pub clickhouse_compression: Compression,
}

/// The compression of requests to ClickHouse (`--clickhouse-compression`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// LZ4, in ClickHouse's compressed blocks
    Lz4,
    /// Uncompressed
    None,
}

impl Compression {
    /// As the clickhouse crate names it.
    pub fn client(self) -> clickhouse::Compression {
        match self {
            Compression::Lz4 => clickhouse::Compression::Lz4,
            Compression::None => clickhouse::Compression::None,
        }
    }
}

/// How long an insert waits for `--clickhouse-insert-quorum` replicas, in milliseconds.
const INSERT_QUORUM_TIMEOUT_MS: u32 = 10_000;

/// Why a [`ClickHouseArgs`] is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClickHouseArgsError {
    /// Shard URLs without a cluster name: there is no cluster to make the tables distributed over.
    #[error(
        "--clickhouse-shard-urls (CLICKHOUSE_SHARD_URLS) is set but --clickhouse-cluster \
         (CLICKHOUSE_CLUSTER) is not: set both for a sharded ClickHouse, neither for one server"
    )]
    ShardUrlsWithoutCluster,
    /// A cluster name without shard URLs: migrations could not reach the shards.
    #[error(
        "--clickhouse-cluster (CLICKHOUSE_CLUSTER) is set but --clickhouse-shard-urls \
         (CLICKHOUSE_SHARD_URLS) is not: migrations are applied to every shard directly, so \
         list one HTTP URL per shard"
    )]
    ClusterWithoutShardUrls,
    /// An empty cluster name or shard URL (e.g. `a,,b` or a trailing comma).
    #[error("--clickhouse-cluster and every URL of --clickhouse-shard-urls must be non-empty")]
    Empty,
    /// Several URLs for one server's tables: rows loaded through one would be missing on the
    /// others.
    #[error(
        "--clickhouse-url (CLICKHOUSE_URL) lists several URLs but the tables are neither \
         replicated (CLICKHOUSE_REPLICATED) nor distributed (CLICKHOUSE_CLUSTER): each URL \
         would hold different rows"
    )]
    SeveralUrlsWithoutReplicas,
}

impl fmt::Debug for ClickHouseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseArgs")
            .field("clickhouse_url", &self.clickhouse_url)
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clickhouse_user", &self.clickhouse_user)
            .field("clickhouse_password", &"<redacted>")
            .field("clickhouse_replicated", &self.clickhouse_replicated)
            .field("clickhouse_insert_quorum", &self.clickhouse_insert_quorum)
            .field("clickhouse_cluster", &self.clickhouse_cluster)
            .field("clickhouse_shard_urls", &self.clickhouse_shard_urls)
            .field("clickhouse_compression", &self.clickhouse_compression)
            .finish()
    }
}

impl ClickHouseArgs {
    /// Every URL of `--clickhouse-url`, in order: one server, or the replicas to fail over
    /// between.
    pub fn urls(&self) -> Vec<&str> {
        self.clickhouse_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// A client without a database, for creating it: the first URL's.
    pub fn server_client(&self) -> clickhouse::Client {
        self.client_for(self.urls().first().copied().unwrap_or_default())
    }

    /// One client without a database per URL of `--clickhouse-url`.
    pub fn server_clients(&self) -> Vec<clickhouse::Client> {
        self.urls()
            .into_iter()
            .map(|u| self.client_for(u))
            .collect()
    }

    fn client_for(&self, url: &str) -> clickhouse::Client {
        // Validation fetches the schema with RowBinaryWithNamesAndTypes, which 18.16 lacks.
        clickhouse::Client::default()
            .with_url(url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            .with_compression(self.clickhouse_compression.client())
            .with_validation(false)
    }

    /// A client bound to the pipeline's database, for inserts and queries.
    ///
    /// With a cluster it sets `insert_distributed_sync=1` (called
    /// `distributed_foreground_insert` since ClickHouse 23.x, which keeps the old name as an
    /// alias): an insert into a `Distributed` table then returns only after every shard has
    /// written its rows. Without it ClickHouse answers as soon as the rows are queued on the
    /// receiving node's disk and forwards them later; the consumer acknowledges stream entries
    /// after the insert returns, so a node lost before forwarding would lose acknowledged
    /// events. If one shard fails, the insert fails and the consumer retries the whole batch:
    /// the shards that did write get the rows again, on the same shard (the sharding key is
    /// the event id), where ReplacingMergeTree and `FINAL` collapse them.
    pub fn client(&self) -> clickhouse::Client {
        self.bound(self.server_client())
    }

    /// Like [`client`](Self::client), one per URL of `--clickhouse-url`: the replicas a
    /// loader fails over between.
    pub fn clients(&self) -> Vec<clickhouse::Client> {
        self.server_clients()
            .into_iter()
            .map(|c| self.bound(c))
            .collect()
    }

    fn bound(&self, client: clickhouse::Client) -> clickhouse::Client {
        let mut client = client.with_database(&self.clickhouse_database);
        if self.clickhouse_cluster.is_some() {
            client = client.with_setting("insert_distributed_sync", "1");
        }
        if self.clickhouse_insert_quorum > 0 {
            // A replica that died keeps its keeper session (and counts as live) for seconds:
            // an insert then waits for it, by default for 10 minutes; 10 s is plenty for a
            // live replica to fetch a batch, and fails the attempt soon enough to retry.
            client = client
                .with_setting("insert_quorum", self.clickhouse_insert_quorum.to_string())
                .with_setting(
                    "insert_quorum_timeout",
                    INSERT_QUORUM_TIMEOUT_MS.to_string(),
                );
        }
        client
    }

    /// Checks that the cluster name and the shard URLs are set together, and are not empty.
    ///
    /// clap already refuses one without the other on the command line and in the
    /// environment; this covers arguments built in code, and empty values.
    pub fn validate(&self) -> Result<(), ClickHouseArgsError> {
        if self.urls().len() > 1 && !self.clickhouse_replicated && self.clickhouse_cluster.is_none()
        {
            return Err(ClickHouseArgsError::SeveralUrlsWithoutReplicas);
        }
        match (
            &self.clickhouse_cluster,
            self.clickhouse_shard_urls.is_empty(),
        ) {
            (None, true) => Ok(()),
            (None, false) => Err(ClickHouseArgsError::ShardUrlsWithoutCluster),
            (Some(_), true) => Err(ClickHouseArgsError::ClusterWithoutShardUrls),
            (Some(cluster), false) => {
                if cluster.trim().is_empty()
                    || self
                        .clickhouse_shard_urls
                        .iter()
                        .any(|u| u.trim().is_empty())
                {
                    Err(ClickHouseArgsError::Empty)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The cluster name, if the tables are sharded (see [`validate`](Self::validate)).
    pub fn cluster(&self) -> Option<&str> {
        self.clickhouse_cluster.as_deref()
    }

    /// One client per shard, without a database, for applying migrations: like
    /// [`server_client`](Self::server_client) with each shard URL. Empty without a cluster.
    pub fn shard_clients(&self) -> Vec<clickhouse::Client> {
        self.clickhouse_shard_urls
            .iter()
            .map(|url| self.server_client().with_url(url.trim()))
            .collect()
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

impl TelemetryArgs {
    /// These settings for a one-shot command (a dead-letter listing, an archive check, …):
    /// the same logs, no metrics endpoint. Such a command usually runs beside the
    /// long-running process, in its container and with its environment, where
    /// `METRICS_LISTEN`'s port is already taken; and nothing scrapes a process that ends.
    pub fn one_shot(&self) -> TelemetryArgs {
        TelemetryArgs {
            metrics_listen: None,
            ..self.clone()
        }
    }
}

/// Parses a day as `YYYY-MM-DD` (for clap), as operators' `--date` flags take it.
pub fn parse_date(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("{s:?} is not a date as YYYY-MM-DD: {e}"))
}

/// Parses the name of a group, consumer or key (for clap): refuses an empty one, which an env
/// file's `CONSUMER_GROUP=` gives as readily as an unset variable, and one with spaces at its
/// ends, which a copied value brings along. Either would name a group or key of its own that
/// no other process uses: a group nobody acknowledges for keeps every entry from trimming, a
/// stream nobody reads loads nothing, and neither says so.
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("is empty; name it, or leave the variable unset for the default".into());
    }
    if s.trim() != s {
        return Err(format!("{s:?} has spaces at its ends"));
    }
    Ok(s.to_owned())
}

/// [`parse_name`] for `STREAM_KEY`, which also refuses `{` and `}`: the shards' keys are
/// `{STREAM_KEY:i}`, whose braces are a Redis Cluster hash tag, and a brace inside the name
/// would cut the tag short and put every shard on one slot, one master.
pub fn parse_stream_key(s: &str) -> Result<String, String> {
    let s = parse_name(s)?;
    if s.contains(['{', '}']) {
        return Err(format!(
            "{s:?} holds a brace; the shards' keys wrap it in braces as a Redis Cluster hash tag"
        ));
    }
    Ok(s)
}

/// The machine's host name (`HOSTNAME`, else `/etc/hostname`), else `fallback`: the default
/// of a consumer's name, which must be stable across restarts and unique in its group.
pub fn host_name(fallback: &str) -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Parses a duration such as `500ms`, `5s`, `2m`, `1h30m`, `1.5s` or `7d` (for clap), with
/// humantime: parts add up, and a value too large for a `Duration` is an error, not a
/// panic. Units stop at days: a week, month or year in a setting is more likely a typo
/// than a wish, and a month has no fixed length.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const TOO_LONG: &[&str] = &[
        "w", "wk", "wks", "week", "weeks", "M", "month", "months", "y", "yr", "yrs", "year",
        "years",
    ];
    const UNITS: &str = "use ms, s, m, h or d, e.g. 1h30m";
    let s = s.trim();
    let units = s
        .split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
        .filter(|unit| !unit.is_empty());
    if let Some(unit) = units.into_iter().find(|unit| TOO_LONG.contains(unit)) {
        return Err(format!(
            "unit {unit:?} in {s:?} is longer than a day: {UNITS}"
        ));
    }
    humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("{s:?} has no unit: {UNITS}")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit {unit:?} in {s:?}: {UNITS}")
        }
        humantime::DurationError::NumberOverflow => {
            format!("{s:?} is too long or too precise for a duration")
        }
        e => format!("{s:?} is not a duration: {e}; {UNITS}"),
    })
}

/// [`parse_duration`] for a setting that a zero would break rather than turn off (a timeout
/// every call would hit, a keepalive or roll every instant): refuses zero with the setting's
/// reason in plain words.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?} is zero; this setting needs a positive duration, e.g. 1s"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_empty_padded_and_braced_values() {
        assert_eq!(parse_name("loader").unwrap(), "loader");
        assert_eq!(parse_name("eu consumer").unwrap(), "eu consumer");
        for empty in ["", " ", "\t"] {
            assert!(
                parse_name(empty).unwrap_err().contains("empty"),
                "{empty:?}"
            );
        }
        for padded in ["loader ", " loader", "loader\n"] {
            assert!(
                parse_name(padded)
                    .unwrap_err()
                    .contains("spaces at its ends"),
                "{padded:?}"
            );
        }
        assert_eq!(parse_stream_key("events").unwrap(), "events");
        assert!(parse_stream_key("").unwrap_err().contains("empty"));
        for braced in ["ev}ents", "{events}", "events{"] {
            assert!(
                parse_stream_key(braced).unwrap_err().contains("brace"),
                "{braced:?}"
            );
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn positive_durations_refuse_zero_in_every_spelling() {
        for zero in ["0s", "0ms", "0d", "0h 0m"] {
            let e = parse_positive_duration(zero).unwrap_err();
            assert!(e.contains("is zero") && e.contains("positive"), "{e}");
            assert_eq!(parse_duration(zero).unwrap(), Duration::ZERO);
        }
        assert_eq!(
            parse_positive_duration("1ms").unwrap(),
            Duration::from_millis(1)
        );
        assert!(
            parse_positive_duration("5")
                .unwrap_err()
                .contains("no unit")
        );
    }

    #[test]
    fn durations_add_up_and_huge_ones_are_errors() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1.5s").unwrap(),
            Duration::from_millis(1_500)
        );
        // past u64 seconds: the old parser panicked in Duration::from_secs_f64
        let huge = parse_duration("99999999999999999999d").unwrap_err();
        assert!(huge.contains("too long"), "{huge}");
        let huge = parse_duration("300000000000000000d").unwrap_err();
        assert!(huge.contains("too long"), "{huge}");
        for longer_than_a_day in ["2w", "1M", "3 years"] {
            let e = parse_duration(longer_than_a_day).unwrap_err();
            assert!(e.contains("longer than a day"), "{e}");
        }
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
    }

    #[derive(clap::Parser)]
    struct RedisOnly {
        #[command(flatten)]
        redis: RedisArgs,
    }

    #[test]
    fn debug_output_hides_the_redis_password() {
        use clap::Parser;
        let url = "redis://gateway:s3cret-pw@10.0.1.10:6379/0";
        let args = RedisOnly::try_parse_from(["t", "--redis-url", url])
            .unwrap()
            .redis;
        let shown = format!("{args:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(
            shown.contains("redis://gateway:<redacted>@10.0.1.10:6379/0"),
            "{shown}"
        );
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redacted_url("rediss://:pw@h:1?node=h:2"),
            "rediss://:<redacted>@h:1?node=h:2"
        );
    }

    #[test]
    fn credentials_in_the_url_become_the_acl_login() {
        use clap::Parser;
        let parse = |url: &str| RedisOnly::try_parse_from(["t", "--redis-url", url]).unwrap();
        let config = parse("redis://gateway:pw-1@127.0.0.1:6379")
            .redis
            .config()
            .unwrap();
        assert_eq!(config.username.as_deref(), Some("gateway"));
        assert_eq!(config.password.as_deref(), Some("pw-1"));
        let legacy = parse("redis://:pw-2@127.0.0.1:6379")
            .redis
            .config()
            .unwrap();
        assert_eq!(
            legacy.username, None,
            "a password alone logs in as `default`"
        );
        assert_eq!(legacy.password.as_deref(), Some("pw-2"));
    }

    /// `rediss://` used to connect in plaintext when fred was built without a TLS feature;
    /// now every TLS scheme gets a connector, and a CA file on a plaintext URL is refused.
    #[test]
    fn rediss_urls_always_get_tls_and_plain_urls_never_do() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            RedisOnly::try_parse_from([&["t"][..], args].concat())
                .unwrap()
                .redis
        };
        let ca = std::env::temp_dir().join(format!("pipeline-no-ca-{}.pem", std::process::id()));
        let plain = parse(&["--redis-url", "redis://127.0.0.1:6379"]);
        assert!(plain.config().unwrap().tls.is_none());
        for url in [
            "rediss://127.0.0.1:6380",
            "rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
        ] {
            // the system's roots: Debian's ca-certificates, or an empty store
            if let Ok(config) = parse(&["--redis-url", url]).config() {
                assert!(config.tls.is_some(), "{url} without tls");
            }
            // a CA file that does not exist is an error naming it, never plaintext
            let err = parse(&[
                "--redis-url",
                url,
                "--redis-tls-ca-file",
                &ca.display().to_string(),
            ])
            .config()
            .unwrap_err();
            assert!(err.to_string().contains("REDIS_TLS_CA_FILE"), "{err}");
        }
        let err = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-tls-ca-file",
            &ca.display().to_string(),
        ])
        .config()
        .unwrap_err();
        assert!(err.to_string().contains("is not rediss://"), "{err}");
    }

    #[derive(clap::Parser)]
    struct ClickHouseOnly {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    }

    #[test]
    fn several_clickhouse_urls_are_replicas_and_need_replication() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            ClickHouseOnly::try_parse_from([&["t"][..], args].concat())
                .unwrap()
                .clickhouse
        };
        let one = parse(&[]);
        assert_eq!(one.urls(), ["http://127.0.0.1:8123"]);
        assert!(!one.clickhouse_replicated && one.validate().is_ok());
        let two = parse(&["--clickhouse-url", "http://a:8123, http://b:8123"]);
        assert_eq!(two.urls(), ["http://a:8123", "http://b:8123"]);
        assert_eq!(
            two.validate(),
            Err(ClickHouseArgsError::SeveralUrlsWithoutReplicas)
        );
        assert_eq!(two.clients().len(), 2);
        let replicated = parse(&[
            "--clickhouse-url",
            "http://a:8123,http://b:8123",
            "--clickhouse-replicated",
        ]);
        assert!(replicated.clickhouse_replicated && replicated.validate().is_ok());
    }

    #[test]
    fn stream_shards_are_checked_and_name_their_keys() {
        use clap::Parser;
        let parse = |n: &str| RedisOnly::try_parse_from(["t", "--stream-shards", n]);
        for bad in ["0", "1025", "two"] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.to_string().contains("--stream-shards"), "{err}");
        }
        let args = parse("3").unwrap().redis;
        assert_eq!(
            args.shards().keys(),
            ["{events:0}", "{events:1}", "{events:2}"]
        );
        let default = RedisOnly::try_parse_from(["t"]).unwrap().redis;
        assert_eq!(default.shards().keys(), ["events"]);
    }
}
