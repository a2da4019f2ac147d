//! The Redis stream writer: one `XADD` per accepted request, to the store's shard (see
//! [`pipeline::shard`]), or, for a request whose events take more than one entry may
//! (`pipeline::entry::MAX_BATCH_BYTES`), its entries in one `MULTI`/`EXEC`; and a watch on
//! Redis health.
//!
//! fred multiplexes every request's `XADD` over one connection, so concurrent requests are
//! pipelined without waiting for each other's round trips.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
    types::{ClusterHash, CustomCommand, Value},
};
use pipeline::{
    config::RedisArgs,
    entry::Fields,
    retry::{Class, classify_redis},
    shard::Shards,
};

/// Why an entry was not queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis is not reachable, or did not answer in time; the write may be retried.
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis reached `maxmemory`: it refuses writes until the consumer catches up.
    #[error("redis is out of memory: {0}")]
    OutOfMemory(String),
    /// Anything else Redis answered.
    #[error("redis refused the write: {0}")]
    Refused(String),
    /// The primary has the entry, but fewer replicas than `GATEWAY_ACK_REPLICAS` confirmed it
    /// in time: it could die with the primary, so the store must not be told OK. A retry
    /// sends the same events again, which the event tables count once.
    #[error("{confirmed} of {wanted} redis replicas confirmed the write in time")]
    NotReplicated { wanted: u32, confirmed: u32 },
}

/// How many replicas must have an entry before the store is told OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    pub replicas: u32,
    /// `WAIT`'s timeout.
    pub timeout: Duration,
}

impl From<fred::error::Error> for QueueError {
    /// One mapping from [`pipeline::retry`]'s classes: what the retry rules call full or
    /// retriable is what the gateway answers as such.
    fn from(err: fred::error::Error) -> Self {
        match classify_redis(&err) {
            Class::Full => QueueError::OutOfMemory(err.details().to_owned()),
            Class::Retriable => QueueError::Unavailable(err.to_string()),
            Class::BadData | Class::NeedsOperator => QueueError::Refused(err.to_string()),
        }
    }
}

/// Health checks in a row that may time out before Redis counts as down. One slow PING is
/// not an outage (Redis forking for an AOF rewrite, or answering behind large `XADD`s at a
/// peak), and counting it as one would answer every store UNAVAILABLE for the next second;
/// two in a row (about 2 s without an answer) are, as a frozen or cut-off Redis.
const SLOW_PINGS_TOLERATED: u32 = 1;

/// What one health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    Answered,
    /// An error at once: the connection was refused, reset or closed.
    Failed,
    TimedOut,
}

/// Whether Redis is up, from its health checks: up at the first answer; down at once when a
/// PING fails, and when more than [`SLOW_PINGS_TOLERATED`] in a row time out.
#[derive(Debug)]
struct Health {
    up: bool,
    timeouts: u32,
}

impl Health {
    fn after(&mut self, ping: Ping) -> bool {
        match ping {
            Ping::Answered => {
                self.up = true;
                self.timeouts = 0;
            }
            Ping::Failed => {
                self.up = false;
                self.timeouts = 0;
            }
            Ping::TimedOut => {
                self.timeouts += 1;
                if self.timeouts > SLOW_PINGS_TOLERATED {
                    self.up = false;
                }
            }
        }
        self.up
    }
}

/// Writes stream entries and knows whether Redis is up.
#[derive(Clone)]
pub struct Queue {
    client: Client,
    shards: Arc<Shards>,
    /// Updated by [`Queue::watch`]; while false, writes fail fast instead of queueing
    /// inside the client until its timeout.
    healthy: Arc<AtomicBool>,
    /// `GATEWAY_ACK_REPLICAS`: when set, every `XADD` is followed by `WAIT`.
    replication: Option<Replication>,
}

