//! ClickHouse row types, borrowed from decoded events (owned, or views of an entry's bytes)
//! so that loading copies no strings, and the conversion from a validated event to its row.
//!
//! Column order and types match `migrations/`. The consumer sends rows as Native columns
//! (`crate::native`); the serde shapes are RowBinary, for the other writers, sent without
//! schema validation (ClickHouse 18.16 lacks `RowBinaryWithNamesAndTypes`), so tests insert
//! and read back every table both ways to catch drift.

use clickhouse::Row;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    region::Region,
    validate::{Accepted, AsView},
    view::{CommerceView, EventView, PayloadView, ProbeView},
};

pub const COMMERCE_TABLE: &str = "commerce_events";
pub const PROBE_TABLE: &str = "probe_results";
pub const REJECTED_TABLE: &str = "rejected_events";

/// One row of `commerce_events`.
#[derive(Debug, Row, Serialize)]
pub struct CommerceRow<'a> {
    /// `UUID`: with `store_id`, the event's identity (migration 2).
    #[serde(with = "uuid_column")]
    pub event_id: Uuid,
    pub occurred_at: u32,
    pub received_at: u32,
    pub region: i8,
    pub store_id: &'a str,
    pub r#type: i8,
    pub product_id: u64,
    pub category_id: u64,
    pub category_code: &'a str,
    pub brand: &'a str,
    pub seller_id: u64,
    pub currency: &'a str,
    /// `Decimal(18, 9)`: the unit price in nano units.
    pub price: i64,
    pub quantity: u32,
    pub user_id: u64,
    pub session_id: &'a str,
}

/// One row of `probe_results`.
#[derive(Debug, Row, Serialize)]
pub struct ProbeRow<'a> {
    #[serde(with = "uuid_column")]
    pub event_id: Uuid,
    pub occurred_at: u32,
    pub received_at: u32,
    pub region: i8,
    pub store_id: &'a str,
    pub target: &'a str,
    pub up: u8,
    pub status_code: u16,
    pub response_time_ms: u32,
    pub network_latency_ms: u32,
    pub bandwidth_bytes_per_second: u64,
    pub cpu_load: f64,
    /// Migration 3: where the probe was taken from (0: unspecified, a store's own probe).
    pub vantage_region: i8,
    pub tls_handshake_ms: u32,
    pub time_to_first_byte_ms: u32,
}

/// Where a rejected row was rejected (`rejected_events.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum RejectSource {
    Gateway = 1,
    Consumer = 2,
}

/// One row of `rejected_events`.
#[derive(Debug, Row, Serialize)]
pub struct RejectedRow<'a> {
    pub event_id: &'a str,
    pub occurred_at: u32,
    pub received_at: u32,
    pub region: i8,
    pub store_id: &'a str,
    pub source: i8,
    pub reason: &'a str,
    #[serde(with = "serde_bytes_as_str")]
    pub raw: &'a [u8],
    pub delivery_count: u32,
    pub stream_entry_id: &'a str,
}

/// RowBinary writes `String` columns as length-prefixed bytes; serde's `&[u8]` is a
/// sequence, so raw bytes go through `serialize_bytes`.
mod serde_bytes_as_str {
    pub fn serialize<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

/// RowBinary writes a `UUID` column as its two 64-bit halves, each little-endian, high half
/// first: what `clickhouse::serde::uuid` does, without the crate feature.
mod uuid_column {
    use serde::Serialize;

    pub fn serialize<S: serde::Serializer>(v: &uuid::Uuid, s: S) -> Result<S::Ok, S::Error> {
        v.as_u64_pair().serialize(s)
    }
}

/// A validated event as the row of its table.
pub enum EventRow<'a> {
    Commerce(CommerceRow<'a>),
    Probe(ProbeRow<'a>),
}

/// Seconds since the epoch as ClickHouse `DateTime`, clamped to its range.
pub fn datetime(seconds: i64) -> u32 {
    seconds.clamp(0, u32::MAX as i64) as u32
}

/// `units` and `nanos` as one `Decimal(18, 9)` value; validation bounds `units`.
pub fn decimal9(units: i64, nanos: i32) -> i64 {
    units
        .saturating_mul(1_000_000_000)
        .saturating_add(nanos as i64)
}

/// Converts an event that passed validation, owned or borrowed, into its row. The row's
/// region is the event's: the sending store's, or for a prober's batch the probed store's
/// (both checked by the rules).
pub fn event_row<E: AsView>(accepted: &Accepted<E>, received_at: u32) -> EventRow<'_> {
    event_row_with_id(accepted, accepted.event_id(), received_at)
}

/// [`event_row`] of an event whose id is known already (`validate::Checked::with_ids`):
/// the id is not parsed again (#19).
pub fn event_row_with_id<E: AsView>(
    accepted: &Accepted<E>,
    id: Uuid,
    received_at: u32,
) -> EventRow<'_> {
    debug_assert_eq!(id, accepted.event_id());
    let event = accepted.event().view();
    let region = accepted.region().ch_code();
    let occurred_at = datetime(accepted.occurred_at());
    match &event.payload {
        Some(PayloadView::Commerce(c)) => EventRow::Commerce(commerce_row(
            event.store_id,
            id,
            c,
            occurred_at,
            received_at,
            region,
        )),
        Some(PayloadView::Probe(p)) => EventRow::Probe(probe_row(
            event.store_id,
            id,
            p,
            occurred_at,
            received_at,
            region,
        )),
        None => unreachable!("check_batch accepts no event without a payload"),
    }
}

