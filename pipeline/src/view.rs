//! Events decoded without allocating: each text field a `&str` slice of the bytes the event
//! was decoded from, every other field as prost decodes it.
//!
//! [`EventView`] is the one shape the rules (`validate`) and the row conversion (`rows`)
//! read. It is made two ways:
//! - from an owned prost [`Event`] (`EventView::from`), borrowing its strings: for every
//!   caller that holds decoded events;
//! - by [`EventView::merge`], decoding an `Event` message's bytes as prost's generated
//!   `Event::merge` does, field by field: the gateway's path (`gateway::wire`, each event
//!   of a request) and the consumer's (`entry::BatchView`, each event of an entry), where
//!   the bytes outlive every view of them.
//!
//! **Decoding is prost's.** Each field is read as prost's generated `merge_field` reads it:
//! keys, varints and scalar values by `read`, this module's slice-only counterpart of
//! prost's `decode_key`, `decode_varint` and `int32::merge` and the others (their common
//! short cases inline, every long or odd case handed to prost's own function); unknown
//! fields by prost's `skip_field`, with the `DecodeContext` of the depth prost would be at;
//! a text field is prost's `string::merge` without the copy (the wire type checked, the
//! length bounded, UTF-8 checked, the last one winning); a message field (`occurred_at`,
//! `commerce`, `probe`, `price`) is prost's `message::merge` written out for a slice (its
//! length bounded, its fields merged into the value already there, a oneof variant replaced
//! by the other). So the view accepts and refuses exactly the bytes `Event::decode` does
//! and holds the same values (tests `views_decode_what_prost_decodes_on_odd_but_valid_events`,
//! `views_refuse_what_prost_refuses`, `views_agree_with_prost_on_mutated_bytes`, and
//! `read`'s own against prost's functions). A refusal carries no words of its own: callers
//! ask prost for its error message (the rare path).
//!
//! **In prost's order first.** Each message's fields are read first in the order prost
//! writes them, each only if its one-byte key is next, by the same `merge_field` arm with
//! the tag and wire type as constants (no key decoded, no dispatch); from the first key that
//! is not the next expected, the general loop reads the rest, any field in any order. Either
//! way a field is read by the same arm, in the order of the bytes, so this changes the cost,
//! not the result (test `fields_out_of_prost_order_decode_as_prost_decodes_them`).

use prost::{
    Message,
    bytes::Buf,
    encoding::{self, DecodeContext, WireType, skip_field},
};
use prost_types::Timestamp;

use crate::proto::ingest::{CommerceEvent, Event, Money, ProbeResult, event::Payload};

mod read;

pub(crate) use read::str as merge_str;
pub use read::{key, length_delimited, varint};

/// An `Event` whose text fields borrow from bytes or from an owned [`Event`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub occurred_at: Option<Timestamp>,
    pub store_id: &'a str,
    pub region: i32,
    pub payload: Option<PayloadView<'a>>,
}

/// The `payload` oneof.
#[derive(Clone, Debug, PartialEq)]
pub enum PayloadView<'a> {
    Commerce(CommerceView<'a>),
    Probe(ProbeView<'a>),
}

/// A `CommerceEvent`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommerceView<'a> {
    pub r#type: i32,
    pub product_id: u64,
    pub category_id: u64,
    pub category_code: &'a str,
    pub brand: &'a str,
    pub seller_id: u64,
    pub price: Option<MoneyView<'a>>,
    pub quantity: u32,
    pub user_id: u64,
    pub session_id: &'a str,
}

/// A `Money`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoneyView<'a> {
    pub currency_code: &'a str,
    pub units: i64,
    pub nanos: i32,
}

/// A `ProbeResult`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeView<'a> {
    pub target: &'a str,
    pub up: bool,
    pub status_code: u32,
    pub response_time_ms: u32,
    pub network_latency_ms: u32,
    pub bandwidth_bytes_per_second: u64,
    pub cpu_load: f64,
    pub vantage_region: i32,
    pub tls_handshake_ms: u32,
    pub time_to_first_byte_ms: u32,
}

/// Bytes prost refuses to decode; prost's own `decode` says why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

impl From<prost::DecodeError> for Refused {
    fn from(_: prost::DecodeError) -> Refused {
        Refused
    }
}

