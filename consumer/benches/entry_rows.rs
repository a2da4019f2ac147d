//! The consumer's CPU cost per event between Redis and ClickHouse's socket: one stream
//! entry of 1,000 events, as the gateway writes it, decoded, checked by the rules, turned
//! into rows and the rows serialized as RowBinary, everything `Sink::write` did for an
//! entry before it sent Native blocks (#19), but the insert's LZ4 and HTTP.
//!
//! Run: `cargo bench -p consumer --bench entry_rows -- --warm-up-time 1 --measurement-time 5`.
//! Throughput is in events: criterion prints the time of one entry and events/s.
//!
//! The clickhouse crate keeps its RowBinary serializer to itself, so [`RowBinary`] below
//! writes what it writes for the row types (`pipeline::rows`): integers little-endian,
//! strings and bytes behind a LEB128 length, structs and tuples as their fields in order.

use std::hint::black_box;

use consumer::sink::check_entry;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline::{
    entry::{Fields, encode_batch},
    proto::{
        ingest::{CommerceEvent, CommerceEventType, Event, Money, ProbeResult, event::Payload},
        queue::QueuedBatch,
    },
    region::Region,
    rows::{EventRow, datetime, event_row},
    validate::{AsView, Checked, Limits},
};
use rand::{RngCore, SeedableRng};

const EVENTS: usize = 1_000;
const STORE_ID: &str = "eu-store-0042";
const RECEIVED: i64 = 1_800_000_000;

/// Deterministic values: the same entry in every build.
type Rng = rand_chacha::ChaCha8Rng;

/// Nine commerce events out of ten, one probe; every text field filled.
fn event(rng: &mut Rng, index: usize) -> Event {
    let product = rng.next_u64() % 50_000;
    let payload = if index % 10 == 9 {
        Payload::Probe(ProbeResult {
            target: "checkout".into(),
            up: true,
            status_code: 200,
            response_time_ms: 40 + (rng.next_u64() % 400) as u32,
            network_latency_ms: 5,
            bandwidth_bytes_per_second: 1_000_000 + rng.next_u64() % 1_000_000,
            cpu_load: 0.25,
            ..ProbeResult::default()
        })
    } else {
        Payload::Commerce(CommerceEvent {
            r#type: CommerceEventType::Cart as i32,
            product_id: 1_000 + product,
            category_id: 100 + product % 7,
            category_code: "electronics.smartphone".into(),
            brand: ["acme", "globex", ""][product as usize % 3].into(),
            seller_id: 1 + product % 12,
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 1 + (rng.next_u64() % 2_000) as i64,
                nanos: 990_000_000,
            }),
            quantity: 1 + (rng.next_u64() % 3) as u32,
            user_id: 1 + rng.next_u64() % 1_000_000,
            session_id: format!("s-{:016x}", rng.next_u64()),
        })
    };
    Event {
        event_id: uuid::Builder::from_random_bytes(
            (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())).to_be_bytes(),
        )
        .into_uuid()
        .to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: RECEIVED - 1 - (rng.next_u64() % 300) as i64,
            nanos: 0,
        }),
        store_id: STORE_ID.into(),
        region: Region::Europe.to_proto() as i32,
        payload: Some(payload),
    }
}

/// The entry's batch field, as the gateway writes it for 1,000 canonically encoded events.
fn entry() -> Fields {
    let mut rng = Rng::seed_from_u64(19);
    let batch = QueuedBatch {
        store_id: STORE_ID.into(),
        region: Region::Europe.to_proto() as i32,
        received_at: Some(prost_types::Timestamp {
            seconds: RECEIVED,
            nanos: 0,
        }),
        events: (0..EVENTS).map(|i| event(&mut rng, i)).collect(),
        ..QueuedBatch::default()
    };
    Fields::new(encode_batch(&batch), None)
}

/// A RowBinary writer for the row types' serde shapes, enough for `pipeline::rows`.
struct RowBinary<'a>(&'a mut Vec<u8>);

mod row_binary {
    use serde::ser::{self, Impossible, Serialize};

    use super::RowBinary;

