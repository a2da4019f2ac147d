//! [`Publisher`]: takes events one by one, batches them by count, bytes and linger time,
//! and has workers deliver the batches with [`Client`]; memory is bounded and, with a
//! spool, every event taken is on disk until the gateway acknowledges it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::BytesMut;
use pipeline::proto::ingest::Event;
use prost::Message as _;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    batch::{Batch, frame, framed_len_of},
    client::{Ack, Client},
    config::{Config, WhenFull},
    error::{ConfigError, PublishError, SendError},
    spool::Spool,
};

/// Called once per batch with its outcome, from a worker task: keep it short.
pub type OnOutcome = Arc<dyn Fn(&Batch, &Result<Ack, SendError>) + Send + Sync>;

/// Counts since the publisher started, in events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Taken by `publish` (and, with a spool, found there at start).
    pub published: u64,
    /// Durably queued by the gateway.
    pub acknowledged: u64,
    /// Refused one by one; see [`crate::Rejected`].
    pub rejected: u64,
    /// In batches refused for good or given up on.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    acknowledged: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// A batch handed to the workers.
struct Sealed {
    batch: Batch,
    /// Its spool file, if spooling.
    spool_id: Option<u64>,
    /// Buffer bytes to give back when it is done (none for batches read from the spool).
    permits: usize,
}

/// The batch being filled, and where sealed ones go.
struct State {
    open: BytesMut,
    open_events: usize,
    open_since: Option<Instant>,
    spool: Option<Spool>,
    /// `None` once closed.
    to_workers: Option<mpsc::UnboundedSender<Sealed>>,
}

struct Shared {
    config: Config,
    state: Mutex<State>,
    /// One permit per buffered byte, waiting or in flight: the memory bound.
    buffer: Semaphore,
    /// Batches sealed and not yet done; `flush` waits for zero.
    pending: watch::Sender<usize>,
    counters: Counters,
    on_outcome: Option<OnOutcome>,
}

/// Batches, compresses and delivers events for one store. See the crate documentation
/// for a guide.
///
/// Share it between tasks behind an `Arc`; call [`Publisher::close`] before exit, or the
/// events not yet delivered are lost (unless spooled).
pub struct Publisher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    linger: JoinHandle<()>,
}

impl Publisher {
    /// Starts a publisher; with a spool, first queues what a previous run left there.
    pub fn start(config: Config) -> Result<Publisher, ConfigError> {
        Publisher::start_with(config, None)
    }

    /// Like [`Publisher::start`], calling `on_outcome` once per batch delivered or failed.
    pub fn with_outcomes(
        config: Config,
        on_outcome: impl Fn(&Batch, &Result<Ack, SendError>) + Send + Sync + 'static,
    ) -> Result<Publisher, ConfigError> {
        Publisher::start_with(config, Some(Arc::new(on_outcome)))
    }

    fn start_with(config: Config, on_outcome: Option<OnOutcome>) -> Result<Publisher, ConfigError> {
        config.validate()?;
        let channel = config.channel()?;
        let (spool, recovered) = match &config.spool {
            Some(s) => {
                let (spool, recovered) =
                    Spool::open(&s.dir, s.max_bytes).map_err(|source| ConfigError::Spool {
                        path: s.dir.display().to_string(),
                        source,
                    })?;
                (Some(spool), recovered)
            }
            None => (None, Vec::new()),
        };
        let (to_workers, from_publish) = mpsc::unbounded_channel();
        let counters = Counters::default();
        let pending = watch::Sender::new(recovered.len());
        for r in recovered {
            counters
                .published
                .fetch_add(r.batch.len() as u64, Ordering::Relaxed);
            let _ = to_workers.send(Sealed {
                batch: r.batch,
                spool_id: Some(r.id),
                permits: 0,
            });
        }
        let shared = Arc::new(Shared {
            buffer: Semaphore::new(config.max_buffered_bytes),
            state: Mutex::new(State {
                open: BytesMut::new(),
                open_events: 0,
                open_since: None,
                spool,
                to_workers: Some(to_workers),
            }),
            pending,
            counters,
            on_outcome,
            config,
        });
        let from_publish = Arc::new(tokio::sync::Mutex::new(from_publish));
        let client = Client::new(channel, &shared.config.token, shared.config.send.clone())?;
        let mut workers = Vec::new();
        for _ in 0..shared.config.concurrency {
            workers.push(tokio::spawn(work(
                shared.clone(),
                client.with_token(&shared.config.token)?,
                from_publish.clone(),
            )));
        }
        let linger = tokio::spawn(linger(Arc::downgrade(&shared)));
        Ok(Publisher {
            shared,
            workers,
            linger,
        })
    }

    /// Takes one event. Returns once it is in the buffer (and, with a spool, on disk);
    /// delivery happens in the background. When the buffer is full this waits or fails,
    /// as [`Config::when_full`] says.
    pub async fn publish(&self, event: &Event) -> Result<(), PublishError> {
        let config = &self.shared.config;
        let event_len = event.encoded_len();
        let len = framed_len_of(event_len);
        let over = if event_len > pipeline::validate::MAX_EVENT_BYTES {
            Some((event_len, pipeline::validate::MAX_EVENT_BYTES))
        } else if len > config.max_batch_bytes {
            Some((len, config.max_batch_bytes))
        } else {
            None
        };
        if let Some((bytes, max_bytes)) = over {
            return Err(PublishError::EventTooLarge {
                event_id: event.event_id.clone(),
                bytes,
                max_bytes,
            });
        }
        let permits = u32::try_from(len).map_err(|_| PublishError::BufferFull {
            max_bytes: config.max_buffered_bytes,
        })?;
        let permit = match config.when_full {
            WhenFull::Wait => self.shared.buffer.acquire_many(permits).await.ok(),
            WhenFull::Error => match self.shared.buffer.try_acquire_many(permits) {
                Ok(p) => Some(p),
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    return Err(PublishError::BufferFull {
                        max_bytes: config.max_buffered_bytes,
                    });
                }
                Err(tokio::sync::TryAcquireError::Closed) => None,
            },
        };
        let Some(permit) = permit else {
            return Err(PublishError::Closed);
        };
        let mut framed = Vec::with_capacity(len);
        frame(event, &mut framed);

