//! A `PublishRequest`'s wire format, read two ways:
//! - [`count_events`], a pre-scan that counts its events without decoding them, so that a
//!   request holding more than the limit is refused before prost allocates one `Event`
//!   (hundreds of bytes) for every two bytes of input;
//! - [`RawRequest::decode`], prost's own decoding of the request that also remembers where
//!   each event's bytes are, so that the gateway queues the bytes it validated instead of
//!   encoding the decoded events again.

use std::ops::Range;

use bytes::Bytes;
use pipeline::proto::ingest::{Event, PublishRequest};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType, decode_key, decode_varint},
};

/// The field number of `PublishRequest.events`.
const EVENTS_FIELD: u64 = 2;

/// How many `events` entries the encoded `PublishRequest` `message` holds.
///
/// Stops at the first malformed field: nothing after it can be decoded either, and the
/// decoder reports that with its own message. Groups (wire types 3 and 4, unknown fields
/// only) are stepped into rather than skipped, so an `events`-numbered field inside one is
/// counted too: the count may be too high for such odd input, never too low.
pub fn count_events(mut message: &[u8]) -> usize {
    let mut count = 0;
    while !message.is_empty() {
        let Ok(key) = decode_varint(&mut message) else {
            break;
        };
        let skip = match key & 0b111 {
            0 => match decode_varint(&mut message) {
                Ok(_) => 0,
                Err(_) => break,
            },
            1 => 8,
            2 => {
                let Some(len) = decode_varint(&mut message)
                    .ok()
                    .and_then(|len| usize::try_from(len).ok())
                else {
                    break;
                };
                if key >> 3 == EVENTS_FIELD && len <= message.len() {
                    count += 1;
                }
                len
            }
            3 | 4 => 0,
            5 => 4,
            _ => break,
        };
        if skip > message.len() {
            break;
        }
        message = &message[skip..];
    }
    count
}

/// A decoded `PublishRequest` with the message it was decoded from: every event can be
/// handed on as the bytes it was decoded from.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// The request as decoded, events included.
    request: PublishRequest,
    /// The message, as received (inflated by the edge when it came compressed); shared with
    /// the buffer tonic read it into, not copied.
    message: Bytes,
    /// Where each of `request.events` lies in `message`: the event's own bytes, without the
    /// field's key and length.
    spans: Vec<Range<usize>>,
}

impl RawRequest {
    /// Decodes `message` exactly as `PublishRequest::decode` does (prost's loop over its
    /// fields, each merged by prost's generated code), remembering each event's bytes.
    ///
    /// Decoding an event's bytes again gives the event decoded here, as protobuf decoding is
    /// a function of the bytes; and the consumer decodes them at the depth they have here
    /// (a message field of the top-level message), so even prost's recursion limit, which
    /// nested unknown groups can reach, applies alike.
    pub fn decode(message: Bytes) -> Result<RawRequest, DecodeError> {
        let mut request = PublishRequest::default();
        let mut spans = Vec::new();
        let mut buf = &message[..];
        let ctx = DecodeContext::default();
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            let field = message.len() - buf.len();
            request.merge_field(tag, wire_type, &mut buf, ctx.clone())?;
            if tag == EVENTS_FIELD as u32 && wire_type == WireType::LengthDelimited {
                // merged, so prost pushed one event, from the bytes after their length
                let end = message.len() - buf.len();
                let mut length = &message[field..end];
                let len = decode_varint(&mut length)? as usize;
                spans.push(end - len..end);
            }
        }
        debug_assert_eq!(spans.len(), request.events.len());
        Ok(RawRequest {
            request,
            message,
            spans,
        })
    }

    /// A request's canonical encoding, decoded: what tests and benchmarks start from.
    pub fn from_request(request: &PublishRequest) -> RawRequest {
        RawRequest::decode(request.encode_to_vec().into()).expect("prost decodes what it encoded")
    }

    /// The decoded events.
    pub fn events(&self) -> &[Event] {
        &self.request.events
    }

    /// The message's length in bytes: at least the bytes of all its events.
    pub fn message_len(&self) -> usize {
        self.message.len()
    }

    /// The decoded request, and the bytes of its events.
    pub fn into_parts(self) -> (PublishRequest, EventBytes) {
        (
            self.request,
            EventBytes {
                message: self.message,
                spans: self.spans,
            },
        )
    }
}

