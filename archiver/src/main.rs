//! `archiver`: telemetry, settings, then archive until SIGTERM/SIGINT; or `verify`,
//! `restore`, `manifest` or `replay-rejected` for one day.

use archiver::{config::Command, store::ArchiveStore};
use clap::Parser;
use fred::interfaces::ClientLike as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = archiver::Settings::parse();
    // Only the long-running archiver serves metrics: a one-day command (verify, restore, …)
    // often runs beside it, in its container, where the port is taken.
    let telemetry = match settings.command {
        None => settings.telemetry.clone(),
        Some(_) => settings.telemetry.one_shot(),
    };
    let _telemetry = pipeline::telemetry::init("archiver", &telemetry)?;
    let store = ArchiveStore::connect(&settings.s3.bucket()).await?;
    match settings.command {
        None => {
            tracing::info!(
                group = %settings.group.archiver_group,
                archiver = %settings.group.archiver_name,
                stream = %settings.redis.stream_key,
                bucket = %settings.s3.archive_bucket,
                "archiver starting"
            );
            archiver::worker::run(&settings, store, pipeline::shutdown::signal()).await?;
        }
        Some(Command::Verify { date }) => {
            let client = settings.clickhouse.client();
            let v = archiver::verify::verify(&store, &client, date).await?;
            print!("{}", v.report());
            if !v.is_clean() {
                std::process::exit(1);
            }
        }
        Some(Command::Restore { date }) => {
            let client = settings.clickhouse.client();
            let r = archiver::restore::restore(&store, &client, date).await?;
            println!(
                "{date}: restored {} commerce events and {} probe results; {} already there",
                r.commerce, r.probes, r.skipped
            );
        }
        Some(Command::ReplayRejected {
            date,
            dry_run,
            max_future_skew,
            max_event_age,
        }) => {
            let limits = pipeline::validate::Limits {
                max_future_skew,
                max_age: max_event_age,
            };
            let redis = settings.redis.client()?;
            redis.init().await?;
            let shards = settings.redis.shards();
            let r =
                archiver::replay::replay(&store, &redis, &shards, date, &limits, dry_run).await?;
            print!("{}", r.report(date, dry_run));
        }
        Some(Command::Manifest { date }) => {
            let m = archiver::manifest::write(&store, date).await?;
            println!("{date}: manifest lists {} objects", m.objects.len());
        }
    }
    Ok(())
}
