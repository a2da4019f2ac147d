//! A `PublishRequest`'s wire format, read in steps:
//! - [`count_events`], a pre-scan that counts its events without decoding them, so that a
//!   request holding more than the limit is refused before anything is decoded for every
//!   two bytes of input;
//! - [`RawRequest::decode`] (the codec), the request's own fields as prost decodes them,
//!   and where each event's bytes are;
//! - [`RawRequest::decode_events`] (the handler), every event decoded as a
//!   `pipeline::view::EventView` of those bytes: no `String`, no owned `Event`, one pass
//!   over each event's bytes. The gateway validates the views and queues the bytes they
//!   were decoded from, never encoding an event again.
//!
//! Together they accept, refuse and decode what `PublishRequest::decode` does, and a
//! refusal carries prost's own error (tests below and `pipeline::view`'s).

use std::ops::Range;

use bytes::Bytes;
use pipeline::{
    proto::ingest::PublishRequest,
    view::{self, Depths, EventView, Refused},
};
use prost::{DecodeError, Message, encoding::DecodeContext};

/// The field number of `PublishRequest.events`.
const EVENTS_FIELD: u32 = 2;

/// How many `events` entries the encoded `PublishRequest` `message` holds.
///
/// Stops at the first malformed field: nothing after it can be decoded either, and the
/// decoder reports that with its own message. Groups (wire types 3 and 4, unknown fields
/// only) are stepped into rather than skipped, so an `events`-numbered field inside one is
/// counted too: the count may be too high for such odd input, never too low.
pub fn count_events(message: &[u8]) -> usize {
    // `view::varint` accepts what prost's `decode_varint` does (its tests), the short cases
    // inline: the edge counts every message it receives
    count_events_reading(message, |buf| view::varint(buf).ok())
}

