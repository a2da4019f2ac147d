//! The Redis stream entry envelope, owned here and nowhere else: the fields the gateway
//! writes, how the consumer reads them back, and the dead-letter entry that keeps them.
//! No other file names a field (a test in `pipeline/tests/invariants.rs` checks it).
//!
//! One entry per accepted `PublishRequest`, never one per event, unless the request's
//! events take more than [`MAX_BATCH_BYTES`]: then a few entries of consecutive events
//! ([`encode_batches`]), written at once. An entry has:
//! - `f` = `queue.v1`, the format tag, so a future format can be told apart and old
//!   consumers dead-letter what they cannot read instead of guessing;
//! - `b` = a protobuf `marketplace.queue.v1.QueuedBatch`;
//! - `tp` (optional) = the W3C trace context of the producing span.
//!
//! The batch is protobuf rather than JSON because the events arrive as protobuf: the
//! gateway copies each accepted event's bytes, as the store sent them, into the batch
//! ([`encode_batch_with_encoded_events`]), with one allocation per request.
//!
//! A dead-letter entry (`<stream>:dead`) has `id` (the original stream id), `reason`,
//! `deliveries`, and every original field under its name prefixed with `raw.`, so a
//! replay writes back exactly what the producer wrote.

use bytes::{Bytes, BytesMut};
use prost::{
    Message,
    encoding::{self, DecodeContext, skip_field},
};
use prost_types::Timestamp;

use crate::{
    proto::queue::{QueuedBatch, RejectedEvent},
    view::{self, Depths, EventView, Refused},
};

/// Field holding the format tag.
const FIELD_FORMAT: &str = "f";
/// Field holding the encoded [`QueuedBatch`].
const FIELD_BATCH: &str = "b";
/// Field holding the producer's W3C `traceparent`, when tracing is on.
const FIELD_TRACEPARENT: &str = "tp";
/// The only format this build writes and reads.
const FORMAT_V1: &str = "queue.v1";

/// Dead-letter field holding the entry's id in the main stream.
const DEAD_ORIGINAL_ID: &str = "id";
/// Dead-letter field holding why the entry cannot be loaded.
const DEAD_REASON: &str = "reason";
/// Dead-letter field holding how often the group delivered the entry.
const DEAD_DELIVERIES: &str = "deliveries";
/// Prefix of the original fields in a dead-letter entry; keeps them apart from ours.
const DEAD_RAW_PREFIX: &str = "raw.";

/// Why a stream entry could not be read. Every variant is permanent: the same bytes
/// fail the same way on every delivery, so the consumer dead-letters them.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntryError {
    #[error("entry has no {FIELD_BATCH:?} field")]
    MissingBatch,
    #[error("entry format {0:?} is not supported (expected {FORMAT_V1:?})")]
    UnsupportedFormat(String),
    #[error("entry batch is not a valid queue.v1 protobuf: {0}")]
    Decode(String),
}

/// Encodes a batch into the bytes of the batch field, allocating once.
pub fn encode_batch(batch: &QueuedBatch) -> Bytes {
    let mut buf = BytesMut::with_capacity(batch.encoded_len());
    batch
        .encode(&mut buf)
        .expect("buffer was sized by encoded_len");
    buf.freeze()
}

/// The field number of `QueuedBatch.events`.
const BATCH_EVENTS_FIELD: u32 = 4;
/// The field number of `QueuedBatch.rejected`.
const BATCH_REJECTED_FIELD: u32 = 5;

/// The most bytes of a batch field the gateway writes ([`encode_batches`]). So that the
/// readers can bound a reply by a count of entries: Redis builds a reply whole, and a reader
/// asks for a count, not for bytes, so a count sized by small entries must not bring large
/// ones (`consumer::source::entries_within`). A request of 2,000 events of 137 bytes is one
/// entry of 274 KB; one of the gateway's largest (10,000 events, or 4 MiB) becomes 3 to 9.
/// Every event fits one entry, as the gateway refuses any larger than
/// [`crate::validate::MAX_EVENT_BYTES`].
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// The bytes of one event as a field of a batch: its key, its length and its own.
fn event_field_len(len: usize) -> usize {
    prost::encoding::key_len(BATCH_EVENTS_FIELD)
        + prost::encoding::encoded_len_varint(len as u64)
        + len
}

