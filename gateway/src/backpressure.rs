//! Backpressure: refuse new writes while the consumer is far behind or Redis is nearly full,
//! so that a slow consumer makes stores retry instead of making Redis run out of memory.
//!
//! A background task samples Redis every [`SAMPLE_EVERY`]; requests only read the last
//! sample from atomics, so the check costs no round trip and no allocation.
//!
//! With a sharded stream each shard is judged on its own: its groups' backlog, and the
//! memory of the Redis node that holds it (the node owning the shard key's cluster slot).
//! A lagging shard refuses only the stores that write to it.

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
    types::{ClusterHash, CustomCommand, Value},
};
use pipeline::shard::Shards;

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

/// The last sample of one shard, in atomics rather than behind a lock: requests must never
/// wait for the sampler.
#[derive(Default)]
struct ShardSample {
    backlog: AtomicU64,
    used_memory: AtomicU64,
    max_memory: AtomicU64,
}

/// The last samples, shared between the sampling task and every request.
#[derive(Clone)]
pub struct Backpressure {
    limits: Limits,
    shards: Arc<[ShardSample]>,
}

impl Backpressure {
    /// Starts with empty samples for `shards` shards: until the first look, nothing is
    /// refused.
    pub fn new(limits: Limits, shards: usize) -> Backpressure {
        Backpressure {
            limits,
            shards: (0..shards.max(1)).map(|_| ShardSample::default()).collect(),
        }
    }

    /// Whether a write to shard `shard` may go ahead now.
    pub fn check(&self, shard: usize) -> Result<(), Overload> {
        let s = &self.shards[shard];
        self.limits.judge(&Sample {
            backlog: s.backlog.load(Ordering::Relaxed),
            used_memory: s.used_memory.load(Ordering::Relaxed),
            max_memory: s.max_memory.load(Ordering::Relaxed),
        })
    }

    fn record(&self, shard: usize, sample: &Sample) {
        let s = &self.shards[shard];
        s.backlog.store(sample.backlog, Ordering::Relaxed);
        s.used_memory.store(sample.used_memory, Ordering::Relaxed);
        s.max_memory.store(sample.max_memory, Ordering::Relaxed);
        // Exported as gauges too: the same samples that drive admission show on dashboards.
        let shard = shard.to_string();
        metrics::gauge!("gateway_stream_backlog_entries", "shard" => shard.clone())
            .set(sample.backlog as f64);
        metrics::gauge!("gateway_redis_used_memory_bytes", "shard" => shard.clone())
            .set(sample.used_memory as f64);
        metrics::gauge!("gateway_redis_max_memory_bytes", "shard" => shard)
            .set(sample.max_memory as f64);
    }

    /// Samples every shard once and records the results.
    pub async fn refresh(
        &self,
        client: &Client,
        shards: &Shards,
    ) -> Result<Vec<Sample>, fred::error::Error> {
        let mut samples = Vec::with_capacity(shards.len());
        for (i, key) in shards.keys().iter().enumerate() {
            let sample = sample(client, key).await?;
            self.record(i, &sample);
            samples.push(sample);
        }
        Ok(samples)
    }

    /// The first shard refusing writes, if any.
    fn overloaded(&self) -> Option<(usize, Overload)> {
        (0..self.shards.len()).find_map(|i| self.check(i).err().map(|o| (i, o)))
    }

    /// Refreshes every [`SAMPLE_EVERY`] forever. A failed sample keeps the previous one:
    /// an unreachable Redis is the health watch's business, and answers UNAVAILABLE anyway.
    pub async fn run(self, client: Client, shards: Arc<Shards>) {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut overloaded = false;
        loop {
            ticker.tick().await;
            match self.refresh(&client, &shards).await {
                Ok(_) => {
                    let now = self.overloaded();
                    if now.is_some() != overloaded {
                        match now {
                            Some((shard, overload)) => {
                                tracing::warn!(%overload, shard, "refusing writes")
                            }
                            None => tracing::info!("accepting writes again"),
                        }
                        overloaded = !overloaded;
                    }
                }
                Err(err) => tracing::debug!(%err, "backpressure sample failed"),
            }
        }
    }
}

/// Looks at one stream's consumer groups and at the memory of the Redis node holding it.
pub async fn sample(client: &Client, stream_key: &str) -> Result<Sample, fred::error::Error> {
    let backlog = backlog(client, stream_key).await?;
    // Routed by the key's slot: in a cluster, the node that holds this shard.
    let slot = fred::util::redis_keyslot(stream_key.as_bytes());
    let info: String = client
        .custom(
            CustomCommand::new_static("INFO", ClusterHash::Custom(slot), false),
            vec!["memory"],
        )
        .await?;
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