fn commerce_row<'a>(
    store_id: &'a str,
    event_id: Uuid,
    c: &CommerceView<'a>,
    occurred_at: u32,
    received_at: u32,
    region: i8,
) -> CommerceRow<'a> {
    CommerceRow {
        event_id,
        occurred_at,
        received_at,
        region,
        store_id,
        r#type: c.r#type as i8,
        product_id: c.product_id,
        category_id: c.category_id,
        category_code: c.category_code,
        brand: c.brand,
        seller_id: c.seller_id,
        currency: currency(c),
        price: price(c),
        quantity: c.quantity,
        user_id: c.user_id,
        session_id: c.session_id,
    }
}

/// The `currency` of a commerce event's row (the `commerce` rule requires a price).
pub fn currency<'a>(c: &CommerceView<'a>) -> &'a str {
    c.price.as_ref().map_or("", |m| m.currency_code)
}

/// The `price` of a commerce event's row, `Decimal(18, 9)`.
pub fn price(c: &CommerceView<'_>) -> i64 {
    c.price.as_ref().map_or(0, |m| decimal9(m.units, m.nanos))
}

/// An accepted commerce event of an entry as the values of its `commerce_events` row, read
/// from its view when they are written: `native::Block::push_commerce` writes them straight
/// into the Native columns, a column at a time, without a [`CommerceRow`] per event (#19).
/// Each value is the one [`event_row`] gives (test
/// `native::tests::commerce_straight_from_views_is_the_rows_block`).
#[derive(Clone, Copy, Debug)]
pub struct CommerceSource<'v, 'a> {
    pub event_id: Uuid,
    /// `occurred_at` as [`datetime`].
    pub occurred_at: u32,
    /// The event's region as its `Enum8` code.
    pub region: i8,
    pub store_id: &'a str,
    pub commerce: &'v CommerceView<'a>,
}

impl<'v, 'a> CommerceSource<'v, 'a> {
    /// The row of `accepted`, whose id is `id` (`validate::Checked::with_ids`), or `None`
    /// for a probe.
    pub fn new(accepted: &'v Accepted<EventView<'a>>, id: Uuid) -> Option<Self> {
        debug_assert_eq!(id, accepted.event_id());
        match accepted.payload() {
            PayloadView::Commerce(commerce) => Some(CommerceSource {
                event_id: id,
                occurred_at: datetime(accepted.occurred_at()),
                region: accepted.region().ch_code(),
                store_id: accepted.event().store_id,
                commerce,
            }),
            PayloadView::Probe(_) => None,
        }
    }

    /// The row, received at `received_at`.
    pub fn row(&self, received_at: u32) -> CommerceRow<'a> {
        commerce_row(
            self.store_id,
            self.event_id,
            self.commerce,
            self.occurred_at,
            received_at,
            self.region,
        )
    }
}

fn probe_row<'a>(
    store_id: &'a str,
    event_id: Uuid,
    p: &ProbeView<'a>,
    occurred_at: u32,
    received_at: u32,
    region: i8,
) -> ProbeRow<'a> {
    ProbeRow {
        event_id,
        occurred_at,
        received_at,
        region,
        store_id,
        target: p.target,
        up: p.up as u8,
        status_code: p.status_code as u16,
        response_time_ms: p.response_time_ms,
        network_latency_ms: p.network_latency_ms,
        bandwidth_bytes_per_second: p.bandwidth_bytes_per_second,
        cpu_load: p.cpu_load,
        // the `probe` rule allows only unspecified (0) or a known region
        vantage_region: Region::from_proto(p.vantage_region).map_or(0, Region::ch_code),
        tls_handshake_ms: p.tls_handshake_ms,
        time_to_first_byte_ms: p.time_to_first_byte_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_time_conversions() {
        assert_eq!(decimal9(19, 990_000_000), 19_990_000_000);
        assert_eq!(decimal9(0, 1), 1);
        assert_eq!(datetime(-5), 0);
        assert_eq!(datetime(1_700_000_000), 1_700_000_000);
        assert_eq!(datetime(i64::MAX), u32::MAX);
    }
}