/// `batch` with the encoded events `encoded_events` ([`encode_batch_with_encoded_events`])
/// as the batch fields of stream entries of at most [`MAX_BATCH_BYTES`] each: one entry,
/// byte for byte what `encode_batch_with_encoded_events` writes, when it fits; otherwise the
/// events in order, then the rejected events, split into consecutive entries, each with the
/// batch's store, region, time of receipt and `from_prober`, and `rejected_not_kept` in the
/// last. Decoded one after the other, the entries give back every event and every rejected
/// event once, in order. An item larger than an entry on its own (an event above
/// [`crate::validate::MAX_EVENT_BYTES`], which the gateway refuses) gets an entry to itself.
pub fn encode_batches(batch: QueuedBatch, encoded_events: &[&[u8]]) -> Vec<Bytes> {
    let events_len: usize = encoded_events
        .iter()
        .map(|event| event_field_len(event.len()))
        .sum();
    if batch.encoded_len() + events_len <= MAX_BATCH_BYTES {
        return vec![encode_with_events_len(batch, encoded_events, events_len)];
    }
    let QueuedBatch {
        store_id,
        region,
        received_at,
        events,
        rejected,
        rejected_not_kept,
        from_prober,
    } = batch;
    // events given decoded go first, as `encode_batch_with_encoded_events` writes them
    let decoded: Vec<Vec<u8>> = events.iter().map(Message::encode_to_vec).collect();
    let all_events: Vec<&[u8]> = decoded
        .iter()
        .map(Vec::as_slice)
        .chain(encoded_events.iter().copied())
        .collect();
    let header = QueuedBatch {
        store_id,
        region,
        received_at,
        from_prober,
        ..QueuedBatch::default()
    };
    // room for a `rejected_not_kept` in every entry: its key and at most five bytes
    let room = MAX_BATCH_BYTES.saturating_sub(header.encoded_len() + 6);
    let mut entries = Vec::new();
    let mut chunk: Vec<&[u8]> = Vec::new();
    let mut chunk_rejected: Vec<RejectedEvent> = Vec::new();
    let mut used = 0;
    let entry = |chunk: &[&[u8]], rejected: Vec<RejectedEvent>, not_kept: u32| {
        let batch = QueuedBatch {
            rejected,
            rejected_not_kept: not_kept,
            ..header.clone()
        };
        encode_batch_with_encoded_events(batch, chunk)
    };
    for event in all_events {
        let len = event_field_len(event.len());
        if used > 0 && used + len > room {
            entries.push(entry(&chunk, Vec::new(), 0));
            chunk.clear();
            used = 0;
        }
        chunk.push(event);
        used += len;
    }
    for r in rejected {
        let len = prost::encoding::message::encoded_len(BATCH_REJECTED_FIELD, &r);
        if used > 0 && used + len > room {
            entries.push(entry(&chunk, std::mem::take(&mut chunk_rejected), 0));
            chunk.clear();
            used = 0;
        }
        chunk_rejected.push(r);
        used += len;
    }
    entries.push(entry(&chunk, chunk_rejected, rejected_not_kept));
    entries
}

