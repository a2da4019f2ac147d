//! The archiver's work as a public step function returning an [`Outcome`], and the loop
//! around it, which only loops.
//!
//! Invariant: an entry is acknowledged only after every object of its segment is in S3 and
//! checked against the SHA-256 it was written with (`Store::put_verified`), and the days it
//! touched have manifests listing them. A segment's range is recorded in Redis (the hash
//! `<stream>:<group>:sealed`, field: the consumer's name) before its first upload; a
//! restarted archiver rebuilds exactly that range from its own pending entries, so a crash
//! anywhere rewrites the same keys with the same bytes: no gap, and no entry in two objects
//! of the same kind (test `a_crash_after_upload_rewrites_the_same_objects`).

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use consumer::{batch::RawEntry, config::GroupArgs, source::Source};
use fred::{interfaces::HashesInterface, types::Value};
use pipeline::retry::Backoff;
use tokio::sync::Mutex;

use crate::{
    config::Settings,
    error::Error,
    layout::SegmentName,
    manifest::{self, META_FIRST, META_LAST, META_ROWS, META_SHA256},
    segment::{Object, Open, Pushed},
    store::ArchiveStore,
};

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read this many entries into the open segment.
    Read(usize),
    /// Uploaded and verified this many objects of the sealed segment; its manifests and
    /// acknowledgement are the next step.
    Uploaded(usize),
    /// Wrote a segment's manifests and acknowledged its entries.
    Archived(Archived),
    /// Writing the sealed segment failed (S3 down, say); it is kept and retried, and nothing
    /// new is read until it is written.
    Retrying { attempt: u32, error: String },
    /// Nothing to read within the wait.
    Idle,
}

/// What one segment wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archived {
    pub name: String,
    pub entries: usize,
    pub objects: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The entries' bytes as the stream held them until they were acknowledged.
    pub stream_bytes: usize,
}

/// A segment whose range is recorded, on its way to S3.
struct Sealed {
    name: SegmentName,
    /// The entries' ids, acknowledged at the end.
    ids: Vec<String>,
    /// Their bytes in the stream.
    stream_bytes: usize,
    /// Encoded once, at sealing, then kept across retries.
    objects: Vec<Object>,
    /// Objects uploaded and verified so far.
    uploaded: usize,
    manifests_written: bool,
    acknowledged: bool,
    sealed_at: Instant,
}

/// The recorded range of a sealed segment: `<first> <last> <entries>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Marker {
    first: String,
    last: String,
    entries: usize,
}

