//! prost is the reference: a view must accept and refuse exactly the bytes prost's
//! generated decoding does, and hold the values it decodes.

use prost::encoding::{encode_key, encode_varint};

use super::*;
use crate::proto::ingest::CommerceEventType;

pub(crate) fn key(tag: u32, wire_type: WireType) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, wire_type, &mut out);
    out
}

/// A length-delimited field `tag` holding `bytes`.
pub(crate) fn ld(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = key(tag, WireType::LengthDelimited);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A varint field.
pub(crate) fn vi(tag: u32, value: u64) -> Vec<u8> {
    let mut out = key(tag, WireType::Varint);
    encode_varint(value, &mut out);
    out
}

pub(crate) fn commerce_event() -> Event {
    Event {
        event_id: "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10".into(),
        occurred_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 7,
        }),
        store_id: "eu-1".into(),
        region: 1,
        payload: Some(Payload::Commerce(CommerceEvent {
            r#type: CommerceEventType::Purchase as i32,
            product_id: 11,
            category_id: 12,
            category_code: "kids.toys".into(),
            brand: "acme".into(),
            seller_id: 13,
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 19,
                nanos: 990_000_000,
            }),
            quantity: 2,
            user_id: 14,
            session_id: "s-1".into(),
        })),
    }
}

pub(crate) fn probe_event() -> Event {
    Event {
        payload: Some(Payload::Probe(ProbeResult {
            target: "checkout".into(),
            up: true,
            status_code: 200,
            response_time_ms: 300,
            network_latency_ms: 20,
            bandwidth_bytes_per_second: 1 << 40,
            cpu_load: 0.5,
            vantage_region: 2,
            tls_handshake_ms: 30,
            time_to_first_byte_ms: 100,
        })),
        ..commerce_event()
    }
}

pub(crate) fn event_depths() -> Depths {
    Depths::new(DecodeContext::default()).unwrap()
}

/// Decodes `bytes` both ways and returns prost's event when both accept them; panics when
/// they disagree on accepting or on the values.
pub(crate) fn agree(bytes: &[u8]) -> Option<Event> {
    let view = EventView::decode(bytes, &event_depths());
    let prost = Event::decode(bytes);
    match (view, prost) {
        (Ok(view), Ok(event)) => {
            assert_eq!(
                view,
                EventView::from(&event),
                "values differ for {bytes:02x?}"
            );
            Some(event)
        }
        (Err(Refused), Err(_)) => None,
        (view, prost) => panic!("view {view:?} but prost {prost:?} for {bytes:02x?}"),
    }
}

#[test]
fn views_decode_what_prost_decodes_on_odd_but_valid_events() {
    let canonical = commerce_event().encode_to_vec();
    assert!(agree(&canonical).is_some());
    assert!(agree(&probe_event().encode_to_vec()).is_some());
    assert_eq!(agree(&[]), Some(Event::default()));

    let commerce = |fields: &[Vec<u8>]| ld(10, &fields.concat());
    let probe = |fields: &[Vec<u8>]| ld(11, &fields.concat());
    let odd: Vec<Vec<u8>> = vec![
        // the last scalar and the last string win
        [
            canonical.clone(),
            ld(1, b"second"),
            vi(4, 3),
            ld(3, b"us-9"),
        ]
        .concat(),
        // a message field twice merges; a second commerce merges into the first
        [
            canonical.clone(),
            ld(2, &vi(2, 5)),
            commerce(&[vi(2, 99), ld(5, b"globex")]),
            commerce(&[ld(7, &vi(2, 5))]),
        ]
        .concat(),
        // commerce then probe: the probe replaces it; then commerce again: a new commerce
        [canonical.clone(), probe(&[ld(1, b"t"), vi(3, 204)])].concat(),
        [
            canonical.clone(),
            probe(&[ld(1, b"t")]),
            commerce(&[vi(2, 1)]),
        ]
        .concat(),
        // unknown fields of every wire type, at every level, and a nested unknown group
        [
            vi(99, 1),
            vec![0xc9, 0x02, 1, 2, 3, 4, 5, 6, 7, 8], // field 41, fixed64
            vec![0xd5, 0x02, 1, 2, 3, 4],             // field 42, fixed32
            ld(98, b"\xff\xfe not utf-8 is fine here"),
            vec![0x9b, 0x06, 0x08, 0x01, 0x13, 0x08, 0x01, 0x14, 0x9c, 0x06],
            canonical.clone(),
            commerce(&[vi(77, 5), ld(7, &[vi(9, 1), ld(1, b"USD")].concat())]),
            probe(&[vi(55, 1), vec![0x39, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]]),
        ]
        .concat(),
        // over-long varints: a key, a length and a value each padded
        [
            vec![0x8a, 0x00, 0x83, 0x80, 0x00],
            b"abc".to_vec(),
            vec![0xa0, 0x80, 0x00, 0x82, 0x80, 0x80, 0x00],
        ]
        .concat(),
        // negative int32 as ten bytes, a uint32 past u32::MAX truncated, bool as 2
        [
            vi(4, u64::MAX),
            commerce(&[vi(8, (1 << 32) + 3), vi(1, u64::MAX)]),
        ]
        .concat(),
        probe(&[vi(2, 2), vi(8, 1 << 33)]),
        // occurred_at: twice (merged), with unknown fields of every wire type and a group,
        // negative values as ten-byte varints, seconds past i64 as a u64, empty
        odd_timestamp(),
        [
            ld(2, &[vi(1, u64::MAX), vi(2, u64::MAX)].concat()),
            ld(2, &vi(1, 1 << 63)),
        ]
        .concat(),
        ld(2, &[]),
        // empty payloads and an empty price
        commerce(&[]),
        commerce(&[ld(7, &[])]),
        probe(&[]),
    ];
    for bytes in &odd {
        assert!(agree(bytes).is_some(), "prost refuses {bytes:02x?}");
    }
}