    #[derive(Debug)]
    pub struct Error;

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not a RowBinary shape")
        }
    }

    impl std::error::Error for Error {}

    impl ser::Error for Error {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Error
        }
    }

    fn leb128(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    macro_rules! le {
        ($($f:ident: $t:ty),*) => {$(
            fn $f(self, v: $t) -> Result<(), Error> {
                self.0.extend_from_slice(&v.to_le_bytes());
                Ok(())
            }
        )*};
    }

    impl<'b> ser::Serializer for &mut RowBinary<'b> {
        type Ok = ();
        type Error = Error;
        type SerializeSeq = Impossible<(), Error>;
        type SerializeTuple = Self;
        type SerializeTupleStruct = Impossible<(), Error>;
        type SerializeTupleVariant = Impossible<(), Error>;
        type SerializeMap = Impossible<(), Error>;
        type SerializeStruct = Self;
        type SerializeStructVariant = Impossible<(), Error>;

        le!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
            serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
            serialize_f32: f32, serialize_f64: f64);

        fn serialize_bool(self, v: bool) -> Result<(), Error> {
            self.0.push(u8::from(v));
            Ok(())
        }
        fn serialize_char(self, _: char) -> Result<(), Error> {
            Err(Error)
        }
        fn serialize_str(self, v: &str) -> Result<(), Error> {
            self.serialize_bytes(v.as_bytes())
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
            leb128(self.0, v.len() as u64);
            self.0.extend_from_slice(v);
            Ok(())
        }
        fn serialize_none(self) -> Result<(), Error> {
            Err(Error)
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Error> {
            Err(Error)
        }
        fn serialize_unit(self) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), Error> {
            Err(Error)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), Error> {
            Err(Error)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
            Err(Error)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Error> {
            Err(Error)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Error> {
            Err(Error)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
            Err(Error)
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Error> {
            Err(Error)
        }
    }

    impl<'b> ser::SerializeTuple for &mut RowBinary<'b> {
        type Ok = ();
        type Error = Error;
        fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            v.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl<'b> ser::SerializeStruct for &mut RowBinary<'b> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            _: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            v.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }
}

fn write_row(out: &mut Vec<u8>, row: &impl serde::Serialize) {
    row.serialize(&mut RowBinary(out))
        .expect("rows are RowBinary shapes");
}

/// The accepted events' rows, serialized into `commerce` and `probes`; how many.
fn write_rows<E: AsView>(
    checked: &Checked<E>,
    received: i64,
    commerce: &mut Vec<u8>,
    probes: &mut Vec<u8>,
) -> usize {
    for accepted in &checked.accepted {
        match event_row(accepted, datetime(received)) {
            EventRow::Commerce(row) => write_row(commerce, &row),
            EventRow::Probe(row) => write_row(probes, &row),
        }
    }
    checked.accepted.len()
}

/// The path of `Sink::write` for one entry before #19's views: prost decodes the batch into
/// owned events, the rules check them, rows borrow from them.
fn owned(fields: &Fields, limits: &Limits, commerce: &mut Vec<u8>, probes: &mut Vec<u8>) -> usize {
    let batch = fields.decode().unwrap();
    let received = batch.received_at.as_ref().map_or(0, |t| t.seconds);
    let region = Region::from_proto(batch.region);
    let checked = check_entry(
        limits,
        &batch.store_id,
        region,
        received,
        batch.from_prober,
        batch.events,
    );
    write_rows(&checked, received, commerce, probes)
}

/// The path of `Sink::write` since: the batch decoded as views of the entry's bytes, the
/// same rules over them, rows borrowing from the bytes.
fn borrowed(
    fields: &Fields,
    limits: &Limits,
    commerce: &mut Vec<u8>,
    probes: &mut Vec<u8>,
) -> usize {
    let batch = fields.decode_view().unwrap();
    let received = batch.received_at.as_ref().map_or(0, |t| t.seconds);
    let region = Region::from_proto(batch.region);
    let checked = check_entry(
        limits,
        batch.store_id,
        region,
        received,
        batch.from_prober,
        batch.events,
    );
    write_rows(&checked, received, commerce, probes)
}

fn entry_rows(c: &mut Criterion) {
    let fields = entry();
    let limits = Limits::unbounded();
    let (mut commerce, mut probes) = (Vec::new(), Vec::new());
    assert_eq!(owned(&fields, &limits, &mut commerce, &mut probes), EVENTS);
    let reference = (commerce.clone(), probes.clone());

    let mut group = c.benchmark_group("entry_rows");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("owned", |b| {
        b.iter(|| {
            commerce.clear();
            probes.clear();
            owned(black_box(&fields), &limits, &mut commerce, &mut probes)
        })
    });
    assert_eq!((commerce.clone(), probes.clone()), reference);
    group.bench_function("borrowed", |b| {
        b.iter(|| {
            commerce.clear();
            probes.clear();
            borrowed(black_box(&fields), &limits, &mut commerce, &mut probes)
        })
    });
    // the same RowBinary bytes both ways
    assert_eq!((commerce.clone(), probes.clone()), reference);
    group.bench_function("decode_only", |b| {
        b.iter(|| black_box(&fields).decode().unwrap())
    });
    group.bench_function("decode_view_only", |b| {
        b.iter(|| black_box(&fields).decode_view().unwrap().events.len())
    });
    group.finish();
}

criterion_group!(benches, entry_rows);
criterion_main!(benches);
