//! `consumer`: telemetry, settings, migrations, then load until SIGTERM/SIGINT.

use std::time::Duration;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = consumer::Settings::parse();
    let _telemetry = pipeline::telemetry::init("consumer", &settings.telemetry)?;
    let worker = consumer::Worker::connect(&settings).await?;
    tracing::info!(
        group = %settings.group.consumer_group,
        consumer = %settings.group.consumer_name,
        stream = %settings.redis.stream_key,
        "consumer started"
    );
    worker
        .run(pipeline::shutdown::signal(), Duration::from_secs(10))
        .await
}
