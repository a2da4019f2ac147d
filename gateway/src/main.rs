//! `gateway`: telemetry, settings, listener, then serve until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = gateway::Settings::parse();
    let _telemetry = pipeline::telemetry::init("gateway", &settings.telemetry)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    gateway::run(listener, settings, pipeline::shutdown::signal()).await
}
