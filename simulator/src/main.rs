//! `simulator`: settings, then the chosen subcommand.

use clap::Parser;
use simulator::{config::Command, truth::Truth};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = simulator::Settings::parse();
    // kept to the end: dropping the guard stops the metrics endpoint and flushes traces
    let _telemetry = pipeline::telemetry::init("simulator", &settings.telemetry)?;
    match settings.command {
        Command::StoresFile(fleet) => {
            let scenario = simulator::scenario::Scenario::load(fleet.scenario.as_deref())?;
            print!(
                "{}",
                simulator::fleet::stores_file(&simulator::fleet::scenario_fleet(
                    &scenario,
                    fleet.stores_per_region,
                    &fleet.token_secret
                ))
            );
        }
        Command::Run(args) => {
            let truth = simulator::send::run(&args).await?;
            finish(&truth, args.send.truth_out.as_deref())?;
        }
        Command::Replay(args) => {
            let truth = simulator::replay::run(&args).await?;
            finish(&truth, args.send.truth_out.as_deref())?;
        }
        Command::SampleCsv(args) => {
            let csv = simulator::replay::sample_csv(args.rows, args.seed);
            match &args.out {
                Some(path) => std::fs::write(path, csv)?,
                None => print!("{csv}"),
            }
        }
        Command::BenchRedis(args) => println!("{}", simulator::bench::redis(&args).await?),
        Command::BenchClickhouse(args) => {
            println!("{}", simulator::bench::clickhouse(&args).await?)
        }
        Command::BenchLatency(args) => println!("{}", simulator::bench::latency(&args).await?),
    }
    Ok(())
}

fn finish(truth: &Truth, truth_out: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(path) = truth_out {
        std::fs::write(path, truth.to_json())?;
    }
    println!(
        "sent {} events: {} accepted, {} rejected, {} failed, {} requests retried",
        truth.sent, truth.accepted, truth.rejected, truth.failed, truth.retried_requests
    );
    for (answer, events) in &truth.failures {
        println!("failed: {events} events after {answer}");
    }
    Ok(())
}
