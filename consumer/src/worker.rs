//! The consumer's work as a public step function returning an [`Outcome`], and the loop
//! around it, which only loops.
//!
//! Invariant: an entry is acknowledged only after every row it produced is confirmed by
//! ClickHouse, or after it was dead-lettered (copied to `<stream>:dead` and recorded in
//! `rejected_events`). A failure anywhere before the `XACK` leaves it pending, to be read
//! again.

use std::{
    ops::Range,
    time::{Duration, Instant},
};

use pipeline::retry::{Backoff, Class, classify_clickhouse, classify_redis, fails_over};
use tracing::Instrument;

use crate::{
    batch::{Batch, Limits, RawEntry},
    config::Settings,
    error::Error,
    isolate::{Isolated, crash_parts, isolate},
    sink::{Load, Prepared, Present, Sink, Written},
    source::Source,
};

/// Trimming costs a few round trips; once a second keeps the stream short enough.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Whether an insert error means ClickHouse refuses the data, so splitting the batch can
/// find the entries it refuses. Every other class keeps the batch and retries: a missing
/// schema, say, would otherwise dead-letter every entry (see [`pipeline::retry`]).
fn refuses_data(e: &clickhouse::error::Error) -> bool {
    classify_clickhouse(e) == Class::BadData
}

/// Whether Redis refused a write because it is full (`maxmemory` with `noeviction`): the
/// consumer's own bookkeeping writes are then skipped, never its loads, acks and trims,
/// which are what free the memory (see [`pipeline::retry::Class::Full`]).
fn redis_full(e: &fred::error::Error) -> bool {
    classify_redis(e) == Class::Full
}

/// Applies the ClickHouse migrations (on every shard of a ClickHouse cluster).
pub async fn migrate(settings: &Settings) -> Result<(), Error> {
    pipeline::schema::migrate_configured(&settings.clickhouse)
        .await
        .map_err(Error::Migrate)?;
    Ok(())
}