/// The bytes of a request's events, in request order.
#[derive(Clone, Debug)]
pub struct EventBytes {
    message: Bytes,
    spans: Vec<Range<usize>>,
}

impl EventBytes {
    /// The bytes of event `index` of the request, as the store sent them.
    pub fn get(&self, index: usize) -> &[u8] {
        &self.message[self.spans[index].clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_events_prost_would_decode() {
        for n in [0, 1, 3, 1000] {
            let request = PublishRequest {
                sequence: 99,
                events: vec![
                    Event {
                        event_id: "x".repeat(200),
                        ..Event::default()
                    };
                    n
                ],
                all_or_nothing: true,
            };
            assert_eq!(count_events(&request.encode_to_vec()), n);
        }
        // two million empty events: the bomb of issue 13, counted without decoding
        assert_eq!(count_events(&[0x12, 0x00].repeat(2_000_000)), 2_000_000);
    }

    #[test]
    fn a_raw_request_decodes_as_prost_does_and_finds_each_event_s_bytes() {
        let event = |id: &str| {
            Event {
                event_id: id.into(),
                ..Event::default()
            }
            .encode_to_vec()
        };
        let (a, b, c) = (event("a"), event("bb"), event("ccc"));
        let mut message = vec![0x08, 0x05]; // sequence 5, then 6 below: the last one wins
        message.extend([0x12, a.len() as u8]);
        message.extend(&a);
        // an unknown top-level group holding an events-numbered field: skipped, not an event
        message.extend([0x9b, 0x06, 0x12, 0x01, 0x0a, 0x9c, 0x06]);
        // an event behind a key and a length, each a varint longer than it needs to be
        message.extend([0x92, 0x00, 0x80 | b.len() as u8, 0x80, 0x00]);
        message.extend(&b);
        message.extend([0x08, 0x06, 0x18, 0x01, 0x78, 0x2a]); // all_or_nothing, field 15
        message.extend([0x12, c.len() as u8]);
        message.extend(&c);
        let raw = RawRequest::decode(Bytes::from(message.clone())).unwrap();
        let plain = PublishRequest::decode(&message[..]).unwrap();
        assert_eq!(raw.events(), plain.events);
        assert_eq!(raw.message_len(), message.len());
        let (request, bytes) = raw.into_parts();
        assert_eq!((request.sequence, request.all_or_nothing), (6, true));
        assert_eq!(request, plain);
        assert_eq!(
            [bytes.get(0), bytes.get(1), bytes.get(2)],
            [&a[..], &b[..], &c[..]]
        );

        // what prost refuses is refused alike, with prost's words
        for bad in [
            &[0x12, 0xff, 0xff, 0xff, 0x0f, 0x01][..],
            &[0x10, 0x01],                   // events as a varint
            &[0x12, 0x02, 0x0a, 0x05],       // an event_id running past the event
            &[0x12, 0x03, 0x0a, 0x01, 0xff], // not UTF-8
            &[0x00],
        ] {
            let raw = RawRequest::decode(Bytes::copy_from_slice(bad)).unwrap_err();
            let plain = PublishRequest::decode(bad).unwrap_err();
            assert_eq!(raw.to_string(), plain.to_string());
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_malformed_input_stops_the_count() {
        // field 15 varint, field 9 fixed64, field 10 fixed32, then an event
        let mut bytes = vec![0x78, 0x01, 0x49, 0, 0, 0, 0, 0, 0, 0, 0, 0x55, 0, 0, 0, 0];
        bytes.extend([0x12, 0x00]);
        assert_eq!(count_events(&bytes), 1);
        // a length running past the end, and a truncated varint
        assert_eq!(count_events(&[0x12, 0x00, 0x12, 0xff, 0x7f]), 1);
        assert_eq!(count_events(&[0x12, 0x00, 0xff]), 1);
        // a group holding events-numbered fields counts them: too high, never too low
        assert_eq!(count_events(&[0x9b, 0x06, 0x12, 0x00, 0x9c, 0x06]), 1);
    }
}