/// Encodes a batch whose events are given already encoded, each an `Event` message's
/// bytes, after those of `batch.events` (usually none). Each is copied once, behind the key
/// and length prost writes for a field-4 message, and every field goes in field-number
/// order, so that a batch of canonically encoded events is byte for byte what
/// [`encode_batch`] writes for them decoded. Decoding gives back each event as decoding its
/// bytes alone would, whatever they hold (unknown fields, repeated fields, long varints):
/// the gateway queues the bytes a store sent rather than encoding what it decoded from them.
pub fn encode_batch_with_encoded_events(batch: QueuedBatch, encoded_events: &[&[u8]]) -> Bytes {
    let events_len = encoded_events
        .iter()
        .map(|event| event_field_len(event.len()))
        .sum();
    encode_with_events_len(batch, encoded_events, events_len)
}

/// [`encode_batch_with_encoded_events`], the events' bytes as fields (`event_field_len`)
/// summed already.
fn encode_with_events_len(
    batch: QueuedBatch,
    encoded_events: &[&[u8]],
    events_len: usize,
) -> Bytes {
    // Destructured, so that a new field of `QueuedBatch` cannot be left out unnoticed.
    let QueuedBatch {
        store_id,
        region,
        received_at,
        events,
        rejected,
        rejected_not_kept,
        from_prober,
    } = batch;
    let head = QueuedBatch {
        store_id,
        region,
        received_at,
        events,
        ..QueuedBatch::default()
    };
    let tail = QueuedBatch {
        rejected,
        rejected_not_kept,
        from_prober,
        ..QueuedBatch::default()
    };
    let mut buf = BytesMut::with_capacity(head.encoded_len() + events_len + tail.encoded_len());
    head.encode(&mut buf)
        .expect("buffer was sized by encoded_len");
    for event in encoded_events {
        prost::encoding::encode_key(
            BATCH_EVENTS_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut buf,
        );
        prost::encoding::encode_varint(event.len() as u64, &mut buf);
        buf.extend_from_slice(event);
    }
    tail.encode(&mut buf)
        .expect("buffer was sized by encoded_len");
    buf.freeze()
}

/// Decodes the bytes of a batch field.
pub fn decode_batch(batch: &[u8]) -> Result<QueuedBatch, EntryError> {
    QueuedBatch::decode(batch).map_err(|e| EntryError::Decode(e.to_string()))
}

/// A batch decoded without a `String` per event: the header's fields as prost decodes them,
/// each event an [`EventView`] whose text fields are slices of the batch's bytes, and the
/// gateway's rejected events (rare, and few per entry) decoded by prost. The consumer's
/// path from an entry to rows; [`QueuedBatch`] has the same fields, owned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchView<'a> {
    pub store_id: &'a str,
    pub region: i32,
    pub received_at: Option<Timestamp>,
    pub events: Vec<EventView<'a>>,
    /// The bytes each event was decoded from: `events[i]` from `encoded_events[i]`.
    pub encoded_events: Vec<&'a [u8]>,
    pub rejected: Vec<RejectedEvent>,
    pub rejected_not_kept: u32,
    pub from_prober: bool,
}

