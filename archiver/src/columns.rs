//! The Parquet columns of each table, typed as in ClickHouse: the Arrow schemas, rows into
//! column builders (archiving), and record batches back into the consumer's row types
//! (verifying and restoring).
//!
//! | ClickHouse | Arrow / Parquet |
//! |---|---|
//! | `UUID` | `FixedSizeBinary(16)` with Arrow's `arrow.uuid` extension (Parquet: `FIXED_LEN_BYTE_ARRAY(16)`, logical type `UUID`, the 16 bytes in RFC 9562's order); `rejected_events.event_id` is a `String` in the table and `Utf8` here |
//! | `DateTime('UTC')` | `Timestamp(Millisecond, "UTC")` (Parquet: INT64 timestamp in ms, UTC; Parquet has no seconds) |
//! | `Enum8(...)` | `Utf8`, the enum's name (ClickHouse converts names to its enums) |
//! | `Decimal(18, 9)` | `Decimal128(18, 9)` (Parquet: INT64 decimal) |
//! | `UInt8`…`UInt64`, `Float64`, `String` | the same widths, unsigned; `Utf8` / `Binary` |
//!
//! The columns are the table's, in the table's order (test
//! `archived_files_open_in_a_current_clickhouse_with_the_tables_schema`).
//!
//! Objects written before 2026-12-06 hold the event id as its canonical text (`Utf8`); the
//! readers take either (`Read::uuid`).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, RecordBatch,
    builder::{
        BinaryBuilder, FixedSizeBinaryBuilder, Float64Builder, StringBuilder,
        TimestampMillisecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
    },
    cast::AsArray,
    types::{
        Decimal128Type, Float64Type, TimestampMillisecondType, UInt8Type, UInt16Type, UInt32Type,
        UInt64Type,
    },
};
use arrow_schema::{
    DataType, Field, Schema, SchemaRef, TimeUnit, extension::Uuid as UuidExtension,
};
use pipeline::rows::{CommerceRow, ProbeRow, RejectedRow};
use uuid::Uuid;

use crate::layout::Kind;

/// The names of `region`'s `Enum8` values (migrations 1 and 3; 0 only in `rejected_events`
/// and `vantage_region`).
pub const REGIONS: [(i8, &str); 4] = [
    (0, "unspecified"),
    (1, "europe"),
    (2, "america"),
    (3, "asia"),
];
/// The names of `commerce_events.type`'s `Enum8` values (migration 1).
pub const TYPES: [(i8, &str); 4] = [
    (1, "view"),
    (2, "cart"),
    (3, "remove_from_cart"),
    (4, "purchase"),
];
/// The names of `rejected_events.source`'s `Enum8` values (migration 1).
pub const SOURCES: [(i8, &str); 2] = [(1, "gateway"), (2, "consumer")];

