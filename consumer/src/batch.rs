//! Entries accumulated between flushes, with the limits that make a flush due.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pipeline::entry::Fields;

/// One stream entry as read, kept raw until the flush so a retried flush re-decodes it;
/// or, once its rows are prepared as it is read, without its batch, which is read again
/// from the stream if those rows do not load (`crate::worker::Worker`, `Source::reread`).
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The stream id, acknowledged after the flush.
    pub id: String,
    /// The entry's fields, raw: decoded at the flush, kept as written for a dead letter
    /// (its batch let go once prepared, and read again when needed).
    pub fields: Fields,
    /// How many times the group delivered this entry, this delivery included: 1 for a new
    /// entry, more for one re-read after a crash or taken over from a dead consumer.
    pub deliveries: u64,
    /// Loads of this entry that began and never ended: each is a consumer that died while
    /// flushing it. Unlike `deliveries`, a restart that merely re-reads the entry does not
    /// count, so crash loops unrelated to the entry do not dead-letter it.
    pub attempts: u64,
}

impl RawEntry {
    /// When Redis appended the entry: the milliseconds of its stream id (`ms-seq`), on
    /// Redis's clock.
    pub fn appended_at_ms(&self) -> Option<u64> {
        crate::source::parse_id(&self.id).map(|(ms, _)| ms)
    }

    /// The entry's size as batches and reads count it: its events' bytes and its id.
    pub fn size(&self) -> usize {
        self.fields.batch.as_ref().map_or(0, Bytes::len) + self.id.len()
    }
}

/// The limits of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Entries waiting for the next flush.
#[derive(Debug)]
pub struct Batch {
    limits: Limits,
    entries: Vec<RawEntry>,
    bytes: usize,
    /// Rows estimated from entry sizes until decoded; exact counting would decode twice.
    approx_rows: usize,
    oldest: Option<Instant>,
    /// Set by [`Batch::flush_soon`]: due now, whatever the limits say.
    urgent: bool,
    /// The last read brought all it asked for, so more is waiting: the row limit waits
    /// for the byte limit (see [`Batch::is_due`]).
    backlog: bool,
    /// Size of the largest entry seen, to size reads (see [`Batch::read_budget`]).
    largest_entry: usize,
    /// The entries' bytes, copied out of the Redis client's read buffer as they are
    /// pushed (see [`Batch::push`]): one allocation of about `max_bytes`, taken back
    /// whole for the next batch once every entry of this one is dropped; only the few
    /// bytes of the other fields for entries whose batch was let go once prepared.
    arena: BytesMut,
}

/// The least of the most entry bytes one read asks for (see [`Batch::read_bytes`]). The
/// Redis client reads a reply into a buffer that doubles as it fills and that it keeps
/// for the next reply, so a reply's size, not the batch's, sets that buffer's memory.
/// A few round trips per 64 MiB batch cost nothing measurable (docs/BENCHMARKS.md, "The
/// consumer's memory").
pub const MIN_READ_BYTES: usize = 8 << 20;

/// Every value of an entry's fields.
fn values(fields: &mut Fields) -> impl Iterator<Item = &mut Bytes> {
    [
        &mut fields.format,
        &mut fields.batch,
        &mut fields.traceparent,
    ]
    .into_iter()
    .flatten()
    .chain(fields.other.iter_mut().map(|(_, value)| value))
}

/// The least the arena grows by for entries without their batch
/// ([`Batch::push_sized`]): their ids' and trace contexts' few bytes.
const SMALL_ARENA_BYTES: usize = 64 * 1024;

/// Average encoded size of one event, to estimate rows without decoding.
const APPROX_EVENT_BYTES: usize = 120;

impl Batch {
    pub fn new(limits: Limits) -> Batch {
        Batch {
            limits,
            entries: Vec::new(),
            bytes: 0,
            approx_rows: 0,
            oldest: None,
            urgent: false,
            backlog: false,
            largest_entry: 0,
            arena: BytesMut::new(),
        }
    }

