//! The protobuf wire format read from a slice, as prost reads it from any `Buf`: keys,
//! varints, fixed-width values and length-delimited bytes, each accepting and refusing
//! exactly what prost's function for it does (`decode_key`, `decode_varint`, the
//! `encoding::*::merge` of each scalar type, `check_wire_type`).
//!
//! Why not prost's own functions: they are generic over `Buf` and return prost's boxed
//! error, and in the views they were most of the decoding's instructions. Here a key of
//! one byte (every field of an event has one in a canonical encoding) and a varint of one
//! or two bytes are read inline; everything else goes to prost's function, so the rules of
//! the long and odd cases are prost's by construction: varints of up to ten bytes, the
//! tenth refused past `u64::MAX`, keys past `u32::MAX`, tag 0, wire types 6 and 7. The
//! tests hold each function to prost's on every input of up to two bytes and on varints
//! of every length around the edges.

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
        _ => long_varint(buf),
    }
}

/// A varint of three bytes or more, or none: prost's rules for it, by prost. (A loop of
/// those rules written here cost as many instructions as prost's unrolled function.)
#[cold]
#[inline(never)]
fn long_varint(buf: &mut &[u8]) -> Result<u64, Refused> {
    Ok(decode_varint(buf)?)
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
/// (it steps byte by byte up to an aligned word), `is_ascii` about a third of that; this
/// runs for every text field of every event, in the gateway and again in the consumer.
/// Anything not ASCII goes to `from_utf8`, which decides.
///
/// The one `unsafe` block of the workspace (ARCHITECTURE.md, "Unsafe code"): safe Rust
/// has no way from checked ASCII bytes to a `&str` but `from_utf8`'s own check.
#[inline(always)]
#[allow(unsafe_code)]
pub fn utf8(bytes: &[u8]) -> Result<&str, Refused> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80, so each is a whole one-byte UTF-8 sequence
        // and the slice is valid UTF-8, which is all `from_utf8_unchecked` requires (test
        // `texts_are_accepted_as_from_utf8_accepts_them` holds this to `from_utf8`).
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).map_err(|_| Refused)
    }
}

#[cfg(test)]
mod tests;
