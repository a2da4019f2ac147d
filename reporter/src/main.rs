//! `reporter`: telemetry, settings, then the chosen subcommand.

use clap::Parser;
use reporter::config::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = reporter::Settings::parse();
    let _telemetry = pipeline::telemetry::init("reporter", &settings.telemetry)?;
    let client = settings.clickhouse.client();
    let store = reporter::store::ReportStore::connect(&settings.s3).await?;
    match settings.command {
        Command::Run { date } => {
            let (report, keys) = reporter::run::run(&client, &store, date).await?;
            for key in keys {
                println!("s3://{}/{key}", store.bucket());
            }
            let events: u64 = report.funnel.iter().map(|f| f.events).sum();
            println!(
                "{}: {events} commerce events, {} regions probed",
                report.date,
                report.stability.len()
            );
        }
    }
    Ok(())
}
