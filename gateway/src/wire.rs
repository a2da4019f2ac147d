//! A pre-scan of a `PublishRequest`'s wire format: counts its events without decoding them,
//! so that a request holding more than the limit is refused before prost allocates one
//! `Event` (hundreds of bytes) for every two bytes of input.

use prost::encoding::decode_varint;

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

#[cfg(test)]
mod tests {
    use pipeline::proto::ingest::{Event, PublishRequest};
    use prost::Message;

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
