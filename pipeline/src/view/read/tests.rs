//! Each reader against the prost function it stands for, on every input of up to two
//! bytes and on the long, odd and cut-short varints around the fast paths' edges: the same
//! refusals, the same values, the same bytes left.

use prost::{
    DecodeError,
    encoding::{self, DecodeContext, decode_varint},
};
use testkit::mutate::Rng;

use crate::view::tests::WIRE_TYPES;

use super::*;

/// Inputs: every one of up to two bytes; varints of 1 to 11 bytes whose last byte is each
/// of the values that matter at the tenth (0, 1, 2, 0x7f), whole, cut short and followed by
/// more bytes; ten and eleven continuation bytes; random bytes; and random varints of every
/// length followed by random bytes.
fn inputs() -> Vec<Vec<u8>> {
    let mut inputs = vec![vec![]];
    for a in 0..=255u8 {
        inputs.push(vec![a]);
        for b in 0..=255u8 {
            inputs.push(vec![a, b]);
        }
    }
    for len in 1..=11 {
        for last in [0x00, 0x01, 0x02, 0x7f] {
            for fill in [0x80, 0xff, 0x81] {
                let mut varint = vec![fill; len - 1];
                varint.push(last);
                inputs.push(varint.clone());
                inputs.push(varint[..len - 1].to_vec());
                inputs.push([varint.clone(), vec![0x05, 0xa0, 0x01]].concat());
                inputs.push([varint, b"abcdefghij".to_vec()].concat());
            }
        }
    }
    inputs.push(vec![0x80; 10]);
    inputs.push(vec![0xff; 11]);
    inputs.push([vec![0xff; 9], vec![0x01]].concat());
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let len = rng.below(14);
        inputs.push((0..len).map(|_| rng.next_u64() as u8).collect());
    }
    // random varints of 1 to 11 bytes (any low bits, the high bit set on all but the
    // last), then 0 to 9 random bytes: whole words of every shape, and words cut short
    for _ in 0..50_000 {
        let len = 1 + rng.below(11);
        let mut input: Vec<u8> = (0..len)
            .map(|i| rng.next_u64() as u8 & 0x7f | if i + 1 < len { 0x80 } else { 0 })
            .collect();
        let tail = rng.below(10);
        input.extend((0..tail).map(|_| rng.next_u64() as u8));
        inputs.push(input);
    }
    inputs
}

/// `ours` and `prost`'s reading of `input` agree: both refuse, or both give the same value
/// and leave the same bytes.
fn agree<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    ours: impl FnOnce(&mut &[u8]) -> Result<T, Refused>,
    prost: impl FnOnce(&mut &[u8]) -> Result<T, DecodeError>,
) {
    let (mut a, mut b) = (input, input);
    match (ours(&mut a), prost(&mut b)) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x, y, "values for {input:02x?}");
            assert_eq!(a.len(), b.len(), "bytes left for {input:02x?}");
        }
        (Err(Refused), Err(_)) => {}
        (x, y) => panic!("ours {x:?} but prost {y:?} for {input:02x?}"),
    }
}

#[test]
fn keys_and_varints_are_read_as_prost_reads_them() {
    for input in inputs() {
        agree(&input, varint, |buf| decode_varint(buf));
        agree(&input, key, |buf| decode_key(buf));
    }
    // a known tag behind a key longer than it needs to be, and a key past u32::MAX
    assert_eq!(
        key(&mut &[0x8a, 0x00][..]),
        Ok((1, WireType::LengthDelimited))
    );
    assert_eq!(key(&mut &[0x88, 0x80, 0x00][..]), Ok((1, WireType::Varint)));
    assert_eq!(key(&mut &[0x80, 0x80, 0x80, 0x80, 0x10][..]), Err(Refused));
    // ten bytes: u64::MAX is the largest, one more bit in the tenth byte is refused
    assert_eq!(
        varint(&mut &[vec![0xff; 9], vec![0x01]].concat()[..]),
        Ok(u64::MAX)
    );
    assert_eq!(
        varint(&mut &[vec![0xff; 9], vec![0x02]].concat()[..]),
        Err(Refused)
    );
    assert_eq!(varint(&mut &[0x80, 0x00][..]), Ok(0));
}

