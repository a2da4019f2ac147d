//! `simulator`: settings, then the chosen subcommand.

use clap::Parser;
use simulator::config::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = simulator::Settings::parse();
    tracing_subscriber_init();
    match settings.command {
        Command::StoresFile(fleet) => {
            print!(
                "{}",
                simulator::fleet::stores_file(&simulator::fleet::fleet(
                    fleet.stores_per_region,
                    &fleet.token_secret
                ))
            );
        }
        Command::Run(args) => {
            let truth = simulator::send::run(&args).await?;
            if let Some(path) = &args.truth_out {
                std::fs::write(path, truth.to_json())?;
            }
            println!(
                "sent {} events: {} accepted, {} rejected, {} failed, {} requests retried",
                truth.sent, truth.accepted, truth.rejected, truth.failed, truth.retried_requests
            );
        }
    }
    Ok(())
}

fn tracing_subscriber_init() {
    let args = pipeline::config::TelemetryArgs {
        log_format: pipeline::config::LogFormat::Text,
        metrics_listen: None,
    };
    let _ = pipeline::telemetry::init("simulator", &args);
}