impl Marker {
    fn parse(text: &str) -> Option<Marker> {
        let mut parts = text.split(' ');
        Some(Marker {
            first: parts.next()?.to_owned(),
            last: parts.next()?.to_owned(),
            entries: parts.next()?.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{} {} {}", self.first, self.last, self.entries)
    }
}

/// One archiver of one stream shard: a source, the open segment and the sealed one.
pub struct Worker {
    source: Source,
    store: ArchiveStore,
    /// The shard's index in segment names, when the stream is sharded.
    shard: Option<usize>,
    /// The hash of sealed ranges, one field per consumer of the group (commands the
    /// consumer's Redis user may run: `HSET`, `HMGET`, `HDEL`).
    marker_key: String,
    marker_field: String,
    open: Open,
    /// Entries read but not yet in the open segment: what was left of a read when the
    /// segment filled up.
    pending: VecDeque<RawEntry>,
    sealed: Option<Sealed>,
    roll_every: Duration,
    read_count: u64,
    /// A read's reply, at most about: see `consumer::source::entries_within`.
    read_bytes: usize,
    /// The largest entry read so far, in bytes, which sizes the next reads.
    largest_entry: usize,
    backoff: Backoff,
    attempt: u32,
    /// Consecutive failed reads: the backoff's attempt before the next one, so that a Redis
    /// that refuses writes (a read records the delivery) or cannot be reached is asked
    /// ever more slowly, up to every 10 s.
    read_failures: u32,
    /// Held while a day's manifest is rebuilt, so this process's shards never write a day's
    /// manifest from two listings at once.
    manifests: Arc<Mutex<()>>,
}

/// Archives every shard of the stream until `shutdown` completes: one [`Worker`] per shard.
pub async fn run(
    settings: &Settings,
    store: ArchiveStore,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    use futures::FutureExt as _;
    let shards = settings.redis.shards();
    let manifests = Arc::new(Mutex::new(()));
    let mut workers = Vec::with_capacity(shards.len());
    for index in 0..shards.len() {
        workers.push(Worker::open_shard(settings, store.clone(), index, manifests.clone()).await?);
    }
    let shutdown = shutdown.shared();
    let runs = workers.into_iter().map(|w| w.run(shutdown.clone()));
    futures::future::try_join_all(runs).await?;
    Ok(())
}

impl Worker {
    /// Connects the worker of shard `index`: creates the group if missing and, if the last
    /// run sealed a segment it did not finish, takes that segment back from its own pending
    /// entries.
    pub async fn open_shard(
        settings: &Settings,
        store: ArchiveStore,
        index: usize,
        manifests: Arc<Mutex<()>>,
    ) -> Result<Worker, Error> {
        let shards = settings.redis.shards();
        let key = shards.key(index);
        let group = GroupArgs {
            consumer_group: settings.group.archiver_group.clone(),
            consumer_name: settings.group.archiver_name.clone(),
            retain_groups: Vec::new(),
        };
        let source = Source::connect(&settings.redis, &group, key).await?;
        let mut worker = Worker {
            marker_key: format!("{key}:{}:sealed", group.consumer_group),
            marker_field: group.consumer_name.clone(),
            source,
            store,
            shard: (shards.len() > 1).then_some(index),
            open: Open::new(
                settings.segment.object_bytes,
                settings.segment.segment_bytes_per_shard(shards.len()),
            ),
            pending: VecDeque::new(),
            sealed: None,
            roll_every: settings.segment.roll_every.max(Duration::from_secs(1)),
            read_count: settings.segment.read_count,
            read_bytes: usize::try_from(settings.segment.read_bytes).unwrap_or(usize::MAX),
            largest_entry: 0,
            backoff: Backoff::default(),
            read_failures: 0,
            attempt: 0,
            manifests,
        };
        worker.recover().await?;
        Ok(worker)
    }

    /// Takes back the segment the last run sealed, if any. Its range's entries are this
    /// consumer's pending entries from `first` to `last`: all of them if the last run died
    /// before acknowledging (the segment is written again, to the same keys), none if it
    /// died after, and some only if it died between two `XACK` chunks (everything was
    /// uploaded, so the rest is acknowledged).
    async fn recover(&mut self) -> Result<(), Error> {
        let text: Vec<Option<String>> = self
            .source
            .client()
            .hmget(&self.marker_key, vec![self.marker_field.as_str()])
            .await?;
        let text = text.into_iter().next().flatten();
        let Some(marker) = text.as_deref().and_then(Marker::parse) else {
            return Ok(());
        };
        let last = consumer::source::parse_id(&marker.last);
        let mut held = Vec::new();
        loop {
            let entries = self.read(Duration::from_millis(1)).await?;
            if entries.is_empty() {
                break;
            }
            let mut beyond = false;
            for entry in entries {
                if consumer::source::parse_id(&entry.id) <= last {
                    held.push(entry);
                } else {
                    beyond = true;
                    self.pending.push_back(entry);
                }
            }
            if beyond {
                break;
            }
        }
        let whole =
            held.len() == marker.entries && held.first().is_some_and(|e| e.id == marker.first);
        if whole {
            tracing::info!(first = %marker.first, last = %marker.last, "rewriting the segment the last run sealed");
            let mut rebuilt = self.open.emptied();
            let period = self.period();
            for entry in held {
                rebuilt.push_unbounded(entry, period)?;
            }
            let name = SegmentName {
                first: marker.first,
                last: marker.last,
                shard: self.shard,
            };
            self.sealed = Some(Sealed::new(name, rebuilt).await?);
        } else {
            let ids: Vec<&str> = held.iter().map(|e| e.id.as_str()).collect();
            self.source.ack(&ids).await?;
            unmark(&self.source, &self.marker_key, &self.marker_field).await?;
        }
        Ok(())
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Reads the next entries, blocking up to `block` for new ones: at most `read_count`,
    /// and about `read_bytes` at the size of the largest entry read so far.
    async fn read(&mut self, block: Duration) -> Result<Vec<RawEntry>, fred::error::Error> {
        let count =
            consumer::source::entries_within(self.read_bytes, self.largest_entry, self.read_count);
        let entries = self.source.read(count, block).await?;
        let largest = entries.iter().map(RawEntry::size).max().unwrap_or(0);
        self.largest_entry = self.largest_entry.max(largest);
        Ok(entries)
    }

    /// The wall clock's roll period now.
    fn period(&self) -> u64 {
        now_secs() / self.roll_every.as_secs()
    }

    /// Does one thing: writes the sealed segment, seals a due or full one, or reads more
    /// entries into the open one.
    pub async fn step(&mut self) -> Result<Outcome, Error> {
        if self.sealed.is_some() {
            return Ok(self.finish().await);
        }
        let period = self.period();
        if self.open.is_due(period) {
            return self.seal().await;
        }
        if self.pending.is_empty() {
            // Wake up when the period ends, to seal what was read during it.
            let left = self.roll_every.as_secs() - now_secs() % self.roll_every.as_secs();
            let wait = Duration::from_secs(left).min(Duration::from_secs(5));
            match self.read(wait).await {
                Ok(entries) => {
                    self.read_failures = 0;
                    self.pending.extend(entries);
                }
                Err(e) => {
                    let failures = self.read_failures;
                    self.read_failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "reading the stream failed; retrying");
                    tokio::time::sleep(self.backoff.delay(failures, rand::random())).await;
                    return Ok(Outcome::Idle);
                }
            }
            if self.pending.is_empty() {
                return Ok(Outcome::Idle);
            }
        }
        let mut added = 0;
        while let Some(entry) = self.pending.pop_front() {
            match self.open.push(entry, period)? {
                Pushed::Added => added += 1,
                Pushed::Full(entry) => {
                    self.pending.push_front(entry);
                    return self.seal().await;
                }
            }
        }
        Ok(Outcome::Read(added))
    }

    /// Seals the open segment whatever its size or age (the tests' way to write what was
    /// read), and takes the first step of writing it.
    pub async fn archive_now(&mut self) -> Result<Outcome, Error> {
        if self.sealed.is_some() {
            return Ok(self.finish().await);
        }
        if self.open.is_empty() {
            return Ok(Outcome::Idle);
        }
        self.seal().await
    }

    /// Records the open segment's range, closes its files, then writes them.
    async fn seal(&mut self) -> Result<Outcome, Error> {
        let (Some(first), Some(last)) = (self.open.ids.first(), self.open.ids.last()) else {
            return Ok(Outcome::Idle);
        };
        let marker = Marker {
            first: first.clone(),
            last: last.clone(),
            entries: self.open.ids.len(),
        };
        let recorded: Result<Value, fred::error::Error> = self
            .source
            .client()
            .hset(
                &self.marker_key,
                vec![(self.marker_field.as_str(), marker.text())],
            )
            .await;
        if let Err(e) = recorded {
            return Ok(self.retrying(e.to_string()).await);
        }
        let name = SegmentName {
            first: marker.first,
            last: marker.last,
            shard: self.shard,
        };
        let next = self.open.emptied();
        let open = std::mem::replace(&mut self.open, next);
        self.sealed = Some(Sealed::new(name, open).await?);
        Ok(self.finish().await)
    }

    /// Writes the sealed segment in two steps: encode, upload and verify each object; then
    /// rewrite the manifests of its days, acknowledge its entries and drop its marker. Each
    /// stage is done once; a failure retries from the stage that failed.
    async fn finish(&mut self) -> Outcome {
        match self.write_sealed().await {
            Ok(archived) => {
                self.attempt = 0;
                archived
            }
            Err(e) => {
                metrics::counter!("archiver_write_failures_total").increment(1);
                self.retrying(e.to_string()).await
            }
        }
    }

    async fn write_sealed(&mut self) -> Result<Outcome, Error> {
        let Some(sealed) = self.sealed.as_mut() else {
            return Ok(Outcome::Idle);
        };
        let objects = &sealed.objects;
        while sealed.uploaded < objects.len() {
            let o = &objects[sealed.uploaded];
            let metadata = [
                (META_ROWS, o.rows.to_string()),
                (META_FIRST, sealed.name.first.clone()),
                (META_LAST, sealed.name.last.clone()),
                (META_SHA256, o.sha256.clone()),
            ];
            self.store
                .put_verified(
                    &o.key,
                    o.body.clone(),
                    &o.sha256,
                    "application/vnd.apache.parquet",
                    &metadata,
                )
                .await?;
            sealed.uploaded += 1;
            if sealed.uploaded == objects.len() {
                return Ok(Outcome::Uploaded(objects.len()));
            }
        }
        if !sealed.manifests_written {
            let mut dates: Vec<time::Date> = objects.iter().map(|o| o.partition.date).collect();
            dates.sort();
            dates.dedup();
            let _guard = self.manifests.lock().await;
            for date in dates {
                manifest::write(&self.store, date).await?;
            }
            sealed.manifests_written = true;
        }
        if !sealed.acknowledged {
            let ids: Vec<&str> = sealed.ids.iter().map(String::as_str).collect();
            self.source.ack(&ids).await?;
            sealed.acknowledged = true;
        }
        unmark(&self.source, &self.marker_key, &self.marker_field).await?;
        let archived = Archived {
            name: sealed.name.file_name(),
            entries: sealed.ids.len(),
            objects: objects.len(),
            rows: objects.iter().map(|o| o.rows).sum(),
            bytes: objects.iter().map(|o| o.body.len() as u64).sum(),
            stream_bytes: sealed.stream_bytes,
        };
        metrics::histogram!("archiver_segment_write_seconds")
            .record(sealed.sealed_at.elapsed().as_secs_f64());
        metrics::counter!("archiver_entries_archived_total").increment(archived.entries as u64);
        for o in objects {
            metrics::counter!("archiver_rows_archived_total", "kind" => o.partition.kind.as_str())
                .increment(o.rows);
        }
        metrics::counter!("archiver_objects_written_total").increment(archived.objects as u64);
        metrics::counter!("archiver_bytes_written_total").increment(archived.bytes);
        tracing::debug!(?archived, "archived a segment");
        self.sealed = None;
        Ok(Outcome::Archived(archived))
    }

    async fn retrying(&mut self, error: String) -> Outcome {
        self.attempt += 1;
        tracing::warn!(attempt = self.attempt, %error, "writing the segment failed; retrying");
        tokio::time::sleep(self.backoff.delay(self.attempt, rand::random())).await;
        Outcome::Retrying {
            attempt: self.attempt,
            error,
        }
    }

    /// Steps until `shutdown` completes. What is not written by then stays pending, and the
    /// next run writes it (a sealed segment to the same keys).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                outcome = self.step() => { outcome?; }
            }
        }
    }
}

impl Sealed {
    /// Closes the open segment's files (off the async threads: the last pages are
    /// compressed here).
    async fn new(name: SegmentName, open: Open) -> Result<Sealed, Error> {
        let named = name.clone();
        let stream_bytes = open.stream_bytes();
        let (ids, objects) = tokio::task::spawn_blocking(move || open.finish(&named))
            .await
            .expect("encoding never panics")?;
        Ok(Sealed {
            name,
            ids,
            stream_bytes,
            objects,
            uploaded: 0,
            manifests_written: false,
            acknowledged: false,
            sealed_at: Instant::now(),
        })
    }
}

/// Drops a consumer's record of a sealed range.
async fn unmark(source: &Source, key: &str, field: &str) -> Result<(), fred::error::Error> {
    let _: Value = source.client().hdel(key, field).await?;
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let m = Marker {
            first: "1-0".into(),
            last: "9-3".into(),
            entries: 7,
        };
        assert_eq!(Marker::parse(&m.text()), Some(m));
        assert_eq!(Marker::parse("1-0 9-3"), None);
    }
}