/// prost's `merge` of a scalar type, over a slice.
type ProstMerge<T> = fn(WireType, &mut T, &mut &[u8], DecodeContext) -> Result<(), DecodeError>;

/// Our reader of a scalar type and prost's agree on every input and every wire type,
/// merging into a value that is not the default (so that a refusal leaving it alone and a
/// value written are told apart).
fn scalar_agrees<T: Copy + PartialEq + std::fmt::Debug>(
    start: T,
    ours: fn(WireType, &mut T, &mut &[u8]) -> Result<(), Refused>,
    prost: ProstMerge<T>,
) {
    for input in inputs() {
        for wire_type in WIRE_TYPES {
            agree(
                &input,
                |buf| {
                    let mut value = start;
                    ours(wire_type, &mut value, buf).map(|()| value)
                },
                |buf| {
                    let mut value = start;
                    prost(wire_type, &mut value, buf, DecodeContext::default()).map(|()| value)
                },
            );
        }
    }
}

#[test]
fn scalars_are_read_as_prost_reads_them() {
    scalar_agrees(7, uint64, |w, v, b, c| encoding::uint64::merge(w, v, b, c));
    scalar_agrees(7, int64, |w, v, b, c| encoding::int64::merge(w, v, b, c));
    // a 64-bit varint keeps its low 32 bits, a negative int32 comes as ten bytes
    scalar_agrees(7, uint32, |w, v, b, c| encoding::uint32::merge(w, v, b, c));
    scalar_agrees(7, int32, |w, v, b, c| encoding::int32::merge(w, v, b, c));
    scalar_agrees(true, bool, |w, v, b, c| encoding::bool::merge(w, v, b, c));
    // compared as bits: a NaN is one
    scalar_agrees(
        7,
        |wire_type, bits: &mut u64, buf| {
            let mut value = f64::from_bits(*bits);
            double(wire_type, &mut value, buf)?;
            *bits = value.to_bits();
            Ok(())
        },
        |wire_type, bits, buf, ctx| {
            let mut value = f64::from_bits(*bits);
            encoding::double::merge(wire_type, &mut value, buf, ctx)?;
            *bits = value.to_bits();
            Ok(())
        },
    );
    let mut negative = &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..];
    let mut region = 0;
    int32(WireType::Varint, &mut region, &mut negative).unwrap();
    assert_eq!((region, negative.len()), (-2, 0));
}

#[test]
fn text_and_bytes_are_bounded_and_checked_as_prost_does() {
    let texts: [&[u8]; 8] = [
        b"",
        b"eu-1",
        "d\u{e9}j\u{e0} vu \u{1f600}".as_bytes(),
        b"\xff",
        b"ok then \xc3",
        b"\xed\xa0\x80",
        b"0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10 and \xe2\x82",
        &[0; 200],
    ];
    let mut inputs = inputs();
    for text in texts {
        for len in [text.len() as u64, text.len() as u64 + 1, 1 << 40] {
            for pad in [false, true] {
                let mut field = Vec::new();
                encoding::encode_varint(len, &mut field);
                if pad {
                    // the same length, one byte longer than it needs to be
                    *field.last_mut().unwrap() |= 0x80;
                    field.push(0);
                }
                inputs.push([field, text.to_vec(), vec![0x08]].concat());
            }
        }
    }
    for input in inputs {
        for wire_type in WIRE_TYPES {
            agree(
                &input,
                |buf| length_delimited(wire_type, buf).map(<[u8]>::to_vec),
                |buf| {
                    let mut value = Vec::new();
                    encoding::bytes::merge(wire_type, &mut value, buf, DecodeContext::default())
                        .map(|()| value)
                },
            );
            agree(
                &input,
                |buf| {
                    let mut value = "";
                    str(wire_type, &mut value, buf).map(|()| value.to_owned())
                },
                |buf| {
                    let mut value = String::new();
                    encoding::string::merge(wire_type, &mut value, buf, DecodeContext::default())
                        .map(|()| value)
                },
            );
        }
    }
}

