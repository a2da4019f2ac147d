//! Entries accumulated between flushes, with the limits that make a flush due.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// One stream entry as read, kept raw until the flush so a retried flush re-decodes it.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The stream id, acknowledged after the flush.
    pub id: String,
    /// The format field, if present.
    pub format: Option<Bytes>,
    /// The encoded batch, if present.
    pub batch: Option<Bytes>,
    /// Every other field (the trace context, or whatever a broken producer wrote), kept so
    /// a dead-lettered entry can be replayed exactly as it was written.
    pub other: Vec<(String, Bytes)>,
    /// How many times the group delivered this entry, this delivery included: 1 for a new
    /// entry, more for one re-read after a crash or taken over from a dead consumer.
    pub deliveries: u64,
}

impl RawEntry {
    fn size(&self) -> usize {
        self.batch.as_ref().map_or(0, Bytes::len) + self.id.len()
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
        }
    }

    pub fn push(&mut self, entry: RawEntry) {
        self.oldest.get_or_insert_with(Instant::now);
        let size = entry.size();
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
            && (self.approx_rows >= self.limits.max_rows
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

    /// Takes the entries out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<RawEntry> {
        self.bytes = 0;
        self.approx_rows = 0;
        self.oldest = None;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> RawEntry {
        RawEntry {
            id: "1-0".into(),
            format: None,
            batch: Some(Bytes::from(vec![0u8; n])),
            other: vec![],
            deliveries: 1,
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
}