#[test]
fn views_refuse_what_prost_refuses() {
    let canonical = commerce_event().encode_to_vec();
    let bad: Vec<Vec<u8>> = vec![
        // a string as a varint, an int as a string, a message as a fixed64
        vi(1, 5),
        ld(4, b"x"),
        vec![0x11, 0, 0, 0, 0, 0, 0, 0, 0],
        // not UTF-8 in each text field
        ld(1, b"\xff"),
        ld(3, b"\xc3"),
        ld(10, &ld(4, b"\xff")),
        ld(10, &ld(5, b"\xff")),
        ld(10, &ld(10, b"\xff")),
        ld(10, &ld(7, &ld(1, b"\xff"))),
        ld(11, &ld(1, b"\xff")),
        // occurred_at as a varint, its seconds as a string, its nanos as a fixed32, a
        // truncated or overlong varint in it, its length past the event's end, a varint
        // running past its own end (prost reads on, then finds its length exceeded)
        vi(2, 1),
        ld(2, &ld(1, b"1")),
        ld(2, &[0x15, 1, 2, 3, 4]),
        ld(2, &[0x08, 0x80]),
        ld(2, &[vec![0x10], vec![0xff; 10], vec![0x01]].concat()),
        vec![0x12, 0x03, 0x08, 0x01],
        [vec![0x12, 0x02, 0x08, 0x80], vi(4, 1)].concat(),
        // an unknown group in it ended by another tag, or not at all
        ld(2, &[0x1b, 0x24]),
        ld(2, &[0x1b, 0x08, 0x01]),
        // lengths past the end, of the event and of a nested message
        vec![0x0a, 0x05, b'a'],
        vec![0x52, 0x03, 0x08],
        [vec![0x52, 0x02], ld(4, b"abc")].concat(),
        // a double cut short, a truncated varint, a key of tag 0, wire types 6 and 7
        vec![0x5a, 0x03, 0x39, 0, 0],
        vec![0x20, 0xff],
        vec![0x00],
        vec![0x0e],
        vec![0x0f],
        // an end group without its start, a group ended by another tag
        vec![0x9c, 0x06],
        vec![0x9b, 0x06, 0xa4, 0x06],
        // a varint of eleven bytes
        [vec![0x20], vec![0xff; 10], vec![0x01]].concat(),
        // good bytes, then garbage
        [canonical.clone(), vec![0xff]].concat(),
        [canonical, vec![0x52]].concat(),
    ];
    for bytes in &bad {
        assert!(agree(bytes).is_none(), "prost accepts {bytes:02x?}");
    }
}

/// Unknown groups nested `depth` deep inside an event's `commerce.price`.
pub(crate) fn nested_groups(depth: usize) -> Vec<u8> {
    let mut group = Vec::new();
    for _ in 0..depth {
        group.push(0x9b);
        group.push(0x06);
    }
    for _ in 0..depth {
        group.push(0x9c);
        group.push(0x06);
    }
    ld(10, &ld(7, &group))
}

#[test]
fn the_recursion_limit_applies_at_the_depth_prost_applies_it() {
    // prost refuses from some depth on; a view refuses from the same one
    let accepted: Vec<bool> = (90..100)
        .map(|depth| agree(&nested_groups(depth)).is_some())
        .collect();
    let flip = accepted
        .iter()
        .position(|a| !a)
        .expect("the limit is reached");
    assert!(
        flip > 0 && accepted[flip..].iter().all(|a| !a),
        "{accepted:?}"
    );
}

/// The mutations the property tests share with the gateway's (testkit).
pub(crate) use testkit::mutate::{Rng, mutate};

