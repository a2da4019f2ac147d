//! Logging, tracing and metrics, initialised in one place for every binary.
//!
//! Logs go through `tracing`, filtered by `RUST_LOG` (default `info`), as text or JSON.
//! Prometheus metrics are served on `METRICS_LISTEN` when set.

use crate::config::{LogFormat, TelemetryArgs};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops telemetry"]
pub struct Guard(());

/// Installs the global subscriber and, if configured, the metrics endpoint.
pub fn init(service: &'static str, args: &TelemetryArgs) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init()?,
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init()?,
    }
    if let Some(addr) = args.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .add_global_label("service", service)
            .install()?;
        tracing::info!(%addr, "serving prometheus metrics");
    }
    Ok(Guard(()))
}
