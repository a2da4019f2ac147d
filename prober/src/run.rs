//! The prober's loop: every target on its own schedule, each probe published as an event.

use std::{future::Future, sync::Arc, time::SystemTime};

use client::{Config, Publisher};
use pipeline::region::Region;
use rand::Rng as _;

use crate::{
    config::Settings,
    measure::{Http, MeasureError},
    probe::{self, Verdict},
    targets::{self, Target, TargetsError},
};

/// Why the prober cannot start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Targets(#[from] TargetsError),
    #[error(transparent)]
    Http(#[from] MeasureError),
    #[error("reading gateway CA file {path}: {source}")]
    GatewayCa {
        path: String,
        source: std::io::Error,
    },
    #[error("publisher: {0}")]
    Config(#[from] client::ConfigError),
    #[error("flushing the last probes: {0}")]
    Close(#[from] client::PublishError),
}

/// Probes every target of the settings' file until `shutdown` completes, then flushes
/// what is unpublished.
pub async fn run(settings: &Settings, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let targets = targets::load(&settings.targets_file)?;
    let http = Http::new(settings.targets_ca_file.as_deref())?;
    let config = publisher_config(settings)?;
    let publisher = Arc::new(Publisher::with_outcomes(
        config,
        |_batch, outcome| match outcome {
            Ok(ack) => {
                for rejected in &ack.rejected {
                    metrics::counter!("prober_results_rejected_total").increment(1);
                    for v in &rejected.violations {
                        tracing::error!(event_id = %rejected.event_id, field = %v.field, problem = %v.description, "gateway refused a probe result");
                    }
                }
            }
            Err(err) => {
                metrics::counter!("prober_publish_failures_total").increment(1);
                tracing::error!(error = %err, "probe results not delivered");
            }
        },
    )?);
    tracing::info!(targets = targets.len(), region = %settings.region, gateway = %settings.gateway, "prober starting");
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|target| {
            tokio::spawn(probe_forever(
                http.clone(),
                target,
                settings.region,
                publisher.clone(),
            ))
        })
        .collect();
    shutdown.await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    let publisher = Arc::into_inner(publisher).expect("every probe task has ended");
    let stats = publisher.close().await?;
    tracing::info!(
        published = stats.published,
        acknowledged = stats.acknowledged,
        rejected = stats.rejected,
        failed = stats.failed,
        "prober stopped"
    );
    Ok(())
}

/// The publisher's settings: the gateway, the prober's token and, for an https:// gateway,
/// the CA file and the name its certificate must carry.
pub fn publisher_config(settings: &Settings) -> Result<Config, Error> {
    let mut config = Config::new(&settings.gateway, &settings.token);
    if let Some(path) = &settings.gateway_ca_file {
        let ca_pem = std::fs::read(path).map_err(|source| Error::GatewayCa {
            path: path.display().to_string(),
            source,
        })?;
        config.tls = Some(client::Tls {
            ca_pem,
            domain: settings.gateway_tls_domain.clone(),
        });
    }
    Ok(config)
}

/// Probes `target` every interval (plus jitter), forever.
async fn probe_forever(http: Http, target: Target, vantage: Region, publisher: Arc<Publisher>) {
    // a random first wait spreads targets (and probers) over the interval
    tokio::time::sleep(random_up_to(target.jitter.min(target.interval))).await;
    loop {
        probe_once(&http, &target, vantage, &publisher).await;
        tokio::time::sleep(target.interval + random_up_to(target.jitter)).await;
    }
}

/// One probe of `target`, recorded in the metrics and published.
pub async fn probe_once(http: &Http, target: &Target, vantage: Region, publisher: &Publisher) {
    let at = SystemTime::now();
    let probe = probe::probe(http, target, vantage).await;
    record(target, &probe);
    let event = probe::event(target, probe.result, at);
    if let Err(err) = publisher.publish(&event).await {
        metrics::counter!("prober_publish_failures_total").increment(1);
        tracing::error!(target = %target.name, store = %target.store_id, error = %err, "probe result not published");
    }
}

fn record(target: &Target, probe: &probe::Probe) {
    let labels = [
        ("store", target.store_id.clone()),
        ("target", target.name.clone()),
    ];
    metrics::counter!("prober_probes_total", "store" => target.store_id.clone(), "target" => target.name.clone(), "outcome" => probe.verdict.as_str()).increment(1);
    metrics::gauge!("prober_target_up", &labels)
        .set(f64::from(u8::from(probe.verdict == Verdict::Up)));
    let r = &probe.result;
    metrics::histogram!("prober_probe_duration_seconds", &labels)
        .record(f64::from(r.response_time_ms) / 1000.0);
    for (phase, ms) in [
        ("network", r.network_latency_ms),
        ("tls", r.tls_handshake_ms),
        ("first_byte", r.time_to_first_byte_ms),
    ] {
        metrics::gauge!("prober_phase_seconds", "store" => target.store_id.clone(), "target" => target.name.clone(), "phase" => phase)
            .set(f64::from(ms) / 1000.0);
    }
    if r.bandwidth_bytes_per_second > 0 {
        metrics::gauge!("prober_bandwidth_bytes_per_second", &labels)
            .set(r.bandwidth_bytes_per_second as f64);
    }
    if probe.problems.is_empty() {
        tracing::debug!(target = %target.name, store = %target.store_id, response_ms = r.response_time_ms, "probe");
    } else {
        tracing::warn!(target = %target.name, store = %target.store_id, outcome = probe.verdict.as_str(), problems = ?probe.problems, "probe");
    }
}

fn random_up_to(max: std::time::Duration) -> std::time::Duration {
    if max.is_zero() {
        return max;
    }
    max.mul_f64(rand::rng().random::<f64>())
}