impl Queue {
    /// Creates the client and starts connecting in the background. Never fails on an
    /// unreachable Redis: the gateway starts, reports NOT_SERVING and answers UNAVAILABLE,
    /// and keeps connecting until Redis answers (with fred's default, a first connection
    /// that failed was never tried again: a gateway started before its Redis, or while
    /// Redis refused writes, stayed NOT_SERVING until restarted).
    pub fn connect(
        args: &RedisArgs,
        replication: Option<Replication>,
    ) -> Result<Queue, fred::error::Error> {
        let client = args.client_retrying_first_connect()?;
        let _handle = client.connect();
        Ok(Queue {
            client,
            shards: Arc::new(args.shards()),
            healthy: Arc::new(AtomicBool::new(false)),
            replication,
        })
    }

    /// Waits for the first connection, up to `timeout`; true if connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let ok = matches!(
            tokio::time::timeout(timeout, self.client.wait_for_connect()).await,
            Ok(Ok(()))
        );
        self.healthy.store(ok, Ordering::Relaxed);
        ok
    }

    pub fn shards(&self) -> &Arc<Shards> {
        &self.shards
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the last health check reached Redis.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Appends the entries of one request, each holding an encoded `QueuedBatch`, to shard
    /// `shard` under a PRODUCER span, storing `traceparent` (by default the producer span's
    /// own) in each; returns their stream ids once Redis confirmed the write (and, under
    /// `appendfsync always`, fsynced it). Several entries are written all or none
    /// (`MULTI`/`EXEC`), so that a store told of a failure finds none of its events queued.
    pub async fn append(
        &self,
        shard: usize,
        batches: Vec<Bytes>,
        traceparent: Option<String>,
    ) -> Result<Vec<String>, QueueError> {
        if !self.is_healthy() {
            return Err(QueueError::Unavailable(
                "redis did not answer the last health check".into(),
            ));
        }
        // The PRODUCER span of the messaging conventions; its context travels in the entry
        // so the consumer's batch span can link to it.
        let key = self.shards.key(shard);
        let span = pipeline::trace::producer_span(key);
        let traceparent = traceparent.or_else(|| pipeline::trace::traceparent_of(&span));
        let entries: Vec<Fields> = batches
            .into_iter()
            .map(|batch| Fields::new(batch, traceparent.clone()))
            .collect();
        let ids = match (&entries[..], self.replication) {
            ([fields], None) => vec![
                pipeline::trace::traced(
                    span.clone(),
                    self.client.xadd(key, false, None, "*", fields.pairs()),
                )
                .await?,
            ],
            ([], _) => Vec::new(),
            (_, replication) => {
                pipeline::trace::traced(
                    span.clone(),
                    self.append_pipelined(key, &entries, replication),
                )
                .await?
            }
        };
        if let Some(id) = ids.first() {
            span.record("messaging.message.id", id.as_str());
        }
        Ok(ids)
    }

    /// The `XADD`s of `entries`, in `MULTI`/`EXEC` when there are several, then, with
    /// `replication`, `WAIT replicas timeout`, pipelined on one connection: fred writes a
    /// pipeline's commands one after the other, with no other command between them, and
    /// never sends a command twice (`max_command_attempts` 1, `pipeline::config`), so the
    /// transaction holds only these `XADD`s. `WAIT` counts the replicas that have every write
    /// of its connection, so it must travel on the same one. If the connection drops
    /// between them, `WAIT` fails (one attempt, no retry on a new connection whose `WAIT`
    /// would know nothing of the `XADD`s) and the store is told UNAVAILABLE.
    ///
    /// `WAIT` is sent as a non-blocking custom command so that fred keeps pipelining the
    /// other requests' commands behind it; Redis runs them once `WAIT` returns.
    async fn append_pipelined(
        &self,
        key: &str,
        entries: &[Fields],
        replication: Option<Replication>,
    ) -> Result<Vec<String>, QueueError> {
        let pipeline = self.client.pipeline();
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let command =
            |name: &'static str| CustomCommand::new_static(name, ClusterHash::Custom(slot), false);
        let transaction = entries.len() > 1;
        if transaction {
            let _: () = pipeline.custom(command("MULTI"), Vec::<i64>::new()).await?;
        }
        for fields in entries {
            let _: () = pipeline.xadd(key, false, None, "*", fields.pairs()).await?;
        }
        if transaction {
            let _: () = pipeline.custom(command("EXEC"), Vec::<i64>::new()).await?;
        }
        if let Some(replication) = replication {
            let _: () = pipeline
                .custom(
                    command("WAIT"),
                    vec![
                        i64::from(replication.replicas),
                        replication.timeout.as_millis().max(1) as i64,
                    ],
                )
                .await?;
        }
        // the first error is the one to answer with: an `XADD` refused as it was queued
        // (out of memory) aborts the transaction, and `EXEC` then says only that
        let mut replies = Vec::with_capacity(entries.len() + 3);
        for reply in pipeline.try_all::<Value>().await {
            replies.push(reply?);
        }
        let mut replies = replies.into_iter();
        let ids: Vec<String> = if transaction {
            // MULTI's OK and each XADD's QUEUED, then EXEC's ids
            replies
                .nth(entries.len() + 1)
                .ok_or_else(|| QueueError::Refused("no reply to EXEC".into()))?
                .convert()?
        } else {
            vec![
                replies
                    .next()
                    .ok_or_else(|| QueueError::Refused("no reply to XADD".into()))?
                    .convert()?,
            ]
        };
        if ids.len() != entries.len() {
            return Err(QueueError::Refused(format!(
                "EXEC answered {} ids for {} entries",
                ids.len(),
                entries.len()
            )));
        }
        let Some(replication) = replication else {
            return Ok(ids);
        };
        let confirmed: i64 = replies
            .next()
            .ok_or_else(|| QueueError::Refused("no reply to WAIT".into()))?
            .convert()?;
        let confirmed = u32::try_from(confirmed).unwrap_or(0);
        if confirmed < replication.replicas {
            metrics::counter!("gateway_redis_unreplicated_writes_total").increment(1);
            return Err(QueueError::NotReplicated {
                wanted: replication.replicas,
                confirmed,
            });
        }
        Ok(ids)
    }

    /// PINGs Redis once, within `timeout`.
    async fn ping(&self, timeout: Duration) -> Ping {
        match tokio::time::timeout(timeout, self.client.ping::<String>(None)).await {
            Ok(Ok(_)) => Ping::Answered,
            Ok(Err(_)) => Ping::Failed,
            Err(_) => Ping::TimedOut,
        }
    }

    /// Checks Redis every `every` (a PING within `every`, at least 500 ms) and calls
    /// `on_change` when health flips ([`Health`] says when). Runs forever.
    pub async fn watch<F, Fut>(self, every: Duration, mut on_change: F)
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut last = None;
        let mut health = Health {
            up: self.is_healthy(),
            timeouts: 0,
        };
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let ping = self.ping(every.max(Duration::from_millis(500))).await;
            if ping == Ping::TimedOut {
                tracing::debug!(
                    timeouts = health.timeouts + 1,
                    "redis answered no health check in time"
                );
            }
            let ok = health.after(ping);
            self.healthy.store(ok, Ordering::Relaxed);
            if last != Some(ok) {
                if ok {
                    tracing::info!("redis is reachable");
                } else {
                    tracing::warn!("redis is unreachable");
                }
                on_change(ok).await;
                last = Some(ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Health, Ping};

    fn run(up: bool, pings: &[Ping]) -> Vec<bool> {
        let mut health = Health { up, timeouts: 0 };
        pings.iter().map(|&p| health.after(p)).collect()
    }

    #[test]
    fn one_slow_ping_keeps_the_health_and_two_in_a_row_are_an_outage() {
        use Ping::*;
        assert_eq!(run(true, &[TimedOut, Answered]), [true, true]);
        assert_eq!(
            run(true, &[TimedOut, TimedOut, TimedOut]),
            [true, false, false]
        );
        // an answer between two slow checks starts the count again
        assert_eq!(
            run(true, &[TimedOut, Answered, TimedOut]),
            [true, true, true]
        );
        // a refused or broken connection is an outage at once
        assert_eq!(run(true, &[Failed]), [false]);
        assert_eq!(run(true, &[TimedOut, Failed]), [true, false]);
        // a slow check never brings a down Redis back; an answer does
        assert_eq!(run(false, &[TimedOut, Answered]), [false, true]);
        assert_eq!(run(false, &[Failed, TimedOut]), [false, false]);
    }
}
