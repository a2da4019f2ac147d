//! The protobuf wire format read from a slice, as prost reads it from any `Buf`: keys,
//! varints, fixed-width values and length-delimited bytes, each accepting and refusing
//! exactly what prost's function for it does (`decode_key`, `decode_varint`, the
//! `encoding::*::merge` of each scalar type, `check_wire_type`).
//!
//! Why not prost's own functions: they are generic over `Buf` and return prost's boxed
//! error, and in the views they were most of the decoding's instructions. Here a key of
//! one byte (every field of an event has one in a canonical encoding) and a varint of one
//! or two bytes are read inline, one of up to eight bytes as one word; everything else
//! goes to prost's function, so the rules of the long and odd cases are prost's by
//! construction: varints of nine and ten bytes, the tenth refused past `u64::MAX`, keys
//! past `u32::MAX`, tag 0, wire types 6 and 7 (and a varint cut short is refused here as
//! prost refuses it). The tests hold each function to prost's on every input of up to two
//! bytes, on varints of every length around the edges and on random varints of every
//! length.

use prost::encoding::{WireType, decode_key, decode_varint};

use super::Refused;

/// A field's key: prost's `decode_key`, a key of one byte read here.
#[inline(always)]
pub fn key(buf: &mut &[u8]) -> Result<(u32, WireType), Refused> {
    let bytes = *buf;
    if let [byte, rest @ ..] = bytes
        && *byte < 0x80
    {
        let wire_type = match *byte & 0b111 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            _ => return Err(Refused),
        };
        let tag = u32::from(*byte >> 3);
        if tag == 0 {
            return Err(Refused);
        }
        *buf = rest;
        return Ok((tag, wire_type));
    }
    Ok(decode_key(buf)?)
}

/// A varint: prost's `decode_varint`, one of one or two bytes read inline.
#[inline(always)]
pub fn varint(buf: &mut &[u8]) -> Result<u64, Refused> {
    let bytes = *buf;
    match bytes {
        [low, rest @ ..] if *low < 0x80 => {
            *buf = rest;
            Ok(u64::from(*low))
        }
        // the first byte has its continuation bit set, or the arm above had matched
        [low, high, rest @ ..] if *high < 0x80 => {
            *buf = rest;
            Ok(u64::from(*low & 0x7f) | u64::from(*high) << 7)
        }
        _ => {
            // the slice goes by value and comes back as a length: a caller's cursor that
            // no function call takes by reference can stay in registers
            let (value, len) = long_varint(bytes)?;
            *buf = bytes.get(len..).ok_or(Refused)?;
            Ok(value)
        }
    }
}

/// A varint of three bytes or more, or none. One of up to eight bytes is read as one word
/// (an event's times, prices and ids take three to five bytes each), one of nine as that
/// word and its ninth byte (a real catalogue's 19-digit category ids), or byte by byte when
/// fewer than eight bytes are left (the last field of a message); ten bytes go to prost,
/// whose rules then apply by construction: the tenth refused past `u64::MAX`. Up to nine
/// bytes there are only two rules: the value is the low seven bits of each byte up to the
/// first without its high bit, at most 63 bits, whatever those bytes (prost accepts a
/// varint longer than it needs to be, and so does this); and a varint cut short by the end
/// of the bytes is refused. Returns the value and the bytes it took.
#[inline(never)]
fn long_varint(bytes: &[u8]) -> Result<(u64, usize), Refused> {
    let Some(word) = bytes.first_chunk::<8>() else {
        let mut value = 0;
        for (i, byte) in bytes.iter().enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if *byte < 0x80 {
                return Ok((value, i + 1));
            }
        }
        return Err(Refused);
    };
    let word = u64::from_le_bytes(*word);
    // the high bit of each byte that ends a varint, the first one lowest
    let ends = !word & 0x8080_8080_8080_8080;
    if ends == 0 {
        // nine bytes: the word's eight all continue and a ninth ends the varint, as the
        // 19-digit ids of real catalogues (category ids of about 2^61) do
        if let Some(&ninth) = bytes.get(8)
            && ninth < 0x80
        {
            return Ok((seven_bit_groups(word) | u64::from(ninth) << 56, 9));
        }
        let mut rest = bytes;
        let value = decode_varint(&mut rest)?;
        return Ok((value, bytes.len() - rest.len()));
    }
    // the varint's bytes: every bit up to its last byte's high bit, which is clear
    Ok((
        seven_bit_groups(word & (ends ^ (ends - 1))),
        (ends.trailing_zeros() / 8 + 1) as usize,
    ))
}

/// The low seven bits of each byte of `word`, little endian, packed together: the value of
/// a varint of eight bytes or less (its high bits clear), three shifts instead of a step
/// per byte.
#[inline(always)]
fn seven_bit_groups(word: u64) -> u64 {
    let x = word & 0x7f7f_7f7f_7f7f_7f7f;
    // 14 bits in each 16, then 28 in each 32, then 56
    let x = (x & 0x007f_007f_007f_007f) | (x & 0x7f00_7f00_7f00_7f00) >> 1;
    let x = (x & 0x0000_3fff_0000_3fff) | (x & 0x3fff_0000_3fff_0000) >> 2;
    (x & 0x0000_0000_0fff_ffff) | (x & 0x0fff_ffff_0000_0000) >> 4
}

/// prost's `check_wire_type`.
#[inline(always)]
fn expect(wire_type: WireType, expected: WireType) -> Result<(), Refused> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(Refused)
    }
}