/// `utf8` accepts what `std::str::from_utf8` accepts, and only that, with the same text:
/// on every input of up to two bytes; on every input of three and four bytes drawn from the
/// bytes at the edges of UTF-8's ranges; on ASCII of every length up to 40 with any one byte
/// replaced by every value, each at every alignment (`is_ascii` reads words once aligned);
/// and on random bytes and random text cut anywhere.
#[test]
fn texts_are_accepted_as_from_utf8_accepts_them() {
    fn agree(input: &[u8]) {
        // at every offset from an 8-byte boundary
        let mut buffer = vec![0u8; input.len() + 16];
        let base = buffer.as_ptr().align_offset(8);
        for offset in 0..8 {
            let start = base + offset;
            buffer[start..start + input.len()].copy_from_slice(input);
            let bytes = &buffer[start..start + input.len()];
            assert_eq!(
                utf8(bytes).ok(),
                std::str::from_utf8(bytes).ok(),
                "{input:02x?}"
            );
        }
    }
    agree(&[]);
    for a in 0..=255u8 {
        agree(&[a]);
        for b in 0..=255u8 {
            agree(&[a, b]);
        }
    }
    let edges = [
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1,
        0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff,
    ];
    for a in edges {
        for b in edges {
            for c in edges {
                agree(&[a, b, c]);
                for d in edges {
                    agree(&[a, b, c, d]);
                }
            }
        }
    }
    let ascii = b"0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10 eu-1";
    for len in 0..=40 {
        agree(&ascii[..len]);
        for at in 0..len {
            for byte in 0..=255u8 {
                let mut text = ascii[..len].to_vec();
                text[at] = byte;
                agree(&text);
            }
        }
    }
    let mut rng = Rng(11);
    let chars = [
        'a',
        '\u{7f}',
        '\u{80}',
        '\u{e9}',
        '\u{7ff}',
        '\u{800}',
        '\u{20ac}',
        '\u{fffd}',
        '\u{10000}',
        '\u{1f600}',
        '\u{10ffff}',
    ];
    for _ in 0..20_000 {
        let len = rng.below(48);
        agree(&(0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>());
        let text: String = (0..rng.below(20))
            .map(|_| chars[rng.below(chars.len())])
            .collect();
        let cut = rng.below(text.len() + 1);
        agree(text.as_bytes());
        agree(&text.as_bytes()[..cut]);
        agree(&text.as_bytes()[cut..]);
    }
}

#[test]
fn ascii_is_what_std_says() {
    // every length up to past the point where std's takes over, each with every byte at
    // every position, at every offset from an 8-byte boundary
    let text: Vec<u8> = b"0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10 eu-1 electronics.smartphone"
        .iter()
        .cycle()
        .take(80)
        .copied()
        .collect();
    let mut buffer = vec![0u8; text.len() + 16];
    let base = buffer.as_ptr().align_offset(8);
    let mut refused = 0;
    for len in 0..=text.len() {
        for at in 0..len.max(1) {
            for byte in [0x00, 0x41, 0x7f, 0x80, 0x81, 0xc3, 0xfe, 0xff] {
                let mut input = text[..len].to_vec();
                if len > 0 {
                    input[at] = byte;
                }
                for offset in 0..8 {
                    let start = base + offset;
                    buffer[start..start + len].copy_from_slice(&input);
                    let bytes = &buffer[start..start + len];
                    assert_eq!(ascii(bytes), bytes.is_ascii(), "{bytes:02x?}");
                    refused += usize::from(!ascii(bytes));
                }
            }
        }
    }
    // half of the bytes tried are not ASCII, at every position of every length
    assert!(refused > 10_000, "{refused}");
}