/// [`count_events`], its keys and lengths read by `varint` (`None`: malformed).
#[inline(always)]
fn count_events_reading(mut message: &[u8], varint: impl Fn(&mut &[u8]) -> Option<u64>) -> usize {
    let mut count = 0;
    while !message.is_empty() {
        let Some(key) = varint(&mut message) else {
            break;
        };
        let skip = match key & 0b111 {
            0 => match varint(&mut message) {
                Some(_) => 0,
                None => break,
            },
            1 => 8,
            2 => {
                let Some(len) = varint(&mut message).and_then(|len| usize::try_from(len).ok())
                else {
                    break;
                };
                if key >> 3 == u64::from(EVENTS_FIELD) && len <= message.len() {
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

/// A `PublishRequest` message whose own fields are decoded and whose events are located,
/// not yet decoded: what the codec hands to the handler.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// The message, as received (inflated by the edge when it came compressed); shared with
    /// the buffer tonic read it into, not copied.
    message: Bytes,
    /// `PublishRequest.sequence`, as prost decodes it (the last one wins).
    sequence: u64,
    /// `PublishRequest.all_or_nothing`, likewise.
    all_or_nothing: bool,
    /// Where each event lies in `message`: the event's own bytes, without the field's key
    /// and length, in request order.
    spans: Vec<Range<usize>>,
    /// The bytes of the largest event (0 for none), found as the events are located, so
    /// that the event size check costs nothing per event however often it runs.
    largest_event: usize,
}

/// A request's events decoded as views of its message, with the bytes of each.
#[derive(Clone, Debug)]
pub struct DecodedRequest<'a> {
    pub sequence: u64,
    pub all_or_nothing: bool,
    /// The events, in request order, their text fields slices of the message.
    pub events: Vec<EventView<'a>>,
    /// The bytes each event was decoded from.
    pub bytes: EventBytes<'a>,
}

impl RawRequest {
    /// Decodes `message`'s own fields as `PublishRequest::decode` does (prost's loop over
    /// its fields; every field but `events` merged by prost's generated code into a request
    /// that holds no event), and bounds each event's bytes as prost's `message::merge`
    /// does before decoding them. What it refuses, prost refuses, with prost's error.
    pub fn decode(message: Bytes) -> Result<RawRequest, DecodeError> {
        let mut header = PublishRequest::default();
        // a store's events take 100-300 bytes each
        let mut spans = Vec::with_capacity((message.len() / 128).min(10_000));
        let mut largest_event = 0;
        let mut buf = &message[..];
        let ctx = DecodeContext::default();
        let scanned = (|| -> Result<(), Refused> {
            while !buf.is_empty() {
                let (tag, wire_type) = view::key(&mut buf)?;
                if tag == EVENTS_FIELD {
                    let event = view::length_delimited(wire_type, &mut buf)?;
                    let end = message.len() - buf.len();
                    spans.push(end - event.len()..end);
                    largest_event = largest_event.max(event.len());
                } else {
                    header.merge_field(tag, wire_type, &mut buf, ctx.clone())?;
                }
            }
            Ok(())
        })();
        match scanned {
            Ok(()) => Ok(RawRequest {
                sequence: header.sequence,
                all_or_nothing: header.all_or_nothing,
                message,
                spans,
                largest_event,
            }),
            Err(Refused) => Err(prost_error(&message)),
        }
    }

    /// A request's canonical encoding, decoded: what tests and benchmarks start from.
    pub fn from_request(request: &PublishRequest) -> RawRequest {
        RawRequest::decode(request.encode_to_vec().into()).expect("prost decodes what it encoded")
    }

    /// Decodes every event as an [`EventView`] of the message, as `PublishRequest::decode`
    /// decodes its events: each read as prost's field functions read it (`pipeline::view`),
    /// with the `DecodeContext` of the depth prost decodes a
    /// message field of the top-level message (so even prost's recursion limit, which
    /// nested unknown groups can reach, applies alike), which is also the depth the
    /// consumer decodes them at in the entry. Allocates one vector of views, nothing per
    /// event.
    pub fn decode_events(&self) -> Result<DecodedRequest<'_>, DecodeError> {
        let decoded = (|| -> Result<Vec<EventView<'_>>, Refused> {
            let depths = Depths::new(view::deeper(&DecodeContext::default())?)?;
            let mut events = Vec::with_capacity(self.spans.len());
            for span in &self.spans {
                // decoded in its slot: a view is a few hundred bytes, not worth moving
                events.push(EventView::default());
                if let Some(event) = events.last_mut() {
                    event.merge(&self.message[span.clone()], &depths)?;
                }
            }
            Ok(events)
        })();
        match decoded {
            Ok(events) => Ok(DecodedRequest {
                sequence: self.sequence,
                all_or_nothing: self.all_or_nothing,
                events,
                bytes: EventBytes {
                    message: &self.message,
                    spans: &self.spans,
                    largest: self.largest_event,
                },
            }),
            Err(Refused) => Err(prost_error(&self.message)),
        }
    }

    /// How many events the message holds.
    pub fn event_count(&self) -> usize {
        self.spans.len()
    }

    /// The message's length in bytes: at least the bytes of all its events.
    pub fn message_len(&self) -> usize {
        self.message.len()
    }

    /// The message, as received.
    pub fn message(&self) -> &Bytes {
        &self.message
    }
}

/// Why prost refuses `message`: the rare path, taken only once the views refused it.
fn prost_error(message: &[u8]) -> DecodeError {
    match PublishRequest::decode(message) {
        Err(prost_says) => prost_says,
        // the views and prost disagree: a bug of this module or of pipeline::view, which
        // the property tests look for; refused all the same, saying so
        #[allow(deprecated)] // prost's own constructor, the one way to word a DecodeError
        Ok(_) => DecodeError::new(
            "refused by the gateway's borrowed decoder though prost decodes it (a bug of \
             pipeline::view)",
        ),
    }
}

/// The bytes of a request's events, in request order.
#[derive(Clone, Copy, Debug)]
pub struct EventBytes<'a> {
    message: &'a [u8],
    spans: &'a [Range<usize>],
    largest: usize,
}

impl<'a> EventBytes<'a> {
    /// The bytes of event `index` of the request, as the store sent them.
    pub fn get(&self, index: usize) -> &'a [u8] {
        &self.message[self.spans[index].clone()]
    }

    /// The bytes of the request's largest event (0 for none).
    pub fn largest(&self) -> usize {
        self.largest
    }
}