/// Loads every shard of the stream until `shutdown` completes: one [`Worker`] per shard,
/// each with its own batch, all in this process. Every consumer of the group reads every
/// shard, so starting or stopping consumers rebalances by itself: the group hands each
/// entry to one of them, and a stopped one's pending entries are claimed after
/// `CONSUMER_CLAIM_IDLE`.
pub async fn run(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> Result<(), Error> {
    use futures::FutureExt as _;
    migrate(settings).await?;
    let shards = settings.redis.shards();
    let mut workers = Vec::with_capacity(shards.len());
    for key in shards.keys() {
        workers.push(Worker::open_shard(settings, key).await?);
    }
    let shutdown = shutdown.shared();
    let runs = workers
        .into_iter()
        .map(|worker| worker.run(shutdown.clone(), grace));
    futures::future::try_join_all(runs).await?;
    Ok(())
}

/// How loading one part of a batch ended, short of an error that ends the worker.
enum Loaded {
    /// In ClickHouse (or dead-lettered) and acknowledged.
    Acknowledged(Written),
    /// A retriable ClickHouse error: nothing of the part is acknowledged.
    Failed(clickhouse::error::Error),
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read this many entries into the batch.
    Read(usize),
    /// Took over this many entries that a dead consumer of the group left pending.
    Claimed(usize),
    /// Flushed the batch to ClickHouse and acknowledged it.
    Flushed(Written),
    /// A flush failed with a retriable error; the batch is kept and nothing new is read
    /// until it succeeds, so memory stays bounded.
    Retrying { attempt: u32, error: String },
    /// Nothing to read within the wait.
    Idle,
}

/// One consumer: a source, a sink and the batch between them.
pub struct Worker {
    source: Source,
    sink: Sink,
    batch: Batch,
    read_count: u64,
    backoff: Backoff,
    /// Consecutive failed flushes of the current batch.
    attempt: u32,
    /// Consecutive failed Redis commands (reads, load records, steps): the backoff's attempt
    /// before the next one ([`Worker::redis_failed`]).
    redis_failures: u32,
    /// The current batch's already loaded events, looked up once before its first attempt
    /// so that every attempt sends the same rows ([`Sink::present_in`]); `None` until then.
    present: Option<Present>,
    /// The rows of the batch's entries, prepared as they were read (`Sink::prepare_entry`),
    /// whose batches were then let go: `Some` while every entry of the batch is prepared.
    prepared: Option<Prepared>,
    /// Entries of the batch let go their batch, which must be read again
    /// ([`Source::reread`]) before they are loaded otherwise than as prepared.
    reread_needed: bool,
    /// Deliveries after which an entry is dead-lettered instead of loaded.
    max_deliveries: u64,
    /// Idle time after which another consumer's pending entries are taken over.
    claim_idle: Duration,
    claim_every: Duration,
    next_claim: Instant,
    next_trim: Instant,
}

impl Worker {
    /// Applies the migrations, then connects a worker for the first shard of the stream
    /// (the whole stream unless it is sharded).
    pub async fn connect(settings: &Settings) -> Result<Worker, Error> {
        migrate(settings).await?;
        Worker::open(settings).await
    }

    /// Connects to Redis, and to ClickHouse lazily, without applying the migrations: a
    /// worker for the first shard.
    pub async fn open(settings: &Settings) -> Result<Worker, Error> {
        Worker::open_shard(settings, settings.redis.shards().key(0)).await
    }

    /// Like [`Worker::open`], for the stream (shard) `key`.
    pub async fn open_shard(settings: &Settings, key: &str) -> Result<Worker, Error> {
        let ch = &settings.clickhouse;
        let source = Source::connect(&settings.redis, &settings.group, key)
            .await
            .map_err(Error::Connect)?;
        // Each shard's worker holds a batch: the byte limit is the process's, shared out.
        let shards = settings.redis.shards().len();
        let sink = Sink::new(ch.clients(), ch.clickhouse_compression)
            .with_insert_timeout(settings.recovery.insert_timeout)
            .with_sorted_inserts(settings.batch.sorted_inserts);
        Ok(Worker {
            source,
            sink,
            batch: Batch::new(Limits {
                max_rows: settings.batch.batch_rows,
                max_bytes: settings.batch.batch_bytes / shards,
                max_age: settings.batch.batch_age,
            }),
            read_count: settings.batch.read_count,
            backoff: Backoff::default(),
            attempt: 0,
            redis_failures: 0,
            present: None,
            prepared: None,
            reread_needed: false,
            max_deliveries: settings.recovery.max_deliveries,
            claim_idle: settings.recovery.claim_idle,
            claim_every: settings.recovery.claim_every(),
            next_claim: Instant::now(),
            next_trim: Instant::now(),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Does one thing: flushes a due batch, takes over a dead consumer's entries, or reads
    /// more entries.
    pub async fn step(&mut self) -> Result<Outcome, Error> {
        let now = Instant::now();
        if self.batch.is_due(now) {
            return self.flush().await;
        }
        // Only with an empty batch: this consumer's own unflushed entries are idle too.
        if self.batch.is_empty() && now >= self.next_claim {
            self.next_claim = now + self.claim_every;
            let count = self.batch.read_budget(self.read_count);
            match self.source.claim(count, self.claim_idle).await {
                Ok(entries) if !entries.is_empty() => {
                    let n = entries.len();
                    for entry in entries {
                        self.push_raw(entry);
                    }
                    // a changed batch is looked up again
                    self.present = None;
                    // They waited `claim_idle` already: load them now, and claim the
                    // rest of a dead consumer's backlog right after.
                    self.batch.flush_soon();
                    if self.source.claim_unfinished() {
                        self.next_claim = now;
                    }
                    return Ok(Outcome::Claimed(n));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming idle entries failed"),
            }
        }
        let wait = self.batch.read_wait(now);
        let count = self.batch.read_budget(self.read_count);
        let entries = match self.source.read(count, wait).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, failures = self.redis_failures, "reading the stream failed; retrying");
                self.redis_failed().await;
                return Ok(Outcome::Idle);
            }
        };
        self.redis_failures = 0;
        if entries.is_empty() {
            // caught up: a backlog's batch is due by its rows again
            self.batch.push_read(entries, count);
            // Idle, so no flush trims: trim here, so that entries another group acknowledged
            // after the last flush are freed. Otherwise a stream that filled Redis stays full
            // once loads stop (the gateway refuses writes above its memory limit, so none
            // come), though every group has read it.
            self.trim_if_due().await;
            return Ok(Outcome::Idle);
        }
        let n = entries.len();
        self.push_read(entries, count).await;
        self.present = None;
        Ok(Outcome::Read(n))
    }

    /// Adds the entries of one read that asked for `asked` to the batch (see
    /// [`Batch::push_read`]). With sorted inserts, each entry read for the first time has
    /// its rows prepared at once, into the inserts of the batch's flush
    /// (`Sink::prepare_entry`), and its batch is let go: the batch then holds its rows once,
    /// not its entries' bytes beside them, and a larger batch fits the same memory (#19).
    /// Anything else (a redelivered entry, an entry with interrupted loads) is kept whole,
    /// and makes the whole batch load as kept: the entries already let go are read again
    /// first ([`Worker::flush`]).
    async fn push_read(&mut self, entries: Vec<RawEntry>, asked: u64) {
        self.batch.note_read(entries.len(), asked);
        for mut entry in entries {
            let fresh = entry.deliveries <= 1 && entry.attempts == 0;
            if !(fresh && self.sink.prepares())
                || (self.prepared.is_none() && !self.batch.is_empty())
            {
                self.push_raw(entry);
                continue;
            }
            let prepared = match &mut self.prepared {
                Some(prepared) => prepared,
                None => self.prepared.insert(self.sink.prepare()),
            };
            debug_assert_eq!(prepared.entries(), self.batch.len());
            let size = entry.size();
            let index = prepared.entries();
            match self.sink.prepare_entry(prepared, &entry).await {
                // an undecodable entry keeps its bytes for its dead letter
                Ok(()) if !prepared.is_dead(index) => entry.fields.batch = None,
                Ok(()) => {}
                Err(e) => {
                    // not expected: preparing sends nothing
                    tracing::warn!(error = %e, "preparing an entry's rows failed; the batch loads as read");
                    self.abandon_prepared();
                }
            }
            self.batch.push_sized(entry, size);
        }
    }

    /// Adds an entry as it is: the batch then loads as kept, not prepared.
    fn push_raw(&mut self, entry: RawEntry) {
        self.abandon_prepared();
        self.batch.push(entry);
    }

    /// Reads again the batches the batch's entries let go ([`Source::reread`]), into the
    /// batch's memory.
    async fn reread(&mut self) -> Result<(), fred::error::Error> {
        let found_again = self.source.reread(self.batch.entries_mut()).await?;
        self.batch.copy_in(&found_again);
        self.reread_needed = false;
        Ok(())
    }

    /// Drops the prepared rows; the entries whose batches were let go are read again before
    /// the batch loads.
    fn abandon_prepared(&mut self) {
        if self.prepared.take().is_some() {
            self.reread_needed = true;
        }
    }

    /// Writes the batch to ClickHouse, dead-letters what cannot be loaded, then
    /// acknowledges every entry of the batch.
    ///
    /// A permanent ClickHouse error splits the batch until the refused entries are found;
    /// they are dead-lettered and the rest loads. Any other error keeps the whole batch for
    /// the next attempt.
    pub async fn flush(&mut self) -> Result<Outcome, Error> {
        if self.batch.is_empty() {
            return Ok(Outcome::Idle);
        }
        // One CONSUMER span per batch, linked to the PRODUCER span of every entry: a batch
        // has many producers, so they are links rather than parents.
        let traceparents: Vec<&str> = self
            .batch
            .entries()
            .iter()
            .filter_map(|e| e.fields.traceparent_str())
            .collect();
        let span = pipeline::trace::consumer_batch_span(
            self.source.key(),
            self.source.group(),
            self.batch.len(),
            traceparents,
        );
        self.flush_batch().instrument(span).await
    }

    /// The body of [`Worker::flush`], inside the batch span: the batch in parts (one part
    /// unless some entries' loads were interrupted before, see
    /// [`crate::isolate::crash_parts`]), each loaded and acknowledged in turn.
    async fn flush_batch(&mut self) -> Result<Outcome, Error> {
        let started = Instant::now();
        if self.reread_needed {
            match self.reread().await {
                Ok(()) => {}
                Err(e) => {
                    // Nothing was loaded: the batch stays for the next attempt.
                    tracing::warn!(error = %e, failures = self.redis_failures, "reading the batch's entries again failed; retrying");
                    let attempt = self.redis_failures;
                    self.redis_failed().await;
                    return Ok(Outcome::Retrying {
                        attempt,
                        error: e.to_string(),
                    });
                }
            }
        }
        self.batch.suspects_first();
        let attempts: Vec<u64> = self.batch.entries().iter().map(|e| e.attempts).collect();
        let mut written = Written::default();
        let mut done = 0;
        for part in crash_parts(&attempts, self.max_deliveries) {
            let entries = &self.batch.entries()[part.clone()];
            if let Err(e) = self.source.begin_load(entries).await {
                if redis_full(&e) {
                    // The count only finds entries that crash the consumer; refusing to
                    // load without it would keep Redis full for ever (nothing acknowledged,
                    // nothing trimmed). Load, acknowledge and trim: that frees the memory.
                    tracing::warn!(error = %e, "redis is full: loading without counting the attempt");
                    metrics::counter!("consumer_redis_full_skips_total", "what" => "attempts")
                        .increment(1);
                } else {
                    // Nothing was loaded: the part stays in the batch for the next attempt.
                    tracing::warn!(error = %e, failures = self.redis_failures, "recording the load failed; retrying");
                    self.batch.remove_first(done);
                    let attempt = self.redis_failures;
                    self.redis_failed().await;
                    return Ok(Outcome::Retrying {
                        attempt,
                        error: e.to_string(),
                    });
                }
            } else {
                self.redis_failures = 0;
            }
            match self.load(part.clone()).await {
                Ok(Loaded::Acknowledged(w)) => {
                    written.add(&w);
                    done = part.end;
                }
                Ok(Loaded::Failed(e)) => {
                    self.batch.remove_first(done);
                    return Ok(self.retrying(e).await);
                }
                Err(e) => {
                    // The entries of earlier parts are acknowledged; what is left stays
                    // pending and is read again.
                    self.batch.remove_first(done);
                    return Err(e);
                }
            }
        }
        self.batch.take();
        self.present = None;
        self.attempt = 0;
        self.trim_if_due().await;
        let insert_seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("consumer_insert_duration_seconds").record(insert_seconds);
        metrics::histogram!("consumer_batch_entries").record(written.entries as f64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "commerce_events")
            .increment(written.commerce as u64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "probe_results")
            .increment(written.probes as u64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "rejected_events")
            .increment(written.rejected as u64);
        metrics::counter!("consumer_dead_letters_total").increment(written.dead_letters as u64);
        metrics::counter!("consumer_events_skipped_total").increment(written.skipped as u64);
        tracing::debug!(?written, insert_seconds, "flushed batch");
        Ok(Outcome::Flushed(written))
    }

    /// Writes one part of the batch to ClickHouse, dead-letters what cannot be loaded,
    /// then acknowledges every entry of the part.
    ///
    /// A permanent ClickHouse error splits the part until the refused entries are found;
    /// they are dead-lettered and the rest loads. Any other error is returned as
    /// [`Loaded::Failed`], for the caller to keep the part and retry.
    async fn load(&mut self, part: Range<usize>) -> Result<Loaded, Error> {
        if let Some(prepared) = self.prepared.take() {
            debug_assert!(part == (0..self.batch.len()) && prepared.entries() == part.len());
            match self.sink.send_prepared(prepared).await {
                Ok(load) => {
                    let loaded = Isolated {
                        loaded: vec![(0..part.len(), load)],
                        refused: Vec::new(),
                    };
                    return self.loaded(part, loaded).await;
                }
                Err(e) => {
                    // What was let go is read again, then loaded as the entries are, by
                    // the same rows: whole for any error (the next attempt), in parts for
                    // an error that refuses data (now).
                    self.reread_needed = true;
                    if !refuses_data(&e) {
                        self.end_failed_load(&self.batch.entries()[part]).await;
                        return Ok(Loaded::Failed(e));
                    }
                    if let Err(reread) = self.reread().await {
                        tracing::warn!(error = %reread, "reading the batch's entries again failed");
                        self.end_failed_load(&self.batch.entries()[part]).await;
                        return Ok(Loaded::Failed(e));
                    }
                }
            }
        }
        // After `begin_load`: a lookup that hangs and gets the consumer killed counts as an
        // interrupted load of these entries, like the insert would.
        if self.present.is_none() {
            self.present = Some(self.sink.present_in(self.batch.entries()).await);
        }
        let entries = &self.batch.entries()[part.clone()];
        let (sink, max_deliveries) = (&self.sink, self.max_deliveries);
        let present = self
            .present
            .as_ref()
            .expect("looked up before the first part");
        let written = isolate(
            entries.len(),
            move |part| sink.write(&entries[part], max_deliveries, present),
            refuses_data,
        )
        .await;
        let isolated = match written {
            Ok(isolated) => isolated,
            Err(e) => {
                self.end_failed_load(entries).await;
                return Ok(Loaded::Failed(e));
            }
        };
        self.loaded(part, isolated).await
    }

    /// The rest of [`Worker::load`] once the part's rows are confirmed: the rows of entries
    /// ClickHouse refused, the dead letters, then the acknowledgement.
    async fn loaded(
        &mut self,
        part: Range<usize>,
        isolated: Isolated<Load, clickhouse::error::Error>,
    ) -> Result<Loaded, Error> {
        let entries = &self.batch.entries()[part];
        let mut written = Written::default();
        let mut dead: Vec<(&RawEntry, String)> = Vec::new();
        for (part, load) in isolated.loaded {
            written.add(&load.written);
            dead.extend(
                load.dead
                    .into_iter()
                    .map(|(i, reason)| (&entries[part.start + i], reason)),
            );
        }
        let refused: Vec<(&RawEntry, String)> = isolated
            .refused
            .into_iter()
            .map(|(i, e)| (&entries[i], format!("clickhouse refused the entry: {e}")))
            .collect();
        if !refused.is_empty() {
            let rows: Vec<(&RawEntry, &str)> =
                refused.iter().map(|(e, r)| (*e, r.as_str())).collect();
            if let Err(e) = self.sink.write_rejected(&rows).await {
                self.end_failed_load(entries).await;
                return Ok(Loaded::Failed(e));
            }
            written.rejected += refused.len();
            dead.extend(refused);
        }
        written.entries = entries.len();
        written.dead_letters = dead.len();
        if !dead.is_empty() {
            for (entry, reason) in &dead {
                tracing::warn!(
                    id = %entry.id,
                    deliveries = entry.deliveries,
                    attempts = entry.attempts,
                    %reason,
                    "dead-lettering entry"
                );
            }
            let dead: Vec<(&RawEntry, &str)> = dead.iter().map(|(e, r)| (*e, r.as_str())).collect();
            // Before the ack: a crash in between dead-letters the entry again, which is
            // better than losing it.
            match self.source.dead_letter(&dead).await {
                Ok(()) => {}
                // Each one's rejected_events row (reason, raw batch, stream entry id) is
                // written already and confirmed: the copy in `<stream>:dead` is for replay.
                // Without it the entry is still on record; keeping the entries pending
                // instead would block trimming below them and keep Redis full.
                Err(e) if redis_full(&e) => {
                    tracing::warn!(
                        error = %e,
                        entries = dead.len(),
                        "redis is full: dead letters kept in rejected_events only"
                    );
                    metrics::counter!("consumer_redis_full_skips_total", "what" => "dead_letters")
                        .increment(dead.len() as u64);
                }
                Err(e) => return Err(Error::DeadLetter(e)),
            }
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        // If the ack fails, the entries stay pending and are loaded again: the
        // ReplacingMergeTree tables and FINAL queries make that a no-op for results.
        self.source.ack(&ids).await.map_err(Error::Ack)?;
        record_load_delay(entries);
        Ok(Loaded::Acknowledged(written))
    }

    /// Best effort: a count left one too high only makes the entry's parts smaller sooner.
    async fn end_failed_load(&self, entries: &[RawEntry]) {
        if let Err(e) = self.source.end_failed_load(entries).await {
            tracing::warn!(error = %e, "taking back the load's record failed");
        }
    }

    /// Keeps the batch after a failed flush and waits the backoff before the next attempt.
    async fn retrying(&mut self, e: clickhouse::error::Error) -> Outcome {
        let class = classify_clickhouse(&e);
        let attempt = self.attempt;
        self.attempt += 1;
        metrics::counter!("consumer_insert_failures_total").increment(1);
        tracing::warn!(error = %e, ?class, attempt, "insert failed; keeping the batch");
        // The next attempt goes to the next replica: the same rows, so if this one did
        // write them, the other deduplicates the block (pipeline::retry::fails_over).
        if fails_over(&e) {
            let replica = self.sink.fail_over();
            tracing::info!(replica, "loading through the next clickhouse url");
            metrics::counter!("consumer_clickhouse_failovers_total").increment(1);
        }
        let ids: Vec<String> = self.batch.entries().iter().map(|e| e.id.clone()).collect();
        if let Err(e) = self.source.keep_alive(&ids).await {
            tracing::warn!(error = %e, "refreshing held entries failed");
        }
        tokio::time::sleep(self.backoff.delay(attempt, rand::random())).await;
        Outcome::Retrying {
            attempt,
            error: e.to_string(),
        }
    }

    /// Waits after a failed Redis command, longer after each consecutive failure (the
    /// backoff's cap doubles up to 10 s), until a read or a load record succeeds again. A
    /// Redis that refuses writes for a while (`MISCONF` once its disk is full, `OOM`,
    /// `NOREPLICAS`) or cannot be reached then costs a retry and a warning every few
    /// seconds, not twenty a second (test `a_redis_that_refuses_writes_is_retried_ever_more_slowly`).
    async fn redis_failed(&mut self) {
        let attempt = self.redis_failures;
        self.redis_failures = self.redis_failures.saturating_add(1);
        tokio::time::sleep(self.backoff.delay(attempt, rand::random())).await;
    }

    /// Trims the stream at most once per [`TRIM_EVERY`], after a flush and on an idle read
    /// (test `an_idle_consumer_trims_what_a_slower_group_read_after_its_last_load`). A
    /// failure only delays trimming.
    async fn trim_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_trim {
            return;
        }
        self.next_trim = now + TRIM_EVERY;
        if let Err(e) = self.source.trim().await {
            tracing::warn!(error = %e, "trimming the stream failed");
        }
    }

    /// Steps until `shutdown` completes, then flushes what was read within `grace`; what
    /// cannot be flushed stays pending and is redelivered.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                outcome = self.step() => match outcome {
                    Ok(_) => {}
                    Err(e) if e.ends_worker() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, failures = self.redis_failures, "step failed; retrying");
                        self.redis_failed().await;
                    }
                },
            }
        }
        if !self.batch.is_empty() {
            match tokio::time::timeout(grace, self.flush()).await {
                Ok(Ok(Outcome::Flushed(w))) => {
                    tracing::info!(entries = w.entries, "flushed the last batch")
                }
                _ => tracing::warn!(
                    entries = self.batch.len(),
                    "abandoned the last batch; it stays pending"
                ),
            }
        }
        Ok(())
    }
}