    /// The most entry bytes one read asks for: the row limit's worth, at least
    /// [`MIN_READ_BYTES`]. So a read that comes back full found at least a flush's worth of
    /// rows waiting, which is what [`Batch::is_due`] takes for a backlog.
    pub fn read_bytes(&self) -> usize {
        self.limits
            .max_rows
            .saturating_mul(APPROX_EVENT_BYTES)
            .max(MIN_READ_BYTES)
    }

    /// How many entries the next read may ask for, at most `count`: as many as fit in what
    /// is left of the byte limit, and in [`Batch::read_bytes`], at the size of the largest
    /// entry seen so far, or half the largest the gateway writes if that is more
    /// (`source::entries_within`), at least one. A reply of `CONSUMER_READ_COUNT` entries of
    /// 2,000 events each would be hundreds of MiB, read into memory before the byte limit
    /// could say no.
    pub fn read_budget(&self, count: u64) -> u64 {
        let left = self
            .limits
            .max_bytes
            .saturating_sub(self.bytes)
            .min(self.read_bytes());
        crate::source::entries_within(left, self.largest_entry, count)
    }

    /// Makes the batch due at once: for entries that already waited (taken over from a dead
    /// consumer), where waiting for more would only delay them further.
    pub fn flush_soon(&mut self) {
        self.urgent = !self.entries.is_empty();
    }

    /// Adds an entry, its fields copied into the batch's own memory, so that the entry no
    /// longer holds the reply it was read from: a reply's buffer is the Redis client's,
    /// which reuses it for the next reply only once nothing points into it. Without the
    /// copy a batch of many reads held every read's buffer, each up to twice its reply,
    /// and the consumer's peak RSS varied from run to run (docs/BENCHMARKS.md, "The
    /// consumer's memory").
    pub fn push(&mut self, entry: RawEntry) {
        let size = entry.size();
        self.push_sized(entry, size);
    }