#[cfg(test)]
mod tests {
    use pipeline::proto::ingest::Event;
    use testkit::mutate::{Rng, mutate};

    use super::*;

    /// What the gateway decodes of `message`, codec and handler together: the request's
    /// fields and its events (as owned events, to compare), or the refusal's words.
    fn decoded(message: &[u8]) -> Result<PublishRequest, String> {
        let raw = RawRequest::decode(Bytes::copy_from_slice(message)).map_err(|e| e.to_string())?;
        let decoded = raw.decode_events().map_err(|e| e.to_string())?;
        // every view is the prost event it agrees with field by field: compared as views
        let plain = PublishRequest::decode(message).expect("the gateway decoded it");
        let views: Vec<EventView<'_>> = plain.events.iter().map(EventView::from).collect();
        assert_eq!(decoded.events, views);
        for (i, event) in plain.events.iter().enumerate() {
            let bytes = decoded.bytes.get(i);
            assert_eq!(&Event::decode(bytes).unwrap(), event, "event {i}'s bytes");
        }
        let largest = (0..plain.events.len())
            .map(|i| decoded.bytes.get(i).len())
            .max()
            .unwrap_or(0);
        assert_eq!(
            decoded.bytes.largest(),
            largest,
            "the largest event's bytes"
        );
        Ok(PublishRequest {
            sequence: decoded.sequence,
            events: plain.events.clone(),
            all_or_nothing: decoded.all_or_nothing,
        })
    }

    /// `decoded` and `PublishRequest::decode` agree: both accept (and decode the same
    /// request) or both refuse, with prost's words.
    fn agree(message: &[u8]) -> bool {
        let plain = PublishRequest::decode(message).map_err(|e| e.to_string());
        let ours = decoded(message);
        assert_eq!(ours, plain, "{message:02x?}");
        ours.is_ok()
    }

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
        assert!(agree(&message));
        let raw = RawRequest::decode(Bytes::from(message.clone())).unwrap();
        assert_eq!(raw.message_len(), message.len());
        assert_eq!(raw.event_count(), 3);
        let request = raw.decode_events().unwrap();
        assert_eq!((request.sequence, request.all_or_nothing), (6, true));
        assert_eq!(
            [
                request.bytes.get(0),
                request.bytes.get(1),
                request.bytes.get(2)
            ],
            [&a[..], &b[..], &c[..]]
        );