/// prost's `DecodeContext` one message deeper. prost keeps `enter_recursion` to itself, so
/// the context is taken from the one prost hands to the fields of a nested message (a
/// one-field message decoded here); the recursion limit of unknown groups then applies
/// at every depth as in prost's own decoding.
pub fn deeper(ctx: &DecodeContext) -> Result<DecodeContext, Refused> {
    #[derive(Debug, Default)]
    struct Probe(Option<DecodeContext>);
    impl Message for Probe {
        fn encode_raw(&self, _: &mut impl prost::bytes::BufMut) {}
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), prost::DecodeError> {
            self.0 = Some(ctx.clone());
            skip_field(wire_type, tag, buf, ctx)
        }
        fn encoded_len(&self) -> usize {
            0
        }
        fn clear(&mut self) {}
    }
    let mut probe = Probe::default();
    // field 1, varint 0, in a message of two bytes
    encoding::message::merge(
        WireType::LengthDelimited,
        &mut probe,
        &mut &[2, 8, 0][..],
        ctx.clone(),
    )?;
    probe.0.ok_or(Refused)
}

/// The contexts prost decodes an `Event`'s fields with, and those of the messages in it.
#[derive(Clone, Debug)]
pub struct Depths {
    /// The event's own fields.
    event: DecodeContext,
    /// The fields of `commerce` and `probe`.
    payload: DecodeContext,
    /// The fields of `commerce.price`.
    price: DecodeContext,
}

impl Depths {
    /// For an event whose fields prost decodes with `ctx`: `DecodeContext::default()` for
    /// `Event::decode`, `deeper(&DecodeContext::default())` for an event that is a field of
    /// the decoded message (a stream entry's events, `PublishRequest.events`).
    pub fn new(ctx: DecodeContext) -> Result<Depths, Refused> {
        let payload = deeper(&ctx)?;
        let price = deeper(&payload)?;
        Ok(Depths {
            event: ctx,
            payload,
            price,
        })
    }
}

/// The one-byte key of field `tag` (1-15) with `wire_type`, as prost writes it.
const fn key_byte(tag: u32, wire_type: WireType) -> u8 {
    assert!(tag >= 1 && tag <= 15, "a key of one byte");
    (tag << 3) as u8 | wire_type as u8
}

/// Whether the next field's key is the byte `key`; if so, the key is consumed.
#[inline(always)]
fn next_is(buf: &mut &[u8], key: u8) -> bool {
    let bytes = *buf;
    if let [first, rest @ ..] = bytes
        && *first == key
    {
        *buf = rest;
        true
    } else {
        false
    }
}

const VARINT: WireType = WireType::Varint;
const LEN: WireType = WireType::LengthDelimited;
const FIXED64: WireType = WireType::SixtyFourBit;

/// A message's fields, each merged by `$field` (a `merge_field`) as prost's generated
/// `merge` does: first those of `$order` in that order (prost's: by tag, each at most once,
/// one-byte keys), each only if its key is next, with its tag and wire type as constants,
/// so the `merge_field` inlined there is that field's arm alone and no key is looked up;
/// then, from the first key that is not the next of `$order`, the general loop: any key,
/// any field, any order, as often as it comes. Each field is read by the same `merge_field`
/// arm either way, in the order of the bytes, so the fast path accepts, refuses and merges
/// exactly as the general loop would (tests `views_decode_what_prost_decodes_on_odd_but_valid_events`,
/// `fields_out_of_prost_order_decode_as_prost_decodes_them`).
macro_rules! merge_fields {
    ($buf:ident, [$(($t:literal, $w:expr)),* $(,)?], |$tag:ident, $wire_type:ident| $field:expr) => {{
        $(
            if next_is($buf, const { key_byte($t, $w) }) {
                let ($tag, $wire_type) = ($t, $w);
                $field?;
            }
        )*
        // the rest through a copy of the cursor: `key` and `skip_field` take theirs by
        // reference into prost, and the fast path's stays in registers only if none does
        let mut rest = *$buf;
        let $buf = &mut rest;
        while !$buf.is_empty() {
            let ($tag, $wire_type) = key($buf)?;
            $field?;
        }
        Ok(())
    }};
}

/// The bytes of a message field whose key was read: prost's `message::merge` up to the
/// merge. prost checks its recursion limit before entering; the deepest view (`price`) is
/// three messages below the decoded one, far from prost's limit of 100, so it cannot be
/// reached here (only by unknown groups, which `skip_field` checks).
#[inline(always)]
fn message<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], Refused> {
    length_delimited(wire_type, buf)
}

