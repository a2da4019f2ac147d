//! The prober's settings: flags with environment fallbacks, parsed once in `main`.

use std::path::PathBuf;

use clap::Parser;
use pipeline::{config::TelemetryArgs, region::Region};

/// Probes store endpoints from one region and publishes the results to the gateway
#[derive(Parser, Clone, Debug)]
#[command(name = "prober", version)]
pub struct Settings {
    /// TOML file of [[target]] tables (see prober::targets)
    #[arg(long, env = "PROBER_TARGETS_FILE")]
    pub targets_file: PathBuf,
    /// The region this prober runs in: every probe's vantage region; must be the region of
    /// its entry (`role = "prober"`) in the gateway's stores file
    #[arg(long, env = "PROBER_REGION")]
    pub region: Region,
    /// Gateway endpoint, e.g. http://127.0.0.1:50051 or https://ingest.example.com
    #[arg(long, env = "PROBER_GATEWAY", default_value = "http://127.0.0.1:50051")]
    pub gateway: String,
    /// The prober's bearer token at the gateway
    #[arg(long, env = "PROBER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// PEM CA(s) of the gateway's certificate, for an https:// gateway (a private CA, or
    /// the system's bundle, e.g. /etc/ssl/certs/ca-certificates.crt)
    #[arg(long, env = "PROBER_GATEWAY_CA_FILE")]
    pub gateway_ca_file: Option<PathBuf>,
    /// The name the gateway's certificate is checked against, when it differs from the
    /// endpoint's host: e.g. https://gateway:50051 or an IP address, with a certificate for
    /// eu.ingest.example.com. Needs PROBER_GATEWAY_CA_FILE
    #[arg(long, env = "PROBER_GATEWAY_TLS_DOMAIN", requires = "gateway_ca_file")]
    pub gateway_tls_domain: Option<String>,
    /// Extra PEM CA trusted for https:// targets, besides the system's
    #[arg(long, env = "PROBER_TARGETS_CA_FILE")]
    pub targets_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}
