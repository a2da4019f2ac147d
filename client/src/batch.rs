//! A batch of events encoded once: the bytes of the `events` field of a `PublishRequest`,
//! sent as they are on the first attempt, on every retry and after a restart from the
//! spool, so a retry can never change an event.

use bytes::{BufMut, Bytes, BytesMut};
use pipeline::proto::ingest::Event;
use prost::{
    Message as _,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint},
};

/// `PublishRequest.sequence`.
const SEQUENCE_FIELD: u32 = 1;
/// `PublishRequest.events`.
const EVENTS_FIELD: u32 = 2;

/// Events ready to send: their encoded bytes and their ids.
///
/// The bytes are those of `PublishRequest { sequence: 0, events, all_or_nothing: false }`,
/// which is the concatenation of one length-delimited `events` field per event; a stream
/// request adds its `sequence` in front without touching them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    encoded: Bytes,
    len: usize,
}

impl Batch {
    /// Encodes `events` once.
    pub fn new(events: &[Event]) -> Batch {
        let mut buf = BytesMut::with_capacity(events.iter().map(framed_len).sum());
        for event in events {
            frame(event, &mut buf);
        }
        Batch {
            encoded: buf.freeze(),
            len: events.len(),
        }
    }

    /// A batch from bytes already encoded as `PublishRequest` with only `events` set
    /// (the simulator writes them straight from its drafts). `len` is the number of events.
    pub fn from_encoded(encoded: Bytes, len: usize) -> Batch {
        Batch { encoded, len }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the encoded events in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// The encoded `PublishRequest` with sequence 0, as unary `Publish` sends it.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The events decoded again (for the ids of rejected events, and for tests).
    pub fn events(&self) -> Result<Vec<Event>, prost::DecodeError> {
        Ok(pipeline::proto::ingest::PublishRequest::decode(self.encoded.clone())?.events)
    }

    /// The request with `sequence` set, as `PublishStream` sends it: the sequence field
    /// in front of the unchanged event bytes.
    pub fn with_sequence(&self, sequence: u64) -> Bytes {
        if sequence == 0 {
            return self.encoded.clone();
        }
        let mut buf = BytesMut::with_capacity(11 + self.encoded.len());
        encode_key(SEQUENCE_FIELD, WireType::Varint, &mut buf);
        encode_varint(sequence, &mut buf);
        buf.put_slice(&self.encoded);
        buf.freeze()
    }
}

/// Bytes `event` takes inside a batch: its key, its length and its body.
pub fn framed_len(event: &Event) -> usize {
    framed_len_of(event.encoded_len())
}

/// Bytes an event of `body` bytes takes inside a batch ([`framed_len`]).
pub fn framed_len_of(body: usize) -> usize {
    1 + encoded_len_varint(body as u64) + body
}

/// Appends `event` as one `events` field.
pub fn frame(event: &Event, buf: &mut impl BufMut) {
    encode_key(EVENTS_FIELD, WireType::LengthDelimited, buf);
    encode_varint(event.encoded_len() as u64, buf);
    event.encode_raw(buf);
}

/// The length of the longest prefix of `bytes` made of whole `events` fields, and how many
/// there are. A spool file cut short by a crash ends in a partial record; it is dropped.
pub fn whole_records(bytes: &[u8]) -> (usize, usize) {
    let (mut at, mut count) = (0, 0);
    while at < bytes.len() {
        let mut rest = &bytes[at..];
        let start = rest.len();
        let Ok(key) = prost::encoding::decode_varint(&mut rest) else {
            break;
        };
        if key != u64::from(EVENTS_FIELD << 3 | WireType::LengthDelimited as u32) {
            break;
        }
        let Ok(len) = prost::encoding::decode_varint(&mut rest) else {
            break;
        };
        let head = start - rest.len();
        let Some(end) = (head as u64).checked_add(len).map(|e| at as u64 + e) else {
            break;
        };
        if end > bytes.len() as u64 || Event::decode(&bytes[at + head..end as usize]).is_err() {
            break;
        }
        at = end as usize;
        count += 1;
    }
    (at, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::proto::ingest::PublishRequest;

    fn event(id: &str) -> Event {
        Event {
            event_id: id.into(),
            store_id: "eu-1".into(),
            ..Event::default()
        }
    }

    #[test]
    fn a_batch_is_the_bytes_prost_writes() {
        let events = vec![event("a"), event("b")];
        let batch = Batch::new(&events);
        let expected = PublishRequest {
            sequence: 0,
            events: events.clone(),
            all_or_nothing: false,
        };
        assert_eq!(&batch.encoded()[..], &expected.encode_to_vec()[..]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.events().unwrap(), events);
        let streamed = PublishRequest::decode(batch.with_sequence(300)).unwrap();
        assert_eq!(
            streamed,
            PublishRequest {
                sequence: 300,
                ..expected
            }
        );
        assert!(batch.with_sequence(300).ends_with(batch.encoded()));
    }

    #[test]
    fn a_cut_record_is_dropped_and_whole_ones_kept() {
        let batch = Batch::new(&[event("a"), event("b")]);
        let bytes = batch.encoded();
        assert_eq!(whole_records(bytes), (bytes.len(), 2));
        let (first, n) = whole_records(&bytes[..bytes.len() - 1]);
        assert_eq!(n, 1);
        assert_eq!(whole_records(&bytes[..first]), (first, 1));
        assert_eq!(whole_records(b"\xff\xff\xff"), (0, 0));
        assert_eq!(whole_records(&[]), (0, 0));
    }
}
