//! `prober`: telemetry, settings, then probe until SIGTERM/SIGINT.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = prober::Settings::parse();
    let _telemetry = pipeline::telemetry::init("prober", &settings.telemetry)?;
    prober::run::run(&settings, pipeline::shutdown::signal()).await?;
    Ok(())
}