        let mut state = self.shared.state.lock().expect("publisher state");
        if state.to_workers.is_none() {
            return Err(PublishError::Closed);
        }
        if state.open.len() + len > config.max_batch_bytes {
            self.shared.seal(&mut state)?;
        }
        if let Some(spool) = &mut state.spool {
            spool.append(&framed)?;
        }
        // from here on the bytes are the open batch's; the permits come back when it is done
        permit.forget();
        state.open.extend_from_slice(&framed);
        state.open_events += 1;
        state.open_since.get_or_insert_with(Instant::now);
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        if state.open_events >= config.max_batch_events
            || state.open.len() >= config.max_batch_bytes
        {
            self.shared.seal(&mut state)?;
        }
        Ok(())
    }

    /// Sends the open batch now and waits until every batch sealed so far is delivered or
    /// failed.
    pub async fn flush(&self) -> Result<Stats, PublishError> {
        {
            let mut state = self.shared.state.lock().expect("publisher state");
            self.shared.seal(&mut state)?;
        }
        let mut pending = self.shared.pending.subscribe();
        // the sender lives in `shared`, which we hold, so this cannot fail
        let _ = pending.wait_for(|n| *n == 0).await;
        Ok(self.stats())
    }

    /// Flushes, then stops the workers. Events published concurrently with `close` may be
    /// refused with [`PublishError::Closed`].
    pub async fn close(mut self) -> Result<Stats, PublishError> {
        let sealed = {
            let mut state = self.shared.state.lock().expect("publisher state");
            let sealed = self.shared.seal(&mut state);
            state.to_workers = None;
            sealed
        };
        self.shared.buffer.close();
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        sealed?;
        Ok(self.stats())
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            published: c.published.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.linger.abort();
        for worker in &self.workers {
            worker.abort();
        }
    }
}

impl Shared {
    /// Hands the open batch to the workers, if it has events.
    fn seal(&self, state: &mut State) -> Result<(), PublishError> {
        if state.open_events == 0 {
            return Ok(());
        }
        let spool_id = match &mut state.spool {
            Some(spool) => spool.seal()?,
            None => None,
        };
        let bytes = std::mem::take(&mut state.open).freeze();
        let permits = bytes.len();
        let batch = Batch::from_encoded(bytes, std::mem::take(&mut state.open_events));
        state.open_since = None;
        let Some(to_workers) = &state.to_workers else {
            return Err(PublishError::Closed);
        };
        self.pending.send_modify(|n| *n += 1);
        // the workers outlive every sender; a send fails only when they were aborted
        let _ = to_workers.send(Sealed {
            batch,
            spool_id,
            permits,
        });
        Ok(())
    }

    /// Books a batch's outcome: counters, spool, buffer, callback.
    fn done(&self, sealed: Sealed, result: Result<Ack, SendError>) {
        let c = &self.counters;
        let events = sealed.batch.len() as u64;
        let bytes = sealed.batch.encoded_len() as u64;
        match &result {
            Ok(ack) => {
                c.acknowledged
                    .fetch_add(u64::from(ack.accepted), Ordering::Relaxed);
                c.rejected
                    .fetch_add(ack.rejected.len() as u64, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::warn!(events, error = %err, "batch not delivered");
                c.failed.fetch_add(events, Ordering::Relaxed);
            }
        }
        if let Some(id) = sealed.spool_id {
            let mut state = self.state.lock().expect("publisher state");
            if let Some(spool) = &mut state.spool {
                let booked = match &result {
                    Ok(_) => spool.delivered(id, bytes),
                    Err(SendError::Refused { .. }) => spool.refused(id, bytes),
                    // left in the spool: the next start sends it again
                    Err(SendError::GaveUp { .. }) => Ok(()),
                };
                if let Err(e) = booked {
                    tracing::error!(error = %e, id, "updating the spool");
                }
            }
        }
        if let Some(on_outcome) = &self.on_outcome {
            on_outcome(&sealed.batch, &result);
        }
        self.buffer.add_permits(sealed.permits);
        self.pending.send_modify(|n| *n -= 1);
    }
}

/// A worker: delivers sealed batches one at a time until the publisher closes.
async fn work(
    shared: Arc<Shared>,
    mut client: Client,
    batches: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Sealed>>>,
) {
    loop {
        let next = { batches.lock().await.recv().await };
        let Some(sealed) = next else { return };
        let result = client.send(&sealed.batch).await;
        shared.done(sealed, result);
    }
}

/// Seals the open batch once its first event has waited `linger`.
async fn linger(shared: std::sync::Weak<Shared>) {
    let Some(period) = shared.upgrade().map(|s| s.config.linger) else {
        return;
    };
    let mut tick = tokio::time::interval((period / 2).max(std::time::Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state.lock().expect("publisher state");
        if state.open_since.is_some_and(|t| t.elapsed() >= period)
            && let Err(e) = shared.seal(&mut state)
        {
            tracing::warn!(error = %e, "sealing a lingering batch");
        }
    }
}