        // what prost refuses is refused alike, with prost's words: in the request's own
        // fields (by the codec) or in an event (when the handler decodes the events)
        for bad in [
            &[0x12, 0xff, 0xff, 0xff, 0x0f, 0x01][..],
            &[0x10, 0x01],                   // events as a varint
            &[0x12, 0x02, 0x0a, 0x05],       // an event_id running past the event
            &[0x12, 0x03, 0x0a, 0x01, 0xff], // not UTF-8
            &[0x12, 0x02, 0x22, 0x00, 0x08], // a region of the wrong wire type, then a key cut
            &[0x12, 0x00, 0x08],             // a sequence without its value
            &[0x00],
        ] {
            assert!(!agree(bad), "{bad:02x?}");
        }
    }

    /// A request of `events`, each behind the key of field 2 and its length.
    fn request_of(events: &[Vec<u8>]) -> Vec<u8> {
        let mut message = vec![0x08, 0x07];
        for event in events {
            message.push(0x12);
            prost::encoding::encode_varint(event.len() as u64, &mut message);
            message.extend(event);
        }
        message
    }

    /// An event valid but for `depth` nested unknown groups after its fields.
    fn with_nested_groups(depth: usize) -> Vec<u8> {
        let mut event = Event {
            event_id: "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10".into(),
            ..Event::default()
        }
        .encode_to_vec();
        event.extend([0x9bu8, 0x06].repeat(depth));
        event.extend([0x9cu8, 0x06].repeat(depth));
        event
    }

    #[test]
    fn nested_unknown_groups_reach_prost_s_recursion_limit_at_the_same_depth() {
        let outcomes: Vec<bool> = (95..=100)
            .map(|depth| agree(&request_of(&[with_nested_groups(depth)])))
            .collect();
        // the limit lies within the range: both outcomes were seen
        assert!(
            outcomes.contains(&true) && outcomes.contains(&false),
            "{outcomes:?}"
        );
    }

    /// Requests to mutate: both payloads, odd encodings, nested groups, unknown fields.
    fn seed_requests() -> Vec<Vec<u8>> {
        use pipeline::proto::ingest::{CommerceEvent, Money, ProbeResult, event::Payload};
        let commerce = Event {
            event_id: "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 7,
            }),
            store_id: "eu-1".into(),
            region: 1,
            // every kind of field: varints, texts, a message in the message
            payload: Some(Payload::Commerce(CommerceEvent {
                r#type: 4,
                category_code: "kids.toys".into(),
                price: Some(Money {
                    currency_code: "JPY".into(),
                    units: 1_990,
                    nanos: 0,
                }),
                quantity: 2,
                session_id: "s-1".into(),
                ..CommerceEvent::default()
            })),
        };
        let probe = Event {
            payload: Some(Payload::Probe(ProbeResult {
                target: "checkout".into(),
                up: true,
                status_code: 200,
                response_time_ms: 300,
                cpu_load: 0.5,
                ..ProbeResult::default()
            })),
            ..commerce.clone()
        };
        let (commerce, probe) = (commerce.encode_to_vec(), probe.encode_to_vec());
        let mut unknown = commerce.clone();
        unknown.extend([0x98, 0x06, 0x2a, 0xbb, 0x06, 0x08, 0x01, 0xbc, 0x06]);
        let mut odd = vec![0x18, 0x01, 0x78, 0x2a, 0x9b, 0x06, 0x12, 0x00, 0x9c, 0x06];
        odd.extend(request_of(&[probe.clone(), unknown]));
        vec![
            request_of(&[commerce.clone(), probe.clone(), commerce]),
            request_of(&[with_nested_groups(97), probe]),
            odd,
        ]
    }

    /// The views and prost decode mutated requests alike: the same refusals, with the same
    /// words, and the same events and fields otherwise.
    #[test]
    fn the_gateway_s_decoding_agrees_with_prost_on_mutated_requests() {
        let seeds = seed_requests();
        let mut rng = Rng(19);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..30_000 {
            if agree(&mutate(&mut rng, &seeds)) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // both outcomes were exercised, many times
        assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
    }

    /// The count is the one it was with keys and lengths read by prost's `decode_varint`:
    /// on every input of up to two bytes, on those bytes as an events field's length and
    /// before an empty event, on long and cut-short varints, and on mutated requests.
    #[test]
    fn the_count_agrees_with_one_over_prost_s_varints() {
        let mut inputs = vec![vec![]];
        for a in 0..=255u8 {
            inputs.push(vec![a]);
            for b in 0..=255u8 {
                inputs.push(vec![a, b]);
                inputs.push(vec![0x12, a, b]);
                inputs.push(vec![a, b, 0x12, 0x00]);
            }
        }
        for len in 1..=11 {
            for last in [0x00, 0x01, 0x02, 0x7f] {
                for fill in [0x80, 0xff] {
                    let mut varint = vec![fill; len - 1];
                    varint.push(last);
                    // as a key, as a length, as a varint field's value
                    inputs.push([&varint[..], &[0x00, 0x12, 0x00]].concat());
                    inputs.push([&[0x12][..], &varint, &[0x00; 3]].concat());
                    inputs.push([&[0x08][..], &varint, &[0x12, 0x00]].concat());
                    inputs.push([&[0x12][..], &varint[..len - 1]].concat());
                }
            }
        }
        let seeds = seed_requests();
        let mut rng = Rng(23);
        inputs.extend((0..30_000).map(|_| mutate(&mut rng, &seeds)));
        inputs.extend(seeds);
        let mut counted = 0;
        for input in &inputs {
            let count = count_events(input);
            let by_prost =
                count_events_reading(input, |buf| prost::encoding::decode_varint(buf).ok());
            assert_eq!(count, by_prost, "{input:02x?}");
            counted += count;
        }
        // not all zero: events were found, in many inputs
        assert!(counted > 30_000, "{counted}");
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