impl<'a> BatchView<'a> {
    /// Decodes a batch field as `QueuedBatch::decode` does, field by field (see
    /// `pipeline::view`): it accepts and refuses the same bytes, and its values are the
    /// decoded batch's (test `batch_views_decode_what_prost_decodes`).
    pub fn decode(batch: &'a [u8]) -> Result<BatchView<'a>, Refused> {
        let ctx = DecodeContext::default();
        let depths = Depths::new(view::deeper(&ctx)?)?;
        let mut view = BatchView {
            // the gateway's events take 100-300 bytes each: growing the vector would move
            // every view decoded so far, a few times over (at most the gateway's default
            // GATEWAY_MAX_EVENTS reserved)
            events: Vec::with_capacity((batch.len() / 128).min(10_000)),
            encoded_events: Vec::with_capacity((batch.len() / 128).min(10_000)),
            ..BatchView::default()
        };
        let mut buf = batch;
        while !buf.is_empty() {
            let (tag, wire_type) = view::key(&mut buf)?;
            match tag {
                1 => view::merge_str(wire_type, &mut view.store_id, &mut buf)?,
                2 => encoding::int32::merge(wire_type, &mut view.region, &mut buf, ctx.clone())?,
                3 => encoding::message::merge(
                    wire_type,
                    view.received_at.get_or_insert_with(Timestamp::default),
                    &mut buf,
                    ctx.clone(),
                )?,
                BATCH_EVENTS_FIELD => {
                    let event = view::length_delimited(wire_type, &mut buf)?;
                    view.events.push(EventView::default());
                    if let Some(slot) = view.events.last_mut() {
                        slot.merge(event, &depths)?;
                    }
                    view.encoded_events.push(event);
                }
                5 => encoding::message::merge_repeated(
                    wire_type,
                    &mut view.rejected,
                    &mut buf,
                    ctx.clone(),
                )?,
                6 => encoding::uint32::merge(
                    wire_type,
                    &mut view.rejected_not_kept,
                    &mut buf,
                    ctx.clone(),
                )?,
                7 => {
                    encoding::bool::merge(wire_type, &mut view.from_prober, &mut buf, ctx.clone())?
                }
                _ => skip_field(wire_type, tag, &mut buf, ctx.clone())?,
            }
        }
        Ok(view)
    }
}

/// The fields of one stream entry, as written or as read, kept raw: the consumer decodes
/// them only when it flushes, and a dead letter keeps them byte for byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The format tag, if present.
    pub format: Option<Bytes>,
    /// The encoded batch, if present.
    pub batch: Option<Bytes>,
    /// The producer's W3C `traceparent`, if present.
    pub traceparent: Option<Bytes>,
    /// Every other field (whatever a broken or newer producer wrote), sorted by name, kept
    /// so a dead-lettered entry can be replayed exactly as it was written.
    pub other: Vec<(String, Bytes)>,
}

impl Fields {
    /// A new entry of this build's format holding an encoded batch (see [`encode_batch`])
    /// and, when tracing, the producer span's `traceparent`.
    pub fn new(batch: Bytes, traceparent: Option<String>) -> Fields {
        Fields {
            format: Some(Bytes::from_static(FORMAT_V1.as_bytes())),
            batch: Some(batch),
            traceparent: traceparent.map(Bytes::from),
            other: Vec::new(),
        }
    }