    /// [`Batch::push`] of an entry of `size` as read ([`RawEntry::size`]), whose batch may
    /// have been let go since: its rows were prepared as it was read
    /// (`crate::sink::Sink::prepare_entry`), and only its other fields are copied.
    pub fn push_sized(&mut self, mut entry: RawEntry, size: usize) {
        self.oldest.get_or_insert_with(Instant::now);
        let needed = values(&mut entry.fields)
            .map(|value| value.len())
            .sum::<usize>();
        if self.entries.is_empty() || self.arena.capacity() < needed {
            // A batch's worth, and room for the read that passes it. At a batch's start
            // this takes the last batch's allocation back whole, its entries being gone;
            // only a batch that outgrows it allocates anew. Entries without their batch
            // need only room for their few other bytes.
            let batch = if entry.fields.batch.is_some() {
                self.limits.max_bytes.max(needed) + self.read_bytes().min(self.limits.max_bytes)
            } else {
                needed.max(SMALL_ARENA_BYTES)
            };
            self.arena.reserve(batch);
        }
        for value in values(&mut entry.fields) {
            self.arena.extend_from_slice(value);
            *value = self.arena.split().freeze();
        }
        self.largest_entry = self.largest_entry.max(size);
        self.bytes += size;
        self.approx_rows += (size / APPROX_EVENT_BYTES).max(1);
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[RawEntry] {
        &self.entries
    }

    /// Adds the entries of one read that asked for `asked`: a full reply means a backlog,
    /// a short or empty one that it is gone.
    pub fn push_read(&mut self, entries: Vec<RawEntry>, asked: u64) {
        self.note_read(entries.len(), asked);
        for entry in entries {
            self.push(entry);
        }
    }

    /// What [`Batch::push_read`] notes of a read of `got` entries that asked for `asked`,
    /// for a caller that pushes the entries itself.
    pub fn note_read(&mut self, got: usize, asked: u64) {
        self.backlog = got as u64 >= asked;
    }

    /// The entries, to give back the batches of entries that were let go
    /// (`crate::source::Source::reread`); then [`Batch::copy_in`] them.
    pub fn entries_mut(&mut self) -> &mut [RawEntry] {
        &mut self.entries
    }

    /// Copies the fields of the entries `indexes` into the batch's memory, as
    /// [`Batch::push`] does: entries given back their batch by a read of their own, which
    /// would otherwise hold that read's buffer (one allocation for all of them).
    pub fn copy_in(&mut self, indexes: &[usize]) {
        let needed: usize = indexes
            .iter()
            .map(|&i| {
                values(&mut self.entries[i].fields)
                    .map(|value| value.len())
                    .sum::<usize>()
            })
            .sum();
        self.arena.reserve(needed);
        for &i in indexes {
            for value in values(&mut self.entries[i].fields) {
                self.arena.extend_from_slice(value);
                *value = self.arena.split().freeze();
            }
        }
    }

    /// Whether a limit is reached at `now`. While reads come back full, a backlog of more
    /// than a flush's rows (see [`Batch::read_bytes`]), only the byte limit, the age and
    /// [`Batch::flush_soon`] count: with reads that small, the row limit alone would make a
    /// backlog's inserts as small as a quiet stream's, and ClickHouse merges small parts
    /// again and again (docs/BENCHMARKS.md, "Bounding a flush by rows").
    pub fn is_due(&self, now: Instant) -> bool {
        !self.is_empty()
            && (self.urgent
                || (!self.backlog && self.approx_rows >= self.limits.max_rows)
                || self.bytes >= self.limits.max_bytes
                || self
                    .oldest
                    .is_some_and(|t| now.duration_since(t) >= self.limits.max_age))
    }

    /// How long the next read may wait for entries: until the age limit makes a flush due,
    /// or not at all once the rows are reached in a backlog, where only an empty read tells
    /// that the backlog is gone (see [`Batch::push_read`]) and waiting would only delay the
    /// flush.
    pub fn read_wait(&self, now: Instant) -> Duration {
        if self.backlog && self.approx_rows >= self.limits.max_rows {
            Duration::ZERO
        } else {
            self.time_left(now)
        }
    }

    /// How long until the age limit makes a flush due; the full age when empty.
    fn time_left(&self, now: Instant) -> Duration {
        match self.oldest {
            None => self.limits.max_age,
            Some(t) => self.limits.max_age.saturating_sub(now.duration_since(t)),
        }
    }

    /// Puts the entries whose loads were interrupted first, most interrupted first, keeping
    /// stream order otherwise: they are flushed in small parts of their own (see
    /// [`crate::isolate::crash_parts`]).
    pub fn suspects_first(&mut self) {
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.attempts));
    }

    /// Removes the first `n` entries, once they are loaded and acknowledged.
    pub fn remove_first(&mut self, n: usize) {
        for entry in self.entries.drain(..n.min(self.entries.len())) {
            let size = entry.size();
            // an entry whose batch was let go and not found again counts less now
            self.bytes = self.bytes.saturating_sub(size);
            self.approx_rows = self
                .approx_rows
                .saturating_sub((size / APPROX_EVENT_BYTES).max(1));
        }
        if self.entries.is_empty() {
            self.oldest = None;
            self.urgent = false;
            self.backlog = false;
        }
    }

    /// Takes the entries out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<RawEntry> {
        self.bytes = 0;
        self.approx_rows = 0;
        self.oldest = None;
        self.urgent = false;
        self.backlog = false;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;

    fn entry(n: usize) -> RawEntry {
        RawEntry {
            id: "1-0".into(),
            fields: Fields {
                batch: Some(Bytes::from(vec![0u8; n])),
                ..Fields::default()
            },
            deliveries: 1,
            attempts: 0,
        }
    }

    #[test]
    fn flush_is_due_by_rows_bytes_or_age() {
        let limits = Limits {
            max_rows: 100,
            max_bytes: 1_000_000,
            max_age: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut b = Batch::new(limits);
        assert!(
            !b.is_due(t0 + Duration::from_secs(5)),
            "an empty batch is never due"
        );
        b.push(entry(10 * APPROX_EVENT_BYTES));
        assert!(!b.is_due(Instant::now()));
        assert!(b.is_due(Instant::now() + Duration::from_secs(1)));
        b.push(entry(100 * APPROX_EVENT_BYTES));
        assert!(b.is_due(Instant::now()), "row limit");
        assert_eq!(b.take().len(), 2);
        assert!(b.is_empty());
        let mut b = Batch::new(Limits {
            max_bytes: 50,
            ..limits
        });
        b.push(entry(60));
        assert!(b.is_due(Instant::now()), "byte limit");
    }

    #[test]
    fn reads_ask_for_what_fits_in_the_byte_limit() {
        let mut b = Batch::new(Limits {
            max_rows: 1_000_000,
            max_bytes: 4 << 20,
            max_age: Duration::from_secs(1),
        });
        assert_eq!(b.read_budget(1_000), 1, "a first read takes one entry");
        b.push(entry(997)); // 1,000 bytes with the id
        assert_eq!(
            b.read_budget(1_000),
            15,
            "small entries counted as half the largest the gateway writes: 4 MiB less 1,000 \
             bytes, in entries of 256 KiB"
        );
        let mut b = Batch::new(b.limits);
        b.push(entry(299_997)); // 300,000 bytes with the id
        assert_eq!(
            b.read_budget(1_000),
            12,
            "3,894,304 bytes left, 300,000 per entry"
        );
        assert_eq!(b.read_budget(3), 3);
        for _ in 0..13 {
            b.push(entry(299_997));
        }
        assert_eq!(b.read_budget(1_000), 1, "full, yet a read takes one");
        let mut small = Batch::new(Limits {
            max_bytes: 1_000,
            ..b.limits
        });
        small.push(entry(98));
        assert_eq!(small.read_budget(1_000), 1, "less than an entry left: one");
    }

    #[test]
    fn reads_ask_for_the_row_limits_worth_and_at_least_min_read_bytes() {
        let limits = Limits {
            max_rows: 1_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(1),
        };
        let mut b = Batch::new(limits);
        b.push(entry((1 << 20) - 3)); // 1 MiB with the id
        assert_eq!(b.read_budget(1_000), (MIN_READ_BYTES >> 20) as u64);
        let mut b = Batch::new(Limits {
            max_rows: 200_000,
            ..limits
        });
        b.push(entry((1 << 20) - 3));
        assert_eq!(b.read_bytes(), 200_000 * APPROX_EVENT_BYTES);
        assert_eq!(b.read_budget(1_000), (b.read_bytes() >> 20) as u64);
    }

    #[test]
    fn the_row_limit_waits_for_the_byte_limit_while_reads_come_back_full() {
        let limits = Limits {
            max_rows: 10,
            max_bytes: 1_000 * APPROX_EVENT_BYTES,
            max_age: Duration::from_secs(60),
        };
        let mut b = Batch::new(limits);
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES); 2], 2);
        assert!(!b.is_due(Instant::now()), "a full read: more is waiting");
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES)], 2);
        assert!(b.is_due(Instant::now()), "a short read: caught up");
        b.take();
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES); 3], 3);
        assert!(!b.is_due(Instant::now()));
        b.push_read(vec![entry(1_000 * APPROX_EVENT_BYTES)], 1);
        assert!(b.is_due(Instant::now()), "the byte limit still holds");
        b.take();
        let mut b = Batch::new(Limits {
            max_rows: 30,
            ..limits
        });
        let now = Instant::now();
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES)], 1);
        assert!(!b.is_due(now));
        assert!(b.read_wait(now) > Duration::ZERO, "below the rows: wait");
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES)], 1);
        assert!(!b.is_due(now), "a full read");
        assert_eq!(
            b.read_wait(now),
            Duration::ZERO,
            "the rows reached: no wait"
        );
        b.push_read(Vec::new(), 1);
        assert!(b.is_due(now), "an empty read: caught up");
        b.push_read(vec![entry(20 * APPROX_EVENT_BYTES); 2], 2);
        b.take();
        b.push(entry(20 * APPROX_EVENT_BYTES));
        b.push(entry(20 * APPROX_EVENT_BYTES));
        assert!(
            b.is_due(Instant::now()),
            "a new batch starts without a backlog"
        );
    }

    #[test]
    fn entries_are_copied_out_of_the_reply_into_memory_the_next_batch_takes_back() {
        let mut b = Batch::new(Limits {
            max_rows: usize::MAX,
            max_bytes: 1_000,
            max_age: Duration::from_secs(1),
        });
        let reply = Bytes::from(b"v1payload-1payload-2trace".to_vec());
        let read = |b: &mut Batch| {
            let entry = |batch: Range<usize>| RawEntry {
                id: "1-0".into(),
                fields: Fields {
                    format: Some(reply.slice(0..2)),
                    batch: Some(reply.slice(batch)),
                    traceparent: Some(reply.slice(20..25)),
                    other: vec![("x".into(), reply.slice(2..4))],
                },
                deliveries: 1,
                attempts: 0,
            };
            b.push_read(vec![entry(2..11), entry(11..20)], 2);
        };
        read(&mut b);
        let first = b.entries()[0].fields.batch.clone().unwrap();
        assert_eq!(&first[..], b"payload-1");
        let second = &b.entries()[1].fields;
        assert_eq!(second.batch.as_deref(), Some(&b"payload-2"[..]));
        assert_eq!(second.format.as_deref(), Some(&b"v1"[..]));
        assert_eq!(second.traceparent.as_deref(), Some(&b"trace"[..]));
        assert_eq!(&second.other[0].1[..], b"pa");
        let in_reply = |bytes: &Bytes| reply.as_ptr_range().contains(&bytes.as_ptr());
        for entry in b.entries() {
            // a clone's fields point where the entry's do
            assert!(
                !values(&mut entry.fields.clone()).any(|v| in_reply(v)),
                "no field points into the reply"
            );
        }
        let at = first.as_ptr();
        drop(first);
        drop(b.take());
        read(&mut b);
        assert_eq!(
            b.entries()[0].fields.batch.as_ref().unwrap().as_ptr(),
            at,
            "the next batch writes where the last one did"
        );
        let kept = b.entries()[0].fields.batch.clone();
        drop(b.take());
        read(&mut b);
        assert_ne!(
            b.entries()[0].fields.batch.as_ref().unwrap().as_ptr(),
            at,
            "an entry still held elsewhere keeps its bytes"
        );
        assert_eq!(kept.as_deref(), Some(&b"payload-1"[..]));
    }

    #[test]
    fn a_batch_flushed_soon_is_due_at_once_until_emptied() {
        let limits = Limits {
            max_rows: 1_000,
            max_bytes: 1_000_000,
            max_age: Duration::from_secs(60),
        };
        let mut b = Batch::new(limits);
        b.flush_soon();
        assert!(!b.is_due(Instant::now()), "an empty batch is never due");
        b.push(entry(10));
        b.push(entry(20));
        assert!(!b.is_due(Instant::now()));
        b.flush_soon();
        assert!(b.is_due(Instant::now()));
        b.remove_first(1);
        assert!(b.is_due(Instant::now()), "still urgent with entries left");
        assert_eq!(b.len(), 1);
        b.remove_first(5);
        b.push(entry(10));
        assert!(!b.is_due(Instant::now()), "a new batch starts calm");
    }
}
