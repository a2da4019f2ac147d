//! The consumer's work as a public step function returning an [`Outcome`], and the loop
//! around it, which only loops.
//!
//! Invariant: an entry is acknowledged only after every row it produced is confirmed by
//! ClickHouse. A failure anywhere before the `XACK` leaves it pending, to be read again.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use pipeline::retry::{Backoff, classify_clickhouse};

use crate::{
    batch::{Batch, Limits},
    config::Settings,
    sink::{Sink, Written},
    source::Source,
};

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read this many entries into the batch.
    Read(usize),
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
}

impl Worker {
    /// Connects to Redis and ClickHouse and applies the migrations.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Worker> {
        let ch = &settings.clickhouse;
        pipeline::schema::migrate(&ch.server_client(), &ch.clickhouse_database)
            .await
            .context("migrating clickhouse")?;
        let source = Source::connect(&settings.redis, &settings.group)
            .await
            .context("connecting to redis")?;
        let sink = Sink::new(ch.client(), pipeline::validate::Limits::default());
        Ok(Worker {
            source,
            sink,
            batch: Batch::new(Limits {
                max_rows: settings.batch.batch_rows,
                max_bytes: settings.batch.batch_bytes,
                max_age: settings.batch.batch_age,
            }),
            read_count: settings.batch.read_count,
            backoff: Backoff::default(),
            attempt: 0,
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Does one thing: flushes a due batch, or reads more entries.
    pub async fn step(&mut self) -> anyhow::Result<Outcome> {
        let now = Instant::now();
        if self.batch.is_due(now) {
            return self.flush().await;
        }
        let wait = self.batch.time_left(now);
        let entries = match self.source.read(self.read_count, wait).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "reading the stream failed; retrying");
                tokio::time::sleep(self.backoff.delay(0, rand::random())).await;
                return Ok(Outcome::Idle);
            }
        };
        if entries.is_empty() {
            return Ok(Outcome::Idle);
        }
        let n = entries.len();
        for entry in entries {
            self.batch.push(entry);
        }
        Ok(Outcome::Read(n))
    }

    /// Writes the batch to ClickHouse, then acknowledges it.
    pub async fn flush(&mut self) -> anyhow::Result<Outcome> {
        if self.batch.is_empty() {
            return Ok(Outcome::Idle);
        }
        let started = Instant::now();
        let written = match self.sink.write(self.batch.entries()).await {
            Ok(written) => written,
            Err(e) => {
                let class = classify_clickhouse(&e);
                let attempt = self.attempt;
                self.attempt += 1;
                metrics::counter!("consumer_insert_failures_total").increment(1);
                tracing::warn!(error = %e, ?class, attempt, "insert failed; keeping the batch");
                tokio::time::sleep(self.backoff.delay(attempt, rand::random())).await;
                return Ok(Outcome::Retrying {
                    attempt,
                    error: e.to_string(),
                });
            }
        };
        let insert_seconds = started.elapsed().as_secs_f64();
        let ids: Vec<String> = self.batch.entries().iter().map(|e| e.id.clone()).collect();
        // If the ack fails, the entries stay pending and are loaded again: the
        // ReplacingMergeTree tables and FINAL queries make that a no-op for results.
        self.source
            .ack(&ids)
            .await
            .context("acknowledging entries")?;
        self.batch.take();
        self.attempt = 0;
        metrics::histogram!("consumer_insert_duration_seconds").record(insert_seconds);
        metrics::histogram!("consumer_batch_entries").record(written.entries as f64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "commerce_events")
            .increment(written.commerce as u64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "probe_results")
            .increment(written.probes as u64);
        metrics::counter!("consumer_rows_inserted_total", "table" => "rejected_events")
            .increment(written.rejected as u64);
        tracing::debug!(?written, insert_seconds, "flushed batch");
        Ok(Outcome::Flushed(written))
    }

    /// Steps until `shutdown` completes, then flushes what was read within `grace`; what
    /// cannot be flushed stays pending and is redelivered.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                outcome = self.step() => { outcome?; }
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