    /// The fields of an entry read from Redis, by name.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Bytes)>) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            match name.as_str() {
                FIELD_FORMAT => fields.format = Some(value),
                FIELD_BATCH => fields.batch = Some(value),
                FIELD_TRACEPARENT => fields.traceparent = Some(value),
                _ => fields.other.push((name, value)),
            }
        }
        fields.other.sort();
        fields
    }

    /// The (name, value) pairs to write with `XADD`, in a fixed order.
    pub fn pairs(&self) -> Vec<(&str, Bytes)> {
        let known = [
            (FIELD_FORMAT, &self.format),
            (FIELD_BATCH, &self.batch),
            (FIELD_TRACEPARENT, &self.traceparent),
        ];
        let mut out = Vec::with_capacity(known.len() + self.other.len());
        for (name, value) in known {
            if let Some(value) = value {
                out.push((name, value.clone()));
            }
        }
        out.extend(self.other.iter().map(|(n, v)| (n.as_str(), v.clone())));
        out
    }

    /// The producer's trace context, if the entry has a readable one.
    pub fn traceparent_str(&self) -> Option<&str> {
        std::str::from_utf8(self.traceparent.as_deref()?).ok()
    }

    /// Decodes the batch, checking the format tag when there is one.
    pub fn decode(&self) -> Result<QueuedBatch, EntryError> {
        self.check_format()?;
        decode_batch(self.batch.as_deref().ok_or(EntryError::MissingBatch)?)
    }

    /// Decodes the batch as a [`BatchView`] borrowing from the entry, checking the format
    /// tag when there is one. Refuses what [`Fields::decode`] refuses, with its error.
    pub fn decode_view(&self) -> Result<BatchView<'_>, EntryError> {
        self.check_format()?;
        let batch = self.batch.as_deref().ok_or(EntryError::MissingBatch)?;
        BatchView::decode(batch).map_err(|Refused| match decode_batch(batch) {
            Err(prost_says) => prost_says,
            Ok(_) => EntryError::Decode(
                "refused by the borrowed decoder though prost decodes it (a bug of \
                 pipeline::view; replay it once fixed)"
                    .into(),
            ),
        })
    }

    fn check_format(&self) -> Result<(), EntryError> {
        match &self.format {
            Some(format) if format != FORMAT_V1.as_bytes() => Err(EntryError::UnsupportedFormat(
                String::from_utf8_lossy(format).into_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// A dead-letter entry: an entry that cannot be loaded, with why, kept so an operator can
/// list it and, once the cause is fixed, replay it as it was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFields {
    /// The entry's id in the main stream when it was dead-lettered.
    pub original_id: String,
    pub reason: String,
    /// How often the group delivered it.
    pub deliveries: u64,
    /// The entry's fields as the producer wrote them.
    pub fields: Fields,
}

impl DeadLetterFields {
    /// The (name, value) pairs to write with `XADD`.
    pub fn pairs(&self) -> Vec<(String, Bytes)> {
        let mut out = vec![
            (
                DEAD_ORIGINAL_ID.to_owned(),
                Bytes::from(self.original_id.clone()),
            ),
            (DEAD_REASON.to_owned(), Bytes::from(self.reason.clone())),
            (
                DEAD_DELIVERIES.to_owned(),
                Bytes::from(self.deliveries.to_string()),
            ),
        ];
        out.extend(
            self.fields
                .pairs()
                .into_iter()
                .map(|(name, value)| (format!("{DEAD_RAW_PREFIX}{name}"), value)),
        );
        out
    }

    /// A dead-letter entry read from Redis; unknown fields are ignored.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Bytes)>) -> DeadLetterFields {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let mut letter = DeadLetterFields::default();
        let mut raw = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                DEAD_ORIGINAL_ID => letter.original_id = text(&value),
                DEAD_REASON => letter.reason = text(&value),
                DEAD_DELIVERIES => letter.deliveries = text(&value).parse().unwrap_or(0),
                _ => {
                    if let Some(name) = name.strip_prefix(DEAD_RAW_PREFIX) {
                        raw.push((name.to_owned(), value));
                    }
                }
            }
        }
        letter.fields = Fields::from_pairs(raw);
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ingest::Event;

    fn batch() -> QueuedBatch {
        QueuedBatch {
            store_id: "eu-1".into(),
            region: 1,
            received_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            events: vec![Event {
                event_id: "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10".into(),
                ..Default::default()
            }],
            ..QueuedBatch::default()
        }
    }

    /// What Redis hands back for `fields`: owned names.
    fn read_back(fields: &Fields) -> Fields {
        Fields::from_pairs(fields.pairs().into_iter().map(|(n, v)| (n.to_owned(), v)))
    }

    #[test]
    fn batch_round_trips() {
        let b = batch();
        let bytes = encode_batch(&b);
        assert_eq!(bytes.len(), b.encoded_len());
        let fields = Fields::new(bytes.clone(), Some("00-ab-cd-01".into()));
        let read = read_back(&fields);
        assert_eq!(read, fields);
        assert_eq!(read.decode().unwrap(), b);
        assert_eq!(read.traceparent_str(), Some("00-ab-cd-01"));
        assert_eq!(decode_batch(&bytes).unwrap(), b);
        let untagged = Fields {
            batch: Some(bytes),
            ..Fields::default()
        };
        assert_eq!(
            untagged.decode().unwrap(),
            b,
            "an entry without a tag is v1"
        );
    }

    /// `n` canonically encoded events of about `len` bytes each.
    fn encoded(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                Event {
                    event_id: format!("{i:08}"),
                    store_id: "s".repeat(len.saturating_sub(12)),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect()
    }

    #[test]
    fn a_batch_that_fits_is_one_entry_as_before() {
        let events = encoded(2_000, 137);
        let slices: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let mut header = batch();
        header.events.clear();
        let entries = encode_batches(header.clone(), &slices);
        assert_eq!(
            entries,
            vec![encode_batch_with_encoded_events(header, &slices)]
        );
        assert!(entries[0].len() <= MAX_BATCH_BYTES);
    }

    #[test]
    fn a_large_batch_is_split_into_bounded_entries_that_give_back_every_event_once() {
        let events = encoded(10_000, 300);
        let slices: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let rejected: Vec<RejectedEvent> = (0..150)
            .map(|i| RejectedEvent {
                raw_event: vec![i as u8; 5_000],
                event_id: format!("bad-{i}"),
                reason: "why".repeat(50),
            })
            .collect();
        let mut whole = batch();
        whole.events = vec![Event {
            event_id: "decoded-first".into(),
            ..Default::default()
        }];
        whole.rejected = rejected.clone();
        whole.rejected_not_kept = 7;
        whole.from_prober = true;
        let entries = encode_batches(whole.clone(), &slices);
        let total: usize = entries.iter().map(Bytes::len).sum();
        assert!(
            entries.len() >= total.div_ceil(MAX_BATCH_BYTES),
            "{}",
            entries.len()
        );
        assert!(entries.len() > 4, "{} entries", entries.len());
        let mut events_back = Vec::new();
        let mut rejected_back = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            assert!(entry.len() <= MAX_BATCH_BYTES, "entry {i}: {}", entry.len());
            let part = decode_batch(entry).unwrap();
            assert_eq!(
                (
                    &part.store_id,
                    part.region,
                    part.received_at,
                    part.from_prober
                ),
                (&whole.store_id, whole.region, whole.received_at, true),
                "entry {i} has the batch's header"
            );
            let last = i == entries.len() - 1;
            assert_eq!(
                part.rejected_not_kept,
                if last { 7 } else { 0 },
                "entry {i}"
            );
            assert!(
                !part.events.is_empty() || !part.rejected.is_empty(),
                "entry {i} is empty"
            );
            events_back.extend(part.events.iter().map(Message::encode_to_vec));
            rejected_back.extend(part.rejected);
        }
        let mut expected = vec![whole.events[0].encode_to_vec()];
        expected.extend(events);
        assert_eq!(events_back, expected, "every event once, in order");
        assert_eq!(
            rejected_back, rejected,
            "every rejected event once, in order"
        );
    }

    #[test]
    fn an_event_larger_than_an_entry_gets_an_entry_to_itself() {
        let small = encoded(3, 100);
        let huge = encoded(1, MAX_BATCH_BYTES + 10).remove(0);
        let slices = [&small[0][..], &huge[..], &small[1][..], &small[2][..]];
        let mut header = batch();
        header.events.clear();
        let entries = encode_batches(header, &slices);
        let sizes: Vec<usize> = entries
            .iter()
            .map(|e| decode_batch(e).unwrap().events.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 2]);
        assert!(entries[1].len() > MAX_BATCH_BYTES);
    }

    #[test]
    fn encoded_events_are_queued_as_they_are() {
        let mut whole = batch();
        whole.events.push(Event {
            event_id: "second".into(),
            store_id: "eu-1".into(),
            ..Default::default()
        });
        whole.rejected.push(crate::proto::queue::RejectedEvent {
            raw_event: vec![1, 2, 3],
            event_id: "x".into(),
            reason: "why".into(),
        });
        whole.rejected_not_kept = 2;
        whole.from_prober = true;
        // canonical events: the very bytes prost writes for the decoded batch
        let encoded: Vec<Vec<u8>> = whole.events.iter().map(Message::encode_to_vec).collect();
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let header = QueuedBatch {
            events: Vec::new(),
            ..whole.clone()
        };
        assert_eq!(
            encode_batch_with_encoded_events(header.clone(), &slices),
            encode_batch(&whole)
        );
        // decoded events first, then the encoded ones
        let first_decoded = QueuedBatch {
            events: whole.events[..1].to_vec(),
            ..header.clone()
        };
        assert_eq!(
            encode_batch_with_encoded_events(first_decoded, &slices[1..]),
            encode_batch(&whole)
        );
        // odd encodings are kept, and decode as their bytes alone do: an unknown field
        // (99, varint) and `store_id` twice, the last one winning
        let mut odd = encoded[1].clone();
        odd.extend([0x98, 0x06, 0x01, 0x1a, 0x02, b'u', b's']);
        let bytes = encode_batch_with_encoded_events(header, &[&odd]);
        let decoded = decode_batch(&bytes).unwrap();
        assert_eq!(decoded.events, [Event::decode(&odd[..]).unwrap()]);
        assert_eq!(decoded.events[0].store_id, "us");
        assert!(bytes.windows(odd.len()).any(|w| w == odd.as_slice()));
    }

    #[test]
    fn the_wire_names_are_the_ones_deployed_entries_have() {
        let fields = Fields::new(Bytes::from_static(b"x"), Some("t".into()));
        let names: Vec<&str> = fields.pairs().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["f", "b", "tp"]);
        assert_eq!(fields.format.as_deref(), Some(&b"queue.v1"[..]));
    }

    #[test]
    fn unknown_fields_are_kept_for_replay() {
        let read = Fields::from_pairs([
            ("zz".to_owned(), Bytes::from_static(b"2")),
            ("b".to_owned(), Bytes::from_static(b"x")),
            ("aa".to_owned(), Bytes::from_static(b"1")),
        ]);
        assert_eq!(read.batch.as_deref(), Some(&b"x"[..]));
        assert_eq!(
            read.other,
            [
                ("aa".to_owned(), Bytes::from_static(b"1")),
                ("zz".to_owned(), Bytes::from_static(b"2"))
            ]
        );
        assert_eq!(read_back(&read), read);
    }

    #[test]
    fn broken_entries_are_named() {
        let tagged = |format: &'static [u8], batch: Option<&'static [u8]>| Fields {
            format: Some(Bytes::from_static(format)),
            batch: batch.map(Bytes::from_static),
            ..Fields::default()
        };
        assert_eq!(
            tagged(b"queue.v1", None).decode(),
            Err(EntryError::MissingBatch)
        );
        assert_eq!(
            tagged(b"queue.v9", Some(b"")).decode(),
            Err(EntryError::UnsupportedFormat("queue.v9".into()))
        );
        assert!(matches!(
            decode_batch(&[0xff, 0xff, 0xff]),
            Err(EntryError::Decode(_))
        ));
    }

    #[test]
    fn dead_letters_round_trip_with_the_original_fields() {
        let letter = DeadLetterFields {
            original_id: "5-1".into(),
            reason: "bad bytes".into(),
            deliveries: 6,
            fields: Fields {
                format: Some(Bytes::from_static(b"queue.v1")),
                batch: Some(Bytes::from_static(&[0xff, 0x00])),
                traceparent: Some(Bytes::from_static(b"00-ab")),
                other: vec![("x".into(), Bytes::from_static(b"y"))],
            },
        };
        let pairs = letter.pairs();
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "reason",
                "deliveries",
                "raw.f",
                "raw.b",
                "raw.tp",
                "raw.x"
            ]
        );
        assert_eq!(DeadLetterFields::from_pairs(pairs), letter);
    }

    // The consumer's borrowed decoding against prost's (pipeline::view has the events' own
    // tests and helpers).
    use crate::view::{
        EventView,
        tests::{Rng, commerce_event, ld, mutate, nested_groups, probe_event, seed_events, vi},
    };
    use prost_types::Timestamp;

    /// Decodes a batch both ways, through the entry as the consumer does; panics on any
    /// difference, the error's words included.
    fn batch_agrees(bytes: &[u8]) -> bool {
        let fields = Fields::new(Bytes::copy_from_slice(bytes), None);
        match (fields.decode_view(), fields.decode()) {
            (Ok(view), Ok(batch)) => {
                let events: Vec<EventView<'_>> = batch.events.iter().map(EventView::from).collect();
                assert_eq!(view.events, events);
                assert_eq!(
                    (view.store_id, view.region, view.received_at),
                    (batch.store_id.as_str(), batch.region, batch.received_at)
                );
                assert_eq!(
                    (&view.rejected, view.rejected_not_kept, view.from_prober),
                    (&batch.rejected, batch.rejected_not_kept, batch.from_prober)
                );
                for (encoded, event) in view.encoded_events.iter().zip(&batch.events) {
                    assert_eq!(&Event::decode(*encoded).unwrap(), event);
                }
                true
            }
            (Err(view), Err(prost)) => {
                assert_eq!(view, prost);
                false
            }
            (view, prost) => panic!("view {view:?} but prost {prost:?} for {bytes:02x?}"),
        }
    }

    fn odd_batch() -> QueuedBatch {
        QueuedBatch {
            store_id: "eu-1".into(),
            region: 1,
            received_at: Some(Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            }),
            events: vec![commerce_event(), probe_event(), Event::default()],
            rejected: vec![crate::proto::queue::RejectedEvent {
                raw_event: vec![1, 2, 3],
                event_id: "x".into(),
                reason: "why".into(),
            }],
            rejected_not_kept: 4,
            from_prober: true,
        }
    }

    #[test]
    fn batch_views_decode_what_prost_decodes() {
        let canonical = encode_batch(&odd_batch()).to_vec();
        assert!(batch_agrees(&canonical));
        assert!(batch_agrees(&[]));
        let odd = [
            canonical.clone(),
            ld(1, b"us-2"),
            vi(2, 3),
            ld(3, &vi(2, 9)),
            ld(5, &ld(3, b"more")),
            vi(6, 1 << 35),
            vi(7, 0),
            vi(99, 1),
            ld(4, &[]),
        ]
        .concat();
        assert!(batch_agrees(&odd));
        let view = BatchView::decode(&odd).unwrap();
        assert_eq!(view.events.len(), 4);
        assert_eq!(view.store_id, "us-2");
        for bad in [
            vec![0x22, 0x02, 0x0a, 0x05],
            [canonical.clone(), ld(1, b"\xff")].concat(),
            [canonical.clone(), ld(4, &ld(1, b"\xff"))].concat(),
            vec![0x2a, 0x01, 0xff],
            vec![0x08],
        ] {
            assert!(!batch_agrees(&bad), "prost accepts {bad:02x?}");
            assert!(decode_batch(&bad).is_err());
        }
    }

    #[test]
    fn a_batch_s_events_reach_the_recursion_limit_one_level_sooner() {
        // as in prost: a batch's events are a message field, one level below an event alone
        let flip = |accepts: &dyn Fn(&[u8]) -> bool| {
            (90..100)
                .position(|depth| !accepts(&nested_groups(depth)))
                .expect("the limit is reached")
        };
        let alone = flip(&|event| Event::decode(event).is_ok());
        let in_batch = flip(&|event| batch_agrees(&ld(4, event)));
        assert_eq!(in_batch + 1, alone);
    }

    #[test]
    fn batch_views_agree_with_prost_on_mutated_bytes() {
        let events = seed_events();
        let batches = vec![
            encode_batch(&odd_batch()).to_vec(),
            [ld(4, &events[0]), ld(4, &events[1]), ld(4, &events[2])].concat(),
        ];
        let mut rng = Rng(21);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..30_000 {
            if batch_agrees(&mutate(&mut rng, &batches)) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
    }
}