/// `consumer_load_delay_seconds`, one observation per acknowledged entry: from the gateway's
/// XADD (the milliseconds of the entry id, Redis's clock) to the acknowledgement, which
/// follows ClickHouse's confirmation. This is the freshness objective's metric, received →
/// queryable, that the `FreshnessObjectiveMissed` alert reads; a skew between Redis's and the
/// consumer's clocks shifts it by as much.
fn record_load_delay(entries: &[RawEntry]) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let histogram = metrics::histogram!("consumer_load_delay_seconds");
    for ms in entries.iter().filter_map(RawEntry::appended_at_ms) {
        histogram.record(now_ms.saturating_sub(ms) as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    #[test]
    fn only_data_errors_split_the_batch() {
        let bad = |t: &str| E::BadResponse(t.into());
        assert!(refuses_data(&bad(
            "Code: 6. DB::Exception: Cannot parse string"
        )));
        assert!(refuses_data(&bad("Code: 117. DB::Exception: bad data")));
        assert!(!refuses_data(&bad(
            "Code: 60. DB::Exception: Table x doesn't exist"
        )));
        assert!(!refuses_data(&bad(
            "Code: 81. DB::Exception: Database x doesn't exist"
        )));
        assert!(!refuses_data(&bad(
            "Code: 241. DB::Exception: Memory limit"
        )));
        assert!(!refuses_data(&E::Network("refused".into())));
    }
}