#[test]
fn views_agree_with_prost_on_mutated_bytes() {
    let mut rng = Rng(19);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..60_000 {
        match agree(&mutate(&mut rng, &seed_events())) {
            Some(_) => accepted += 1,
            None => refused += 1,
        }
    }
    // both outcomes were exercised, many times
    assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
}

/// Events to mutate: both payloads, nested unknown groups, an unknown field, an odd
/// `occurred_at`.
pub(crate) fn seed_events() -> Vec<Vec<u8>> {
    vec![
        commerce_event().encode_to_vec(),
        probe_event().encode_to_vec(),
        nested_groups(3),
        [vi(99, 1), ld(10, &ld(7, &ld(1, b"JPY")))].concat(),
        odd_timestamp(),
    ]
}

/// An event whose `occurred_at` comes twice, the second merged into the first, with
/// unknown fields of every wire type, a nested unknown group and a negative `nanos`.
pub(crate) fn odd_timestamp() -> Vec<u8> {
    let unknown = [
        vi(3, 5),
        ld(4, b"x"),
        vec![0x29, 1, 2, 3, 4, 5, 6, 7, 8], // field 5, fixed64
        vec![0x35, 1, 2, 3, 4],             // field 6, fixed32
        vec![0x3b, 0x0b, 0x08, 0x01, 0x0c, 0x3c], // field 7, a group holding one
    ]
    .concat();
    [
        ld(
            2,
            &[vi(1, 1_700_000_000), unknown.clone(), vi(2, 5)].concat(),
        ),
        ld(1, b"0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10"),
        ld(2, &[unknown, vi(2, -3i64 as u64)].concat()),
    ]
    .concat()
}

/// Every wire type prost knows.
pub(crate) const WIRE_TYPES: [WireType; 6] = [
    WireType::Varint,
    WireType::SixtyFourBit,
    WireType::LengthDelimited,
    WireType::StartGroup,
    WireType::EndGroup,
    WireType::ThirtyTwoBit,
];

/// A key as `key` writes it, one byte longer than it needs to be.
fn padded_key(tag: u32, wire_type: WireType) -> Vec<u8> {
    let mut out = key(tag, wire_type);
    *out.last_mut().unwrap() |= 0x80;
    out.push(0);
    out
}

/// `value` as a varint of ten bytes, whatever it needs.
fn ten_byte_varint(value: u64) -> Vec<u8> {
    let mut out: Vec<u8> = (0..9)
        .map(|i| 0x80 | (value >> (7 * i)) as u8 & 0x7f)
        .collect();
    out.push((value >> 63) as u8);
    out
}

