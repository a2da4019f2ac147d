//! `reporter`: telemetry, settings, then the chosen subcommand.

use clap::Parser;
use reporter::config::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = reporter::Settings::parse();
    let _telemetry = pipeline::telemetry::init("reporter", &settings.telemetry)?;
    let options = settings.report.options()?;
    let client = settings.clickhouse.client();
    let store = reporter::store::ReportStore::connect(&settings.s3.bucket()).await?;
    match settings.command {
        Command::Run { date } => {
            let written = reporter::run::run_with(&client, &store, date, &options).await?;
            for key in &written.keys {
                println!("s3://{}/{key}", store.bucket());
            }
            let r = &written.report;
            println!(
                "{}: {} views, {} purchases, revenue {} {}, {} regions probed, {} incidents, {} recommendations, sellers {:?}",
                r.date,
                r.commerce.totals.views,
                r.commerce.totals.purchases,
                r.commerce.totals.revenue,
                r.commerce.reporting_currency,
                r.stability.len(),
                r.incidents.len(),
                r.plan.len(),
                written.seller_ids
            );
        }
        Command::Serve { at, lookback_days } => {
            let catch_up = reporter::schedule::CatchUp {
                lookback_days,
                ..Default::default()
            };
            reporter::schedule::serve(
                &client,
                &store,
                at,
                &options,
                catch_up,
                pipeline::shutdown::signal(),
            )
            .await;
        }
    }
    Ok(())
}