/// A varint field's value: prost's `uint64::merge` and the others, whose value is the
/// varint cast (`int32` keeps the low 32 bits of a 64-bit varint, as prost's `as i32`).
#[inline(always)]
fn varint_field(wire_type: WireType, buf: &mut &[u8]) -> Result<u64, Refused> {
    expect(wire_type, WireType::Varint)?;
    varint(buf)
}

/// prost's `uint64::merge`.
#[inline(always)]
pub fn uint64(wire_type: WireType, value: &mut u64, buf: &mut &[u8]) -> Result<(), Refused> {
    *value = varint_field(wire_type, buf)?;
    Ok(())
}

/// prost's `int64::merge`.
#[inline(always)]
pub fn int64(wire_type: WireType, value: &mut i64, buf: &mut &[u8]) -> Result<(), Refused> {
    *value = varint_field(wire_type, buf)? as i64;
    Ok(())
}

/// prost's `uint32::merge`: the varint's low 32 bits.
#[inline(always)]
pub fn uint32(wire_type: WireType, value: &mut u32, buf: &mut &[u8]) -> Result<(), Refused> {
    *value = varint_field(wire_type, buf)? as u32;
    Ok(())
}

/// prost's `int32::merge`: the varint's low 32 bits (a negative `int32` is written as ten
/// bytes).
#[inline(always)]
pub fn int32(wire_type: WireType, value: &mut i32, buf: &mut &[u8]) -> Result<(), Refused> {
    *value = varint_field(wire_type, buf)? as i32;
    Ok(())
}

/// prost's `bool::merge`: any varint but 0 is true.
#[inline(always)]
pub fn bool(wire_type: WireType, value: &mut bool, buf: &mut &[u8]) -> Result<(), Refused> {
    *value = varint_field(wire_type, buf)? != 0;
    Ok(())
}

/// prost's `double::merge`: eight bytes, little endian.
#[inline(always)]
pub fn double(wire_type: WireType, value: &mut f64, buf: &mut &[u8]) -> Result<(), Refused> {
    expect(wire_type, WireType::SixtyFourBit)?;
    let (bytes, rest) = buf.split_first_chunk::<8>().ok_or(Refused)?;
    *value = f64::from_le_bytes(*bytes);
    *buf = rest;
    Ok(())
}

/// The bytes of a length-delimited field, as prost bounds them (its `string::merge`,
/// `bytes::merge` and `message::merge`): the wire type checked, the length a varint no
/// longer than what is left.
#[inline(always)]
pub fn length_delimited<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], Refused> {
    expect(wire_type, WireType::LengthDelimited)?;
    let len = varint(buf)?;
    // `split_at_checked` bounds the length as prost does: `len > remaining` is refused
    let (field, rest) = buf
        .split_at_checked(usize::try_from(len).map_err(|_| Refused)?)
        .ok_or(Refused)?;
    *buf = rest;
    Ok(field)
}

/// prost's `string::merge`, borrowing: the last value wins.
#[inline(always)]
pub fn str<'a>(
    wire_type: WireType,
    value: &mut &'a str,
    buf: &mut &'a [u8],
) -> Result<(), Refused> {
    *value = utf8(length_delimited(wire_type, buf)?)?;
    Ok(())
}

/// `bytes` as text: what `std::str::from_utf8` accepts, and only that, with ASCII taken
/// first. Every text of a store's events is ASCII in practice (ids, codes, names of a few
/// to 36 bytes), and for such short texts `from_utf8` costs about 100 instructions each
/// (it steps byte by byte up to an aligned word), `is_ascii` about a third of that and
/// [`ascii`] less again; this runs for every text field of every event, in the gateway and
/// again in the consumer. Anything not ASCII goes to `from_utf8`, which decides.
///
/// One of the workspace's two `unsafe` blocks (ARCHITECTURE.md, "Unsafe code"): safe Rust
/// has no way from checked ASCII bytes to a `&str` but `from_utf8`'s own check.
#[inline(always)]
#[allow(unsafe_code)]
pub fn utf8(bytes: &[u8]) -> Result<&str, Refused> {
    if ascii(bytes) {
        // SAFETY: every byte is below 0x80 (`ascii` reads each of them: test
        // `ascii_is_what_std_says`), so each is a whole one-byte UTF-8 sequence and the
        // slice is valid UTF-8, which is all `from_utf8_unchecked` requires (test
        // `texts_are_accepted_as_from_utf8_accepts_them` holds this to `from_utf8`).
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).map_err(|_| Refused)
    }
}

/// `<[u8]>::is_ascii`, for the short texts of an event in a few word reads. std's takes
/// chunks of 16 and then steps byte by byte through what is left, most of a text of 10 or
/// 20 bytes; here a text of 8 to 64 bytes is read as words of eight, the last word ending
/// at the text's end (overlapping the one before it, so every byte is in at least one), one
/// of 4 to 7 bytes as two overlapping words of four. Longer texts go to std's, whose
/// chunks pay there. Test `ascii_is_what_std_says`.
#[inline(always)]
pub fn ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if bytes.len() > 64 {
        return bytes.is_ascii();
    }
    if let Some(last) = bytes.last_chunk::<8>() {
        let (words, _) = bytes.as_chunks::<8>();
        let any = words.iter().fold(u64::from_ne_bytes(*last), |any, word| {
            any | u64::from_ne_bytes(*word)
        });
        any & HIGH == 0
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        (u32::from_ne_bytes(*first) | u32::from_ne_bytes(*last)) & 0x8080_8080 == 0
    } else {
        bytes.iter().all(|byte| *byte < 0x80)
    }
}

#[cfg(test)]
mod tests;
