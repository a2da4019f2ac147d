//! `consumer`: telemetry, settings, migrations, then load until SIGTERM/SIGINT; or one of
//! the dead-letter subcommands.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = consumer::Settings::parse();
    if let Some(command) = &settings.command {
        // A dead-letter command runs beside the loading consumer (`docker compose exec`),
        // whose metrics port it must not try to take.
        let _telemetry = pipeline::telemetry::init("consumer", &settings.telemetry.one_shot())?;
        consumer::admin::run(&settings, command, &mut std::io::stdout()).await?;
        return Ok(());
    }
    let _telemetry = pipeline::telemetry::init("consumer", &settings.telemetry)?;
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
        settings.shutdown_grace,
    )
    .await?;
    Ok(())
}
