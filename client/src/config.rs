//! Everything a publisher can be told: where the gateway is, the store's token, and the
//! batching, buffering, retry and spool limits. Plain values with sensible defaults; the
//! library reads no environment variables.

use std::{path::PathBuf, time::Duration};

use tonic::{
    codec::CompressionEncoding,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::{error::ConfigError, retry::RetryPolicy};

/// How requests are compressed on the wire. The gateway accepts both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Widest support; what the Python and Node examples use.
    Gzip,
    /// Cheaper per byte than gzip at a similar ratio; the default.
    #[default]
    Zstd,
}

impl Compression {
    pub(crate) fn encoding(self) -> Option<CompressionEncoding> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Zstd => Some(CompressionEncoding::Zstd),
        }
    }
}

/// What `publish` does when the buffer already holds `max_buffered_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait until the gateway acknowledges enough to make room (backpressure).
    #[default]
    Wait,
    /// Return [`crate::PublishError::BufferFull`] at once.
    Error,
}

/// TLS towards the gateway.
#[derive(Clone, Debug)]
pub struct Tls {
    /// PEM of the CA that signed the gateway's certificate.
    pub ca_pem: Vec<u8>,
    /// The name the certificate is for, when it differs from the endpoint's host.
    pub domain: Option<String>,
}

/// How one batch is sent: by [`crate::Client`] on its own, or by a publisher's workers.
#[derive(Clone, Debug)]
pub struct SendOptions {
    pub compression: Compression,
    /// Deadline of one attempt, sent to the gateway as `grpc-timeout` too.
    pub timeout: Duration,
    /// Use `PublishStream` (one response per batch on a long-lived call), falling back to
    /// unary `Publish` when the gateway answers UNIMPLEMENTED.
    pub streaming: bool,
    pub retry: RetryPolicy,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            compression: Compression::default(),
            timeout: Duration::from_secs(10),
            streaming: true,
            retry: RetryPolicy::default(),
        }
    }
}

/// An on-disk spool: every event `publish` takes is written there first, and stays until
/// the gateway acknowledges it, so a restarted process sends what it had not delivered.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// A directory this publisher alone uses.
    pub dir: PathBuf,
    /// When the spool holds this many bytes, `publish` returns
    /// [`crate::PublishError::SpoolFull`].
    pub max_bytes: u64,
}

/// A publisher's settings. `Config::new(endpoint, token)` gives the defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// e.g. `http://127.0.0.1:50051` or `https://ingest.example.com`.
    pub endpoint: String,
    /// The store's bearer token.
    pub token: String,
    pub tls: Option<Tls>,
    pub send: SendOptions,
    /// A batch is sent when it has this many events (the gateway's default limit is 10,000).
    pub max_batch_events: usize,
    /// ... or this many encoded bytes (the gateway's default message limit is 4 MiB).
    pub max_batch_bytes: usize,
    /// ... or when its first event has waited this long.
    pub linger: Duration,
    /// Encoded bytes held in memory, waiting or in flight, before `publish` waits or fails.
    pub max_buffered_bytes: usize,
    pub when_full: WhenFull,
    /// Batches in flight at once, each on its own stream over one connection.
    pub concurrency: usize,
    pub spool: Option<SpoolConfig>,
}

impl Config {
    /// The defaults for a gateway and a store token.
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            token: token.into(),
            tls: None,
            send: SendOptions::default(),
            max_batch_events: 500,
            max_batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(100),
            max_buffered_bytes: 16 * 1024 * 1024,
            when_full: WhenFull::Wait,
            concurrency: 2,
            spool: None,
        }
    }

    /// Checks the limits against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.max_batch_events == 0 || self.max_batch_bytes == 0 || self.concurrency == 0 {
            return invalid("max_batch_events, max_batch_bytes and concurrency must be at least 1");
        }
        if self.max_buffered_bytes < self.max_batch_bytes {
            return invalid("max_buffered_bytes must hold at least one batch (max_batch_bytes)");
        }
        if let Some(spool) = &self.spool
            && spool.max_bytes < self.max_batch_bytes as u64
        {
            return invalid("spool max_bytes must hold at least one batch (max_batch_bytes)");
        }
        Ok(())
    }

    /// A channel to the gateway that connects on first use and reconnects by itself.
    pub fn channel(&self) -> Result<Channel, ConfigError> {
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|_| ConfigError::Endpoint(self.endpoint.clone()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| ConfigError::Tls(e.to_string()))?;
        }
        Ok(endpoint.connect_lazy())
    }
}
