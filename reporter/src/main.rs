//! `reporter`: telemetry, settings, then the chosen subcommand.

use clap::Parser;
use reporter::config::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = reporter::Settings::parse();
    // `run` for one day often runs beside `serve`, in its container, where the metrics port
    // is taken; only the scheduler serves metrics.
    let telemetry = match settings.command {
        Command::Serve { .. } => settings.telemetry.clone(),
        Command::Run { .. } => settings.telemetry.one_shot(),
    };
    let _telemetry = pipeline::telemetry::init("reporter", &telemetry)?;
    let options = settings.report.options()?;
    // every replica of CLICKHOUSE_URL, in order: a run moves on when one fails
    let clients = settings.clickhouse.clients();
    let store = reporter::store::ReportStore::connect(&settings.s3.bucket()).await?;
    match settings.command {
        Command::Run { date } => {
            let written = reporter::run::run_on_replicas(&clients, &store, date, &options).await?;
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
        Command::Serve {
            at,
            lookback_days,
            rollup_interval,
        } => {
            let catch_up = reporter::schedule::CatchUp {
                lookback_days,
                rollup_interval,
                ..Default::default()
            };
            reporter::schedule::serve(
                &clients,
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