#[test]
fn every_field_of_every_message_decodes_as_prost_decodes_it_whatever_its_key_and_wire_type() {
    // a field of each message, wrapped into an event: the event's own, occurred_at's,
    // commerce's, price's, probe's
    let wrappers: [fn(Vec<u8>) -> Vec<u8>; 5] = [
        |field| field,
        |field| ld(2, &field),
        |field| ld(10, &field),
        |field| ld(10, &ld(7, &field)),
        |field| ld(11, &field),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for wrap in wrappers {
        for tag in 1..=12 {
            for wire_type in WIRE_TYPES {
                for padded in [false, true] {
                    let key = if padded {
                        padded_key(tag, wire_type)
                    } else {
                        key(tag, wire_type)
                    };
                    // a value of the wire type: in a varint, one past u32::MAX and a
                    // negative int32, both as ten bytes, and 1 as ten bytes
                    let values: Vec<Vec<u8>> = match wire_type {
                        WireType::Varint => vec![
                            vec![0x05],
                            vec![0xac, 0x02],
                            ten_byte_varint(1),
                            ten_byte_varint((1 << 32) + 5),
                            ten_byte_varint(-7i64 as u64),
                        ],
                        WireType::SixtyFourBit => vec![0.25f64.to_le_bytes().to_vec()],
                        WireType::LengthDelimited => vec![
                            vec![0x00],
                            [vec![0x04], b"caf\xc3".to_vec()].concat(),
                            [vec![0x05], "caf\u{e9}".as_bytes().to_vec()].concat(),
                            [vec![0x02], vi(1, 3)].concat(),
                        ],
                        WireType::StartGroup => vec![self::key(tag, WireType::EndGroup)],
                        WireType::EndGroup => vec![vec![]],
                        WireType::ThirtyTwoBit => vec![vec![1, 2, 3, 4]],
                    };
                    for value in values {
                        match agree(&wrap([key.clone(), value].concat())) {
                            Some(_) => accepted += 1,
                            None => refused += 1,
                        }
                    }
                }
            }
        }
    }
    assert!(accepted > 100 && refused > 100, "{accepted} {refused}");
}

#[test]
fn text_fields_hold_what_prost_holds_in_any_script_and_refuse_what_it_refuses() {
    let texts: [&[u8]; 6] = [
        "caf\u{e9} \u{1f600}".as_bytes(),
        "\u{65e5}\u{672c}".as_bytes(),
        b"ascii, then \xe2\x82",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
    ];
    for (i, text) in texts.iter().enumerate() {
        for bytes in [
            ld(1, text),
            ld(3, text),
            ld(10, &ld(4, text)),
            ld(10, &ld(5, text)),
            ld(10, &ld(10, text)),
            ld(10, &ld(7, &ld(1, text))),
            ld(11, &ld(1, text)),
        ] {
            assert_eq!(agree(&bytes).is_some(), i < 2, "{bytes:02x?}");
        }
    }
}

/// Each message's fields one by one, as prost writes them (in tag order), every field
/// present (the nanos and `vantage_region` too).
struct InProstOrder {
    /// A commerce event's own fields, `commerce` the fifth.
    event: Vec<Vec<u8>>,
    commerce: Vec<Vec<u8>>,
    price: Vec<Vec<u8>>,
    probe: Vec<Vec<u8>>,
}

fn fields_in_prost_order() -> InProstOrder {
    let price = vec![ld(1, b"EUR"), vi(2, 19), vi(3, 990_000_000)];
    let commerce = vec![
        vi(1, 2),
        vi(2, 11),
        vi(3, 1 << 40),
        ld(4, b"kids.toys"),
        ld(5, b"acme"),
        vi(6, 13),
        ld(7, &price.concat()),
        vi(8, 2),
        vi(9, 300),
        ld(10, b"s-1"),
    ];
    let probe = vec![
        ld(1, b"checkout"),
        vi(2, 1),
        vi(3, 200),
        vi(4, 300),
        vi(5, 20),
        vi(6, 1 << 40),
        [vec![0x39], 0.5f64.to_le_bytes().to_vec()].concat(),
        vi(8, 2),
        vi(9, 30),
        vi(10, 100),
    ];
    InProstOrder {
        event: vec![
            ld(1, b"0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10"),
            ld(2, &[vi(1, 1_700_000_000), vi(2, 7)].concat()),
            ld(3, b"eu-1"),
            vi(4, 1),
            ld(10, &commerce.concat()),
        ],
        commerce,
        price,
        probe,
    }
}

#[test]
fn fields_out_of_prost_order_decode_as_prost_decodes_them() {
    // `merge` reads fields in prost's order without looking their keys up, then any others
    // by the general loop: shuffled, dropped, repeated and out-of-place fields, at every
    // level, must decode as prost decodes them
    let mut rng = Rng(23);
    let shuffle = |fields: &[Vec<u8>], rng: &mut Rng| -> Vec<u8> {
        let mut fields = fields.to_vec();
        match rng.below(4) {
            0 => {
                for i in (1..fields.len()).rev() {
                    fields.swap(i, rng.below(i + 1));
                }
            }
            1 => {
                fields.remove(rng.below(fields.len()));
            }
            2 => {
                let repeated = fields[rng.below(fields.len())].clone();
                fields.insert(rng.below(fields.len() + 1), repeated);
            }
            _ => {
                // adjacent fields swapped: the fast path stops there and the loop goes on
                let i = rng.below(fields.len() - 1);
                fields.swap(i, i + 1);
            }
        }
        fields.concat()
    };
    let InProstOrder {
        event,
        commerce,
        price,
        probe,
    } = fields_in_prost_order();
    // prost's own order decodes in full
    let decoded = agree(&event.concat()).expect("prost decodes it");
    assert!(decoded.payload.is_some() && decoded.occurred_at.is_some());
    let mut probe_event = event.clone();
    probe_event[4] = ld(11, &probe.concat());
    agree(&probe_event.concat()).expect("prost decodes it");
    for _ in 0..20_000 {
        let price = shuffle(&price, &mut rng);
        let mut payload = commerce.clone();
        payload[6] = ld(7, &price);
        let payload = shuffle(&payload, &mut rng);
        let probe = shuffle(&probe, &mut rng);
        let timestamp = shuffle(&[vi(1, 1_700_000_000), vi(2, 7)], &mut rng);
        let mut fields = event.clone();
        fields[1] = ld(2, &timestamp);
        fields[4] = match rng.below(3) {
            0 => ld(10, &payload),
            1 => ld(11, &probe),
            // both variants of the oneof, the last one winning
            _ => [ld(10, &payload), ld(11, &probe)].concat(),
        };
        let bytes = shuffle(&fields, &mut rng);
        // every such event is valid
        assert!(agree(&bytes).is_some(), "prost refuses {bytes:02x?}");
    }
}