impl<'a> EventView<'a> {
    /// Decodes `bytes`, an `Event` message's fields, as `Event::merge` does with the
    /// contexts `depths` (see [`Depths::new`]).
    pub fn decode(bytes: &'a [u8], depths: &Depths) -> Result<EventView<'a>, Refused> {
        let mut event = EventView::default();
        event.merge(bytes, depths)?;
        Ok(event)
    }

    /// Merges `bytes`, an `Event` message's fields, into this view, as `Event::merge` does:
    /// decoding in place, where the view is to stay (a vector's slot), saves moving it.
    pub fn merge(&mut self, mut bytes: &'a [u8], depths: &Depths) -> Result<(), Refused> {
        let buf = &mut bytes;
        // `commerce` and `probe` are a oneof: one of them in prost's encoding
        merge_fields!(
            buf,
            [
                (1, LEN),
                (2, LEN),
                (3, LEN),
                (4, VARINT),
                (10, LEN),
                (11, LEN)
            ],
            |tag, wire_type| self.merge_field(tag, wire_type, buf, depths)
        )
    }

    /// One field, as prost's generated `Event::merge_field`.
    #[inline(always)]
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut &'a [u8],
        depths: &Depths,
    ) -> Result<(), Refused> {
        match tag {
            1 => merge_str(wire_type, &mut self.event_id, buf),
            2 => merge_timestamp(
                self.occurred_at.get_or_insert_with(Timestamp::default),
                message(wire_type, buf)?,
                &depths.payload,
            ),
            3 => merge_str(wire_type, &mut self.store_id, buf),
            4 => read::int32(wire_type, &mut self.region, buf),
            // a oneof: merged into the same variant, else a new one replaces it (prost
            // replaces it only once the new one decoded, but a failure fails the event)
            10 => {
                let bytes = message(wire_type, buf)?;
                let commerce = match &mut self.payload {
                    Some(PayloadView::Commerce(c)) => c,
                    other => match other.insert(PayloadView::Commerce(CommerceView::default())) {
                        PayloadView::Commerce(c) => c,
                        PayloadView::Probe(_) => unreachable!("just inserted"),
                    },
                };
                commerce.merge(bytes, depths)
            }
            11 => {
                let bytes = message(wire_type, buf)?;
                let probe = match &mut self.payload {
                    Some(PayloadView::Probe(p)) => p,
                    other => match other.insert(PayloadView::Probe(ProbeView::default())) {
                        PayloadView::Probe(p) => p,
                        PayloadView::Commerce(_) => unreachable!("just inserted"),
                    },
                };
                probe.merge(bytes, &depths.payload)
            }
            _ => Ok(skip_field(wire_type, tag, buf, depths.event.clone())?),
        }
    }
}

/// A `Timestamp`'s fields merged into `timestamp`, as prost-types' generated
/// `Timestamp::merge`: decoded here rather than through prost's `message::merge`, which is
/// generic over any `Buf` and costs more than the two varints it decodes.
#[inline(always)]
fn merge_timestamp(
    timestamp: &mut Timestamp,
    mut bytes: &[u8],
    ctx: &DecodeContext,
) -> Result<(), Refused> {
    let buf = &mut bytes;
    merge_fields!(buf, [(1, VARINT), (2, VARINT)], |tag, wire_type| {
        match tag {
            1 => read::int64(wire_type, &mut timestamp.seconds, buf),
            2 => read::int32(wire_type, &mut timestamp.nanos, buf),
            _ => Ok(skip_field(wire_type, tag, buf, ctx.clone())?),
        }
    })
}

impl<'a> CommerceView<'a> {
    /// A `CommerceEvent`'s fields merged into this view, as prost's generated
    /// `CommerceEvent::merge`.
    #[inline(always)]
    fn merge(&mut self, mut bytes: &'a [u8], depths: &Depths) -> Result<(), Refused> {
        let buf = &mut bytes;
        merge_fields!(
            buf,
            [
                (1, VARINT),
                (2, VARINT),
                (3, VARINT),
                (4, LEN),
                (5, LEN),
                (6, VARINT),
                (7, LEN),
                (8, VARINT),
                (9, VARINT),
                (10, LEN),
            ],
            |tag, wire_type| self.merge_field(tag, wire_type, buf, depths)
        )
    }

    /// One field, as prost's generated `CommerceEvent::merge_field`.
    #[inline(always)]
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut &'a [u8],
        depths: &Depths,
    ) -> Result<(), Refused> {
        match tag {
            1 => read::int32(wire_type, &mut self.r#type, buf),
            2 => read::uint64(wire_type, &mut self.product_id, buf),
            3 => read::uint64(wire_type, &mut self.category_id, buf),
            4 => merge_str(wire_type, &mut self.category_code, buf),
            5 => merge_str(wire_type, &mut self.brand, buf),
            6 => read::uint64(wire_type, &mut self.seller_id, buf),
            7 => self
                .price
                .get_or_insert_with(MoneyView::default)
                .merge(message(wire_type, buf)?, &depths.price),
            8 => read::uint32(wire_type, &mut self.quantity, buf),
            9 => read::uint64(wire_type, &mut self.user_id, buf),
            10 => merge_str(wire_type, &mut self.session_id, buf),
            _ => Ok(skip_field(wire_type, tag, buf, depths.payload.clone())?),
        }
    }
}