/// Why a Parquet file does not hold what the archive writes.
#[derive(Debug, thiserror::Error)]
pub enum ColumnsError {
    #[error("column {0} is missing or not of its archive type")]
    Column(&'static str),
    #[error("column {column} holds {value:?}, which is not a valid value")]
    Value { column: &'static str, value: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// The name of an enum value, `""` for a value the table does not have.
pub fn enum_name(values: &[(i8, &'static str)], code: i8) -> &'static str {
    values
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("", |(_, n)| n)
}

fn enum_code(
    values: &[(i8, &'static str)],
    column: &'static str,
    name: &str,
) -> Result<i8, ColumnsError> {
    values
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| *c)
        .ok_or_else(|| ColumnsError::Value {
            column,
            value: name.to_owned(),
        })
}

fn datetime() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

/// A `UUID` column: 16 bytes a row, which Parquet writes with its `UUID` logical type and a
/// current ClickHouse reads as a `UUID` (the chdb test). The canonical text was 40 bytes a row
/// (36 and its length) into the writer's pages and their zstd, which left about 20 of them
/// (docs/BENCHMARKS.md, "The lake's event ids as 16 bytes").
fn uuid_field(name: &str) -> Field {
    field(name, DataType::FixedSizeBinary(16)).with_extension_type(UuidExtension)
}

/// The schema of `kind`'s files: the table's columns, in its order.
pub fn schema(kind: Kind) -> SchemaRef {
    let s = || DataType::Utf8;
    let fields = match kind {
        Kind::Commerce => vec![
            uuid_field("event_id"),
            field("occurred_at", datetime()),
            field("received_at", datetime()),
            field("region", s()),
            field("store_id", s()),
            field("type", s()),
            field("product_id", DataType::UInt64),
            field("category_id", DataType::UInt64),
            field("category_code", s()),
            field("brand", s()),
            field("seller_id", DataType::UInt64),
            field("currency", s()),
            field("price", DataType::Decimal128(18, 9)),
            field("quantity", DataType::UInt32),
            field("user_id", DataType::UInt64),
            field("session_id", s()),
        ],
        Kind::Probes => vec![
            uuid_field("event_id"),
            field("occurred_at", datetime()),
            field("received_at", datetime()),
            field("region", s()),
            field("store_id", s()),
            field("target", s()),
            field("up", DataType::UInt8),
            field("status_code", DataType::UInt16),
            field("response_time_ms", DataType::UInt32),
            field("network_latency_ms", DataType::UInt32),
            field("bandwidth_bytes_per_second", DataType::UInt64),
            field("cpu_load", DataType::Float64),
            field("vantage_region", s()),
            field("tls_handshake_ms", DataType::UInt32),
            field("time_to_first_byte_ms", DataType::UInt32),
        ],
        Kind::Rejected => vec![
            field("event_id", s()),
            field("occurred_at", datetime()),
            field("received_at", datetime()),
            field("region", s()),
            field("store_id", s()),
            field("source", s()),
            field("reason", s()),
            field("raw", DataType::Binary),
            field("delivery_count", DataType::UInt32),
            field("stream_entry_id", s()),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn timestamps() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("UTC")
}

/// Builders of the columns every table starts with after its `event_id`.
#[derive(Default)]
struct HeadColumns {
    occurred_at: Option<TimestampMillisecondBuilder>,
    received_at: Option<TimestampMillisecondBuilder>,
    region: StringBuilder,
    store_id: StringBuilder,
}

impl HeadColumns {
    fn push(&mut self, occurred_at: u32, received_at: u32, region: i8, store_id: &str) {
        self.occurred_at
            .get_or_insert_with(timestamps)
            .append_value(occurred_at as i64 * 1000);
        self.received_at
            .get_or_insert_with(timestamps)
            .append_value(received_at as i64 * 1000);
        self.region.append_value(enum_name(&REGIONS, region));
        self.store_id.append_value(store_id);
    }

    /// `event_id`, the four arrays, then room for the table's own.
    fn finish(&mut self, event_id: ArrayRef, width: usize) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
        columns.push(event_id);
        columns.push(Arc::new(
            self.occurred_at.get_or_insert_with(timestamps).finish(),
        ));
        columns.push(Arc::new(
            self.received_at.get_or_insert_with(timestamps).finish(),
        ));
        columns.push(Arc::new(self.region.finish()));
        columns.push(Arc::new(self.store_id.finish()));
        columns
    }
}

/// Builder of a `UUID` column ([`uuid_field`]).
struct UuidColumn(FixedSizeBinaryBuilder);

impl Default for UuidColumn {
    fn default() -> Self {
        UuidColumn(FixedSizeBinaryBuilder::new(16))
    }
}

impl UuidColumn {
    fn push(&mut self, id: &Uuid) {
        self.0
            .append_value(id.as_bytes())
            .expect("a UUID is 16 bytes, the column's width");
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// Column builders of `commerce_events`.
#[derive(Default)]
pub struct CommerceColumns {
    event_id: UuidColumn,
    head: HeadColumns,
    r#type: StringBuilder,
    product_id: UInt64Builder,
    category_id: UInt64Builder,
    category_code: StringBuilder,
    brand: StringBuilder,
    seller_id: UInt64Builder,
    currency: StringBuilder,
    price: Vec<i128>,
    quantity: UInt32Builder,
    user_id: UInt64Builder,
    session_id: StringBuilder,
}

impl CommerceColumns {
    pub fn push(&mut self, r: &CommerceRow<'_>) {
        self.event_id.push(&r.event_id);
        self.head
            .push(r.occurred_at, r.received_at, r.region, r.store_id);
        self.r#type.append_value(enum_name(&TYPES, r.r#type));
        self.product_id.append_value(r.product_id);
        self.category_id.append_value(r.category_id);
        self.category_code.append_value(r.category_code);
        self.brand.append_value(r.brand);
        self.seller_id.append_value(r.seller_id);
        self.currency.append_value(r.currency);
        self.price.push(r.price as i128);
        self.quantity.append_value(r.quantity);
        self.user_id.append_value(r.user_id);
        self.session_id.append_value(r.session_id);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ColumnsError> {
        let price = arrow_array::Decimal128Array::from(std::mem::take(&mut self.price))
            .with_precision_and_scale(18, 9)?;
        let mut columns = self.head.finish(self.event_id.finish(), 16);
        columns.extend::<[ArrayRef; 11]>([
            Arc::new(self.r#type.finish()),
            Arc::new(self.product_id.finish()),
            Arc::new(self.category_id.finish()),
            Arc::new(self.category_code.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.seller_id.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(price),
            Arc::new(self.quantity.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.session_id.finish()),
        ]);
        Ok(RecordBatch::try_new(schema(Kind::Commerce), columns)?)
    }
}

/// Column builders of `probe_results`.
#[derive(Default)]
pub struct ProbeColumns {
    event_id: UuidColumn,
    head: HeadColumns,
    target: StringBuilder,
    up: UInt8Builder,
    status_code: UInt16Builder,
    response_time_ms: UInt32Builder,
    network_latency_ms: UInt32Builder,
    bandwidth_bytes_per_second: UInt64Builder,
    cpu_load: Float64Builder,
    vantage_region: StringBuilder,
    tls_handshake_ms: UInt32Builder,
    time_to_first_byte_ms: UInt32Builder,
}

impl ProbeColumns {
    pub fn push(&mut self, r: &ProbeRow<'_>) {
        self.event_id.push(&r.event_id);
        self.head
            .push(r.occurred_at, r.received_at, r.region, r.store_id);
        self.target.append_value(r.target);
        self.up.append_value(r.up);
        self.status_code.append_value(r.status_code);
        self.response_time_ms.append_value(r.response_time_ms);
        self.network_latency_ms.append_value(r.network_latency_ms);
        self.bandwidth_bytes_per_second
            .append_value(r.bandwidth_bytes_per_second);
        self.cpu_load.append_value(r.cpu_load);
        self.vantage_region
            .append_value(enum_name(&REGIONS, r.vantage_region));
        self.tls_handshake_ms.append_value(r.tls_handshake_ms);
        self.time_to_first_byte_ms
            .append_value(r.time_to_first_byte_ms);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ColumnsError> {
        let mut columns = self.head.finish(self.event_id.finish(), 15);
        columns.extend::<[ArrayRef; 10]>([
            Arc::new(self.target.finish()),
            Arc::new(self.up.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.response_time_ms.finish()),
            Arc::new(self.network_latency_ms.finish()),
            Arc::new(self.bandwidth_bytes_per_second.finish()),
            Arc::new(self.cpu_load.finish()),
            Arc::new(self.vantage_region.finish()),
            Arc::new(self.tls_handshake_ms.finish()),
            Arc::new(self.time_to_first_byte_ms.finish()),
        ]);
        Ok(RecordBatch::try_new(schema(Kind::Probes), columns)?)
    }
}

/// Column builders of `rejected_events`.
#[derive(Default)]
pub struct RejectedColumns {
    event_id: StringBuilder,
    head: HeadColumns,
    source: StringBuilder,
    reason: StringBuilder,
    raw: BinaryBuilder,
    delivery_count: UInt32Builder,
    stream_entry_id: StringBuilder,
}

impl RejectedColumns {
    pub fn push(&mut self, r: &RejectedRow<'_>) {
        self.event_id.append_value(r.event_id);
        self.head
            .push(r.occurred_at, r.received_at, r.region, r.store_id);
        self.source.append_value(enum_name(&SOURCES, r.source));
        self.reason.append_value(r.reason);
        self.raw.append_value(r.raw);
        self.delivery_count.append_value(r.delivery_count);
        self.stream_entry_id.append_value(r.stream_entry_id);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ColumnsError> {
        let mut columns = self.head.finish(Arc::new(self.event_id.finish()), 10);
        columns.extend::<[ArrayRef; 5]>([
            Arc::new(self.source.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.delivery_count.finish()),
            Arc::new(self.stream_entry_id.finish()),
        ]);
        Ok(RecordBatch::try_new(schema(Kind::Rejected), columns)?)
    }
}

/// Typed access to one record batch's columns by name.
struct Read<'a>(&'a RecordBatch);

impl<'a> Read<'a> {
    fn column(&self, name: &'static str) -> Result<&'a dyn Array, ColumnsError> {
        self.0
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or(ColumnsError::Column(name))
    }

    fn text(&self, name: &'static str) -> Result<&'a arrow_array::StringArray, ColumnsError> {
        self.column(name)?
            .as_string_opt::<i32>()
            .ok_or(ColumnsError::Column(name))
    }

    fn num<T: arrow_array::ArrowPrimitiveType>(
        &self,
        name: &'static str,
    ) -> Result<&'a arrow_array::PrimitiveArray<T>, ColumnsError> {
        self.column(name)?
            .as_primitive_opt::<T>()
            .ok_or(ColumnsError::Column(name))
    }

    /// Row `i`'s UUID: 16 bytes ([`uuid_field`]), or the canonical text of the objects written
    /// before them.
    fn uuid(&self, name: &'static str, i: usize) -> Result<Uuid, ColumnsError> {
        let column = self.column(name)?;
        if let Some(bytes) = column.as_fixed_size_binary_opt() {
            return Uuid::from_slice(bytes.value(i)).map_err(|_| ColumnsError::Column(name));
        }
        let text = self.text(name)?.value(i);
        Uuid::try_parse(text).map_err(|_| ColumnsError::Value {
            column: name,
            value: text.to_owned(),
        })
    }

    fn seconds(&self, name: &'static str, i: usize) -> Result<u32, ColumnsError> {
        Ok(pipeline::rows::datetime(
            self.num::<TimestampMillisecondType>(name)?
                .value(i)
                .div_euclid(1000),
        ))
    }

    fn region(&self, name: &'static str, i: usize) -> Result<i8, ColumnsError> {
        enum_code(&REGIONS, name, self.text(name)?.value(i))
    }

    /// Row `i`'s event id (a UUID), times and region, the columns every event table starts
    /// with (`store_id` is read with the table's other strings).
    fn head(&self, i: usize) -> Result<(Uuid, u32, u32, i8), ColumnsError> {
        Ok((
            self.uuid("event_id", i)?,
            self.seconds("occurred_at", i)?,
            self.seconds("received_at", i)?,
            self.region("region", i)?,
        ))
    }
}

/// The rows of a `commerce_events` record batch, borrowing its strings.
pub fn commerce_rows(batch: &RecordBatch) -> Result<Vec<CommerceRow<'_>>, ColumnsError> {
    let c = Read(batch);
    let (store, category, brand, currency, session, kind) = (
        c.text("store_id")?,
        c.text("category_code")?,
        c.text("brand")?,
        c.text("currency")?,
        c.text("session_id")?,
        c.text("type")?,
    );
    let (product, cat_id, seller, user) = (
        c.num::<UInt64Type>("product_id")?,
        c.num::<UInt64Type>("category_id")?,
        c.num::<UInt64Type>("seller_id")?,
        c.num::<UInt64Type>("user_id")?,
    );
    let price = c.num::<Decimal128Type>("price")?;
    let quantity = c.num::<UInt32Type>("quantity")?;
    (0..batch.num_rows())
        .map(|i| {
            let (event_id, occurred_at, received_at, region) = c.head(i)?;
            Ok(CommerceRow {
                event_id,
                occurred_at,
                received_at,
                region,
                store_id: store.value(i),
                r#type: enum_code(&TYPES, "type", kind.value(i))?,
                product_id: product.value(i),
                category_id: cat_id.value(i),
                category_code: category.value(i),
                brand: brand.value(i),
                seller_id: seller.value(i),
                currency: currency.value(i),
                price: price.value(i) as i64,
                quantity: quantity.value(i),
                user_id: user.value(i),
                session_id: session.value(i),
            })
        })
        .collect()
}

/// The rows of a `probe_results` record batch, borrowing its strings.
pub fn probe_rows(batch: &RecordBatch) -> Result<Vec<ProbeRow<'_>>, ColumnsError> {
    let c = Read(batch);
    let (store, target) = (c.text("store_id")?, c.text("target")?);
    let up = c.num::<UInt8Type>("up")?;
    let status = c.num::<UInt16Type>("status_code")?;
    let (response, latency, tls, ttfb) = (
        c.num::<UInt32Type>("response_time_ms")?,
        c.num::<UInt32Type>("network_latency_ms")?,
        c.num::<UInt32Type>("tls_handshake_ms")?,
        c.num::<UInt32Type>("time_to_first_byte_ms")?,
    );
    let bandwidth = c.num::<UInt64Type>("bandwidth_bytes_per_second")?;
    let cpu = c.num::<Float64Type>("cpu_load")?;
    (0..batch.num_rows())
        .map(|i| {
            let (event_id, occurred_at, received_at, region) = c.head(i)?;
            Ok(ProbeRow {
                event_id,
                occurred_at,
                received_at,
                region,
                store_id: store.value(i),
                target: target.value(i),
                up: up.value(i),
                status_code: status.value(i),
                response_time_ms: response.value(i),
                network_latency_ms: latency.value(i),
                bandwidth_bytes_per_second: bandwidth.value(i),
                cpu_load: cpu.value(i),
                vantage_region: c.region("vantage_region", i)?,
                tls_handshake_ms: tls.value(i),
                time_to_first_byte_ms: ttfb.value(i),
            })
        })
        .collect()
}

/// The rows of a `rejected_events` record batch, borrowing its strings and bytes.
pub fn rejected_rows(batch: &RecordBatch) -> Result<Vec<RejectedRow<'_>>, ColumnsError> {
    let c = Read(batch);
    let (event_id, store, source, reason, entry) = (
        c.text("event_id")?,
        c.text("store_id")?,
        c.text("source")?,
        c.text("reason")?,
        c.text("stream_entry_id")?,
    );
    let raw = c
        .column("raw")?
        .as_binary_opt::<i32>()
        .ok_or(ColumnsError::Column("raw"))?;
    let deliveries = c.num::<UInt32Type>("delivery_count")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(RejectedRow {
                event_id: event_id.value(i),
                occurred_at: c.seconds("occurred_at", i)?,
                received_at: c.seconds("received_at", i)?,
                region: c.region("region", i)?,
                store_id: store.value(i),
                source: enum_code(&SOURCES, "source", source.value(i))?,
                reason: reason.value(i),
                raw: raw.value(i),
                delivery_count: deliveries.value(i),
                stream_entry_id: entry.value(i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Enum8('a' = 1, 'b' = 2)` as the migrations write it.
    fn enum8(values: &[(i8, &str)]) -> String {
        let values: Vec<String> = values.iter().map(|(c, n)| format!("'{n}' = {c}")).collect();
        format!("Enum8({})", values.join(", "))
    }

    #[test]
    fn enum_names_are_the_migrations() {
        let sql: String = pipeline::schema::MIGRATIONS.iter().map(|m| m.sql).collect();
        assert!(sql.contains(&enum8(&TYPES)));
        assert!(sql.contains(&enum8(&REGIONS)));
        assert!(sql.contains(&enum8(&REGIONS[1..])));
        assert!(sql.contains(&enum8(&SOURCES)));
    }

    fn commerce_row() -> CommerceRow<'static> {
        CommerceRow {
            event_id: Uuid::from_u128(7),
            occurred_at: 1_700_000_000,
            received_at: 1_700_000_001,
            region: 2,
            store_id: "am-1",
            r#type: 4,
            product_id: 1,
            category_id: 2,
            category_code: "a.b",
            brand: "x",
            seller_id: 3,
            currency: "USD",
            price: 19_990_000_000,
            quantity: 2,
            user_id: 4,
            session_id: "s",
        }
    }

    #[test]
    fn commerce_rows_round_trip() {
        let row = commerce_row();
        let mut columns = CommerceColumns::default();
        columns.push(&row);
        let batch = columns.finish().unwrap();
        let back = commerce_rows(&batch).unwrap();
        assert_eq!(format!("{:?}", back[0]), format!("{row:?}"));
    }

    fn parquet(batch: &RecordBatch) -> bytes::Bytes {
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.into_inner().unwrap().into()
    }

    /// `batch` with its first column, `event_id`, replaced by `array` of type `field_type`.
    fn with_event_id(
        batch: &RecordBatch,
        field_type: DataType,
        array: arrow_array::ArrayRef,
    ) -> RecordBatch {
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[0] = field("event_id", field_type);
        let mut arrays = batch.columns().to_vec();
        arrays[0] = array;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn event_ids_are_parquet_uuids_and_objects_with_text_ids_still_read() {
        use parquet::{
            basic::{LogicalType, Type as PhysicalType},
            file::reader::{FileReader, SerializedFileReader},
        };

        let row = CommerceRow {
            event_id: Uuid::parse_str("0192a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b").unwrap(),
            ..commerce_row()
        };
        let mut columns = CommerceColumns::default();
        columns.push(&row);
        let batch = columns.finish().unwrap();

        // 16 bytes in RFC 9562's order, under Parquet's UUID logical type
        let body = parquet(&batch);
        let file = SerializedFileReader::new(body.clone()).unwrap();
        let id = file.metadata().file_metadata().schema_descr().column(0);
        assert_eq!(id.name(), "event_id");
        assert_eq!(id.physical_type(), PhysicalType::FIXED_LEN_BYTE_ARRAY);
        assert_eq!(id.type_length(), 16);
        assert_eq!(id.logical_type_ref(), Some(&LogicalType::Uuid));
        let back = crate::read::batches("new", body).unwrap();
        assert_eq!(
            back[0].column(0).as_fixed_size_binary().value(0),
            row.event_id.as_bytes()
        );
        assert_eq!(
            format!("{:?}", commerce_rows(&back[0]).unwrap()),
            format!("{:?}", [&row])
        );

        // an object written before: the id as its canonical text
        let old = with_event_id(
            &batch,
            DataType::Utf8,
            Arc::new(arrow_array::StringArray::from(vec![
                row.event_id.to_string(),
            ])),
        );
        let back = crate::read::batches("old", parquet(&old)).unwrap();
        assert_eq!(back[0].schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(
            format!("{:?}", commerce_rows(&back[0]).unwrap()),
            format!("{:?}", [&row])
        );
    }

    #[test]
    fn an_event_id_column_of_another_width_or_type_is_refused_by_name() {
        let mut columns = CommerceColumns::default();
        columns.push(&commerce_row());
        let batch = columns.finish().unwrap();
        let with_id = |field_type, array| with_event_id(&batch, field_type, array);

        // eight bytes where a UUID's sixteen belong, read back through Parquet as the lake's
        // objects are
        let short = with_id(
            DataType::FixedSizeBinary(8),
            Arc::new(
                arrow_array::FixedSizeBinaryArray::try_from_iter([[7u8; 8]].into_iter()).unwrap(),
            ),
        );
        let back = crate::read::batches("short", parquet(&short)).unwrap();
        assert_eq!(
            back[0].schema().field(0).data_type(),
            &DataType::FixedSizeBinary(8)
        );
        assert!(matches!(
            commerce_rows(&back[0]),
            Err(ColumnsError::Column("event_id"))
        ));

        // neither bytes nor text
        let number = with_id(
            DataType::UInt64,
            Arc::new(arrow_array::UInt64Array::from(vec![7u64])),
        );
        assert!(matches!(
            commerce_rows(&number),
            Err(ColumnsError::Column("event_id"))
        ));

        // text that is not a UUID: the value is named
        let text = with_id(
            DataType::Utf8,
            Arc::new(arrow_array::StringArray::from(vec!["not-an-id"])),
        );
        match commerce_rows(&text) {
            Err(ColumnsError::Value { column, value }) => {
                assert_eq!((column, value.as_str()), ("event_id", "not-an-id"))
            }
            other => panic!("expected the value refused, got {other:?}"),
        }
    }

    #[test]
    fn probe_and_rejected_event_ids_keep_their_types() {
        assert_eq!(
            schema(Kind::Probes).field(0).data_type(),
            &DataType::FixedSizeBinary(16)
        );
        // a refused event's id is whatever the store sent: a `String` in the table
        assert_eq!(schema(Kind::Rejected).field(0).data_type(), &DataType::Utf8);
    }
}
