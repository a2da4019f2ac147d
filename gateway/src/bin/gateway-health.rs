//! `gateway-health`: the container healthcheck. Asks the gateway's `grpc.health.v1` service
//! and exits 0 only on SERVING; the gateway answers NOT_SERVING while Redis does not answer
//! its pings (gateway::server), which a TCP connect could never tell.
//!
//! The image has no curl or grpcurl, so the probe ships as one more binary of this crate.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Exits 0 when the gateway reports SERVING, 1 otherwise (a Docker healthcheck)
#[derive(Parser, Debug)]
#[command(name = "gateway-health", version)]
struct Settings {
    /// The gateway to ask; https:// needs --tls-ca
    #[arg(
        long,
        env = "GATEWAY_HEALTH_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// The service to ask about; empty is the whole server
    #[arg(long, default_value = "")]
    service: String,
    /// PEM roots to verify the gateway's certificate with (its own certificate when self-signed)
    #[arg(long, env = "GATEWAY_HEALTH_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the certificate must carry
    #[arg(long, env = "GATEWAY_HEALTH_TLS_DOMAIN", default_value = "localhost")]
    tls_domain: String,
    /// Gives up after this many seconds
    #[arg(long, default_value_t = 2)]
    timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    match check(&settings).await {
        Ok(ServingStatus::Serving) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("gateway-health: {}", status.as_str_name().to_lowercase());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gateway-health: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(settings: &Settings) -> anyhow::Result<ServingStatus> {
    let timeout = Duration::from_secs(settings.timeout_secs);
    let mut endpoint = Endpoint::from_shared(settings.addr.clone())
        .context("invalid --addr")?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(ca) = &settings.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        endpoint = endpoint.tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name(settings.tls_domain.clone()),
        )?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", settings.addr))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: settings.service.clone(),
        })
        .await
        .context("health check")?;
    Ok(response.into_inner().status())
}