impl<'a> MoneyView<'a> {
    /// A `Money`'s fields merged into this view, as prost's generated `Money::merge`.
    #[inline(always)]
    fn merge(&mut self, mut bytes: &'a [u8], ctx: &DecodeContext) -> Result<(), Refused> {
        let buf = &mut bytes;
        merge_fields!(
            buf,
            [(1, LEN), (2, VARINT), (3, VARINT)],
            |tag, wire_type| {
                match tag {
                    1 => merge_str(wire_type, &mut self.currency_code, buf),
                    2 => read::int64(wire_type, &mut self.units, buf),
                    3 => read::int32(wire_type, &mut self.nanos, buf),
                    _ => Ok(skip_field(wire_type, tag, buf, ctx.clone())?),
                }
            }
        )
    }
}

impl<'a> ProbeView<'a> {
    /// A `ProbeResult`'s fields merged into this view, as prost's generated
    /// `ProbeResult::merge`.
    #[inline(always)]
    fn merge(&mut self, mut bytes: &'a [u8], ctx: &DecodeContext) -> Result<(), Refused> {
        let buf = &mut bytes;
        merge_fields!(
            buf,
            [
                (1, LEN),
                (2, VARINT),
                (3, VARINT),
                (4, VARINT),
                (5, VARINT),
                (6, VARINT),
                (7, FIXED64),
                (8, VARINT),
                (9, VARINT),
                (10, VARINT),
            ],
            |tag, wire_type| self.merge_field(tag, wire_type, buf, ctx)
        )
    }

    /// One field, as prost's generated `ProbeResult::merge_field`.
    #[inline(always)]
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut &'a [u8],
        ctx: &DecodeContext,
    ) -> Result<(), Refused> {
        match tag {
            1 => merge_str(wire_type, &mut self.target, buf),
            2 => read::bool(wire_type, &mut self.up, buf),
            3 => read::uint32(wire_type, &mut self.status_code, buf),
            4 => read::uint32(wire_type, &mut self.response_time_ms, buf),
            5 => read::uint32(wire_type, &mut self.network_latency_ms, buf),
            6 => read::uint64(wire_type, &mut self.bandwidth_bytes_per_second, buf),
            7 => read::double(wire_type, &mut self.cpu_load, buf),
            8 => read::int32(wire_type, &mut self.vantage_region, buf),
            9 => read::uint32(wire_type, &mut self.tls_handshake_ms, buf),
            10 => read::uint32(wire_type, &mut self.time_to_first_byte_ms, buf),
            _ => Ok(skip_field(wire_type, tag, buf, ctx.clone())?),
        }
    }
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(e: &'a Event) -> EventView<'a> {
        EventView {
            event_id: &e.event_id,
            occurred_at: e.occurred_at,
            store_id: &e.store_id,
            region: e.region,
            payload: e.payload.as_ref().map(|payload| match payload {
                Payload::Commerce(c) => PayloadView::Commerce(c.into()),
                Payload::Probe(p) => PayloadView::Probe(p.into()),
            }),
        }
    }
}

impl<'a> From<&'a CommerceEvent> for CommerceView<'a> {
    fn from(c: &'a CommerceEvent) -> CommerceView<'a> {
        CommerceView {
            r#type: c.r#type,
            product_id: c.product_id,
            category_id: c.category_id,
            category_code: &c.category_code,
            brand: &c.brand,
            seller_id: c.seller_id,
            price: c.price.as_ref().map(|m: &'a Money| MoneyView {
                currency_code: &m.currency_code,
                units: m.units,
                nanos: m.nanos,
            }),
            quantity: c.quantity,
            user_id: c.user_id,
            session_id: &c.session_id,
        }
    }
}

impl<'a> From<&'a ProbeResult> for ProbeView<'a> {
    fn from(p: &'a ProbeResult) -> ProbeView<'a> {
        ProbeView {
            target: &p.target,
            up: p.up,
            status_code: p.status_code,
            response_time_ms: p.response_time_ms,
            network_latency_ms: p.network_latency_ms,
            bandwidth_bytes_per_second: p.bandwidth_bytes_per_second,
            cpu_load: p.cpu_load,
            vantage_region: p.vantage_region,
            tls_handshake_ms: p.tls_handshake_ms,
            time_to_first_byte_ms: p.time_to_first_byte_ms,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
