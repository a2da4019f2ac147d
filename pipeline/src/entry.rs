//! The Redis stream entry format: one entry per accepted `PublishRequest`, never one per event.
//!
//! An entry has three fields:
//! - [`FIELD_FORMAT`] = [`FORMAT_V1`], so a future format can be told apart and old
//!   consumers dead-letter what they cannot read instead of guessing;
//! - [`FIELD_BATCH`] = a protobuf `marketplace.queue.v1.QueuedBatch`;
//! - [`FIELD_TRACEPARENT`] (optional) = the W3C trace context of the producing span.
//!
//! The batch is protobuf rather than JSON because the events arrive as protobuf: the
//! gateway moves the decoded events into the batch and encodes once, with one allocation
//! per request.

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::proto::queue::QueuedBatch;

/// Field holding the format tag.
pub const FIELD_FORMAT: &str = "f";
/// Field holding the encoded [`QueuedBatch`].
pub const FIELD_BATCH: &str = "b";
/// Field holding the producer's W3C `traceparent`, when tracing is on.
pub const FIELD_TRACEPARENT: &str = "tp";
/// The only format this build writes and reads.
pub const FORMAT_V1: &str = "queue.v1";

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

/// Encodes a batch into the bytes of the [`FIELD_BATCH`] field, allocating once.
pub fn encode_batch(batch: &QueuedBatch) -> Bytes {
    let mut buf = BytesMut::with_capacity(batch.encoded_len());
    batch
        .encode(&mut buf)
        .expect("buffer was sized by encoded_len");
    buf.freeze()
}

/// Decodes an entry from its format tag (if present) and batch bytes (if present).
pub fn decode_entry(
    format: Option<&[u8]>,
    batch: Option<&[u8]>,
) -> Result<QueuedBatch, EntryError> {
    if let Some(format) = format
        && format != FORMAT_V1.as_bytes()
    {
        return Err(EntryError::UnsupportedFormat(
            String::from_utf8_lossy(format).into_owned(),
        ));
    }
    let batch = batch.ok_or(EntryError::MissingBatch)?;
    QueuedBatch::decode(batch).map_err(|e| EntryError::Decode(e.to_string()))
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
            rejected: vec![],
        }
    }

    #[test]
    fn batch_round_trips() {
        let b = batch();
        let bytes = encode_batch(&b);
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(
            decode_entry(Some(FORMAT_V1.as_bytes()), Some(&bytes)).unwrap(),
            b
        );
        assert_eq!(decode_entry(None, Some(&bytes)).unwrap(), b);
    }

    #[test]
    fn broken_entries_are_named() {
        assert_eq!(
            decode_entry(Some(b"queue.v1"), None),
            Err(EntryError::MissingBatch)
        );
        assert_eq!(
            decode_entry(Some(b"queue.v9"), Some(b"")),
            Err(EntryError::UnsupportedFormat("queue.v9".into()))
        );
        assert!(matches!(
            decode_entry(None, Some(&[0xff, 0xff, 0xff])),
            Err(EntryError::Decode(_))
        ));
    }
}
