//! `consumer`: telemetry, settings, migrations, then load until SIGTERM/SIGINT; or one of
//! the dead-letter subcommands.

use std::time::Duration;

use clap::Parser;
use consumer::{config::Command, dead_letter::DeadLetters};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = consumer::Settings::parse();
    let _telemetry = pipeline::telemetry::init("consumer", &settings.telemetry)?;
    match &settings.command {
        None => {}
        Some(Command::DeadLetters) => {
            let letters = DeadLetters::connect(&settings.redis).await?;
            // One line each, tab-separated, for scripts: the reason last, on one line.
            for l in letters.list().await? {
                let reason = l.reason.replace(['\n', '\t'], " ");
                println!("{}\t{}\t{}\t{reason}", l.id, l.original_id, l.deliveries);
            }
            return Ok(());
        }
        Some(Command::Replay { ids, all }) => {
            let letters = DeadLetters::connect(&settings.redis).await?;
            let replayed = letters.replay((!*all).then_some(ids.as_slice())).await?;
            println!("replayed {} entries", replayed.len());
            return Ok(());
        }
    }
    tracing::info!(
        group = %settings.group.consumer_group,
        consumer = %settings.group.consumer_name,
        stream = %settings.redis.stream_key,
        shards = settings.redis.stream_shards,
        "consumer starting"
    );
    consumer::worker::run(
        &settings,
        pipeline::shutdown::signal(),
        Duration::from_secs(10),
    )
    .await?;
    Ok(())
}
