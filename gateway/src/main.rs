//! `gateway`: telemetry, settings, listener, then serve until SIGTERM/SIGINT; or
//! `gateway stores …` to edit the stores file.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // the serving flags and the admin subcommand are separate parsers, so that the
    // server's required flags do not apply to `gateway stores`
    if std::env::args_os().nth(1).is_some_and(|a| a == "stores") {
        let cli = gateway::stores_admin::StoresCli::parse_from(std::env::args_os().skip(1));
        gateway::stores_admin::run(cli, &mut std::io::stdout())?;
        return Ok(());
    }
    let settings = gateway::Settings::parse();
    let _telemetry = pipeline::telemetry::init("gateway", &settings.telemetry)?;
    // before binding: an unsafe exposure must never accept a single connection
    if settings.preflight {
        let risks = gateway::preflight::full(&settings)?;
        println!("preflight: ok{}", accepted(&risks));
        return Ok(());
    }
    for risk in gateway::preflight::check(&settings)? {
        tracing::warn!(%risk, "serving unsafely because GATEWAY_INSECURE_DEMO says so");
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    gateway::run(listener, settings, pipeline::shutdown::signal()).await?;
    Ok(())
}

/// The risks GATEWAY_INSECURE_DEMO accepted, as the tail of the preflight line.
fn accepted(risks: &[gateway::preflight::Risk]) -> String {
    risks
        .iter()
        .map(|risk| format!("\n  accepted by GATEWAY_INSECURE_DEMO: {risk}"))
        .collect()
}
