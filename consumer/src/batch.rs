//! Entries accumulated between flushes, with the limits that make a flush due.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pipeline::entry::Fields;

/// One stream entry as read, kept raw until the flush so a retried flush re-decodes it.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The stream id, acknowledged after the flush.
    pub id: String,
    /// The entry's fields, raw: decoded at the flush, kept as written for a dead letter.
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

    fn size(&self) -> usize {
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
    /// Size of the largest entry seen, to size reads (see [`Batch::read_budget`]).
    largest_entry: usize,
}

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
            largest_entry: 0,
        }
    }

    /// How many entries the next read may ask for, at most `count`: as many as fit in what
    /// is left of the byte limit at the size of the largest entry seen so far (at least
    /// one). A reply of `CONSUMER_READ_COUNT` entries of 2,000 events each would be
    /// hundreds of MiB, read into memory before the byte limit could say no.
    pub fn read_budget(&self, count: u64) -> u64 {
        if self.largest_entry == 0 {
            return count.clamp(1, 16);
        }
        let left = self.limits.max_bytes.saturating_sub(self.bytes);
        ((left / self.largest_entry) as u64).clamp(1, count.max(1))
    }

    /// Makes the batch due at once: for entries that already waited (taken over from a dead
    /// consumer), where waiting for more would only delay them further.
    pub fn flush_soon(&mut self) {
        self.urgent = !self.entries.is_empty();
    }

    pub fn push(&mut self, entry: RawEntry) {
        self.oldest.get_or_insert_with(Instant::now);
        let size = entry.size();
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

    /// Whether a limit is reached at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        !self.is_empty()
            && (self.urgent
                || self.approx_rows >= self.limits.max_rows
                || self.bytes >= self.limits.max_bytes
                || self
                    .oldest
                    .is_some_and(|t| now.duration_since(t) >= self.limits.max_age))
    }

    /// How long until the age limit makes a flush due; the full age when empty.
    pub fn time_left(&self, now: Instant) -> Duration {
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
            self.bytes -= size;
            self.approx_rows = self
                .approx_rows
                .saturating_sub((size / APPROX_EVENT_BYTES).max(1));
        }
        if self.entries.is_empty() {
            self.oldest = None;
            self.urgent = false;
        }
    }

    /// Takes the entries out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<RawEntry> {
        self.bytes = 0;
        self.approx_rows = 0;
        self.oldest = None;
        self.urgent = false;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
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
            max_bytes: 1_000,
            max_age: Duration::from_secs(1),
        });
        assert_eq!(b.read_budget(1_000), 16, "a first read is small");
        b.push(entry(98)); // 101 bytes with the id
        assert_eq!(b.read_budget(1_000), 8, "899 bytes left, 101 per entry");
        assert_eq!(b.read_budget(3), 3);
        for _ in 0..9 {
            b.push(entry(98));
        }
        assert_eq!(b.read_budget(1_000), 1, "full, yet a read takes one");
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
