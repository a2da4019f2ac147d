//! Backpressure: refuse new writes while the consumer is far behind or Redis is nearly full,
//! so that a slow consumer makes stores retry instead of making Redis run out of memory.
//!
//! A background task samples Redis every [`SAMPLE_EVERY`]; requests only read the last
//! sample from atomics, so the check costs no round trip and no allocation.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
    types::{InfoKind, Value},
};

/// How often Redis is sampled. Short enough that a request or two per store overshoots the
/// limit at most; long enough that sampling costs Redis nothing noticeable.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// When to refuse writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Most entries the consumer may be behind.
    pub max_backlog: u64,
    /// Largest share of `maxmemory` Redis may use.
    pub max_memory_ratio: f64,
}

/// What one look at Redis found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Entries not yet acknowledged by the slowest consumer group, or the stream length
    /// when no group exists yet.
    pub backlog: u64,
    /// `used_memory` of `INFO memory`.
    pub used_memory: u64,
    /// `maxmemory`; 0 means unlimited.
    pub max_memory: u64,
}

/// Why writes are refused right now.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum Overload {
    #[error(
        "the event queue holds {backlog} unprocessed entries, above the limit of {max}; retry later"
    )]
    Backlog { backlog: u64, max: u64 },
    #[error(
        "redis uses {used} of its {max} bytes of memory, above the limit of {ratio} of it; retry later"
    )]
    Memory { used: u64, max: u64, ratio: f64 },
}

impl Limits {
    /// Whether a sample means writes must wait.
    pub fn judge(&self, sample: &Sample) -> Result<(), Overload> {
        if sample.backlog > self.max_backlog {
            return Err(Overload::Backlog {
                backlog: sample.backlog,
                max: self.max_backlog,
            });
        }
        if sample.max_memory > 0
            && sample.used_memory as f64 > sample.max_memory as f64 * self.max_memory_ratio
        {
            return Err(Overload::Memory {
                used: sample.used_memory,
                max: sample.max_memory,
                ratio: self.max_memory_ratio,
            });
        }
        Ok(())
    }
}

/// The last sample, shared between the sampling task and every request.
#[derive(Clone)]
pub struct Backpressure {
    limits: Limits,
    /// Atomics rather than a lock: requests must never wait for the sampler.
    backlog: Arc<AtomicU64>,
    used_memory: Arc<AtomicU64>,
    max_memory: Arc<AtomicU64>,
}

impl Backpressure {
    /// Starts with an empty sample: until the first look, nothing is refused.
    pub fn new(limits: Limits) -> Backpressure {
        Backpressure {
            limits,
            backlog: Arc::default(),
            used_memory: Arc::default(),
            max_memory: Arc::default(),
        }
    }

    /// Whether a write may go ahead now.
    pub fn check(&self) -> Result<(), Overload> {
        self.limits.judge(&Sample {
            backlog: self.backlog.load(Ordering::Relaxed),
            used_memory: self.used_memory.load(Ordering::Relaxed),
            max_memory: self.max_memory.load(Ordering::Relaxed),
        })
    }

    fn record(&self, sample: &Sample) {
        self.backlog.store(sample.backlog, Ordering::Relaxed);
        // Exported as gauges too: the same samples that drive admission show on dashboards.
        metrics::gauge!("gateway_stream_backlog_entries").set(sample.backlog as f64);
        metrics::gauge!("gateway_redis_used_memory_bytes").set(sample.used_memory as f64);
        metrics::gauge!("gateway_redis_max_memory_bytes").set(sample.max_memory as f64);
        self.used_memory
            .store(sample.used_memory, Ordering::Relaxed);
        self.max_memory.store(sample.max_memory, Ordering::Relaxed);
    }

    /// Samples Redis once and records the result.
    pub async fn refresh(
        &self,
        client: &Client,
        stream_key: &str,
    ) -> Result<Sample, fred::error::Error> {
        let sample = sample(client, stream_key).await?;
        self.record(&sample);
        Ok(sample)
    }

    /// Refreshes every [`SAMPLE_EVERY`] forever. A failed sample keeps the previous one:
    /// an unreachable Redis is the health watch's business, and answers UNAVAILABLE anyway.
    pub async fn run(self, client: Client, stream_key: Arc<str>) {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut overloaded = false;
        loop {
            ticker.tick().await;
            match self.refresh(&client, &stream_key).await {
                Ok(_) => {
                    let now = self.check();
                    if now.is_err() != overloaded {
                        match now {
                            Err(overload) => tracing::warn!(%overload, "refusing writes"),
                            Ok(()) => tracing::info!("accepting writes again"),
                        }
                        overloaded = !overloaded;
                    }
                }
                Err(err) => tracing::debug!(%err, "backpressure sample failed"),
            }
        }
    }
}

/// Looks at the stream's consumer groups and at Redis memory.
pub async fn sample(client: &Client, stream_key: &str) -> Result<Sample, fred::error::Error> {
    let backlog = backlog(client, stream_key).await?;
    let info: String = client.info(Some(InfoKind::Memory)).await?;
    Ok(Sample {
        backlog,
        used_memory: info_field(&info, "used_memory").unwrap_or(0),
        max_memory: info_field(&info, "maxmemory").unwrap_or(0),
    })
}

/// The backlog of the slowest group: `lag` (entries not yet delivered) plus `pending`
/// (delivered, not acknowledged), since an entry held by a crashed consumer is not done
/// either. Redis reports `lag` as nil when it cannot compute it (after deletions inside the
/// group's range); the stream length is then the safe upper bound.
async fn backlog(client: &Client, stream_key: &str) -> Result<u64, fred::error::Error> {
    let groups: Vec<HashMap<String, Value>> = match client.xinfo_groups(stream_key).await {
        Ok(groups) => groups,
        // XINFO on a missing key is an error, but an empty queue is no backlog
        Err(err) if err.details().contains("no such key") => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut worst = None;
    let mut length = None;
    for group in &groups {
        let pending = group.get("pending").and_then(Value::as_u64).unwrap_or(0);
        let lag = match group.get("lag").and_then(Value::as_u64) {
            Some(lag) => lag,
            None => match length {
                Some(len) => len,
                None => *length.insert(client.xlen::<u64, _>(stream_key).await?),
            },
        };
        worst = worst.max(Some(lag + pending));
    }
    match worst {
        Some(worst) => Ok(worst),
        None => client.xlen(stream_key).await,
    }
}

/// A numeric `name:value` line of an `INFO` reply.
fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_backlog: 100,
        max_memory_ratio: 0.9,
    };

    #[test]
    fn backlog_and_memory_each_refuse() {
        let ok = Sample {
            backlog: 100,
            used_memory: 90,
            max_memory: 100,
        };
        assert_eq!(LIMITS.judge(&ok), Ok(()));
        assert!(matches!(
            LIMITS.judge(&Sample { backlog: 101, ..ok }),
            Err(Overload::Backlog {
                backlog: 101,
                max: 100
            })
        ));
        assert!(matches!(
            LIMITS.judge(&Sample {
                used_memory: 91,
                ..ok
            }),
            Err(Overload::Memory { used: 91, .. })
        ));
        // maxmemory 0 is unlimited
        assert_eq!(
            LIMITS.judge(&Sample {
                used_memory: u64::MAX,
                max_memory: 0,
                ..ok
            }),
            Ok(())
        );
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.2K\r\nmaxmemory:0\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1234));
        assert_eq!(info_field(info, "maxmemory"), Some(0));
        assert_eq!(info_field(info, "maxmemory_policy"), None);
    }
}
