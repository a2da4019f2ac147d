//! `archiver`: telemetry, settings, then archive until SIGTERM/SIGINT; or `verify`,
//! `restore` or `manifest` for one day.

use archiver::{config::Command, store::ArchiveStore};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = archiver::Settings::parse();
    let _telemetry = pipeline::telemetry::init("archiver", &settings.telemetry)?;
    let store = ArchiveStore::connect(&settings.s3).await?;
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
        Some(Command::Manifest { date }) => {
            let m = archiver::manifest::write(&store, date).await?;
            println!("{date}: manifest lists {} objects", m.objects.len());
        }
    }
    Ok(())
}
