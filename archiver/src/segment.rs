//! A segment: a range of one consumer's stream entries, archived together. Turning its
//! entries into Parquet objects is pure and deterministic, so a segment rewritten after a
//! crash has the same keys and the same bytes.
//!
//! The rows are the consumer's: each entry is decoded and checked with the consumer's rules
//! (`consumer::sink::check_entry`), accepted events become `pipeline::rows` rows and the rest
//! `rejected_events` rows (`consumer::sink::Rejecting`), so the archive holds what
//! ClickHouse holds, plus what it refused.

use std::collections::BTreeMap;

use bytes::Bytes;
use consumer::{
    batch::RawEntry,
    sink::{Rejecting, check_entry, not_kept_reason},
};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use pipeline::{
    region::Region,
    rows::{EventRow, RejectSource, datetime, event_row},
    validate::Limits,
};
use sha2::{Digest, Sha256};

use crate::{
    columns::{ColumnsError, CommerceColumns, ProbeColumns, REGIONS, RejectedColumns, enum_name},
    layout::{Kind, Partition, SegmentName},
};

/// One Parquet object of a segment, ready to upload.
#[derive(Clone, Debug)]
pub struct Object {
    pub key: String,
    pub partition: Partition,
    pub body: Bytes,
    pub rows: u64,
    /// Lowercase hex SHA-256 of `body`.
    pub sha256: String,
}

/// Why a segment could not be encoded: a bug, never the data (bad data becomes rejected rows).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Columns(#[from] ColumnsError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The rows of one partition, while a segment is encoded.
enum Columns {
    Commerce(CommerceColumns),
    Probes(ProbeColumns),
    Rejected(RejectedColumns),
}

impl Columns {
    fn new(kind: Kind) -> Columns {
        match kind {
            Kind::Commerce => Columns::Commerce(CommerceColumns::default()),
            Kind::Probes => Columns::Probes(ProbeColumns::default()),
            Kind::Rejected => Columns::Rejected(RejectedColumns::default()),
        }
    }

    fn finish(self) -> Result<arrow_array::RecordBatch, ColumnsError> {
        match self {
            Columns::Commerce(c) => c.finish(),
            Columns::Probes(c) => c.finish(),
            Columns::Rejected(c) => c.finish(),
        }
    }
}

/// Every partition's rows of a segment, in entry order and, within an entry, event order.
#[derive(Default)]
struct Partitions(BTreeMap<Partition, (Columns, u64)>);

impl Partitions {
    fn get(&mut self, partition: Partition) -> &mut Columns {
        let kind = partition.kind;
        let slot = self
            .0
            .entry(partition)
            .or_insert_with(|| (Columns::new(kind), 0));
        slot.1 += 1;
        &mut slot.0
    }

    fn event(&mut self, row: &EventRow<'_>) {
        match row {
            EventRow::Commerce(r) => {
                let p = Partition::at(Kind::Commerce, r.occurred_at, Some(region(r.region)));
                if let Columns::Commerce(c) = self.get(p) {
                    c.push(r);
                }
            }
            EventRow::Probe(r) => {
                let p = Partition::at(Kind::Probes, r.occurred_at, Some(region(r.region)));
                if let Columns::Probes(c) = self.get(p) {
                    c.push(r);
                }
            }
        }
    }

    fn rejected(&mut self, row: &pipeline::rows::RejectedRow<'_>) {
        let p = Partition::at(Kind::Rejected, row.received_at, None);
        if let Columns::Rejected(c) = self.get(p) {
            c.push(row);
        }
    }
}

fn region(code: i8) -> &'static str {
    enum_name(&REGIONS, code)
}

/// The writer settings: zstd pages, and nothing that varies between runs (the `created_by`
/// is the crate's, not a time), so the same rows give the same bytes.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!(
            "marketplace archiver {}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

/// The objects of a segment of `entries` named `name`, one per partition its rows fall in.
pub fn encode(entries: &[RawEntry], name: &SegmentName) -> Result<Vec<Object>, EncodeError> {
    let limits = Limits::unbounded();
    let mut parts = Partitions::default();
    for entry in entries {
        // The delivery count says how often the archiver read the entry, which differs
        // after a crash: the archive's rows must not, so every entry counts as delivered once.
        let entry = RawEntry {
            deliveries: 1,
            attempts: 0,
            ..entry.clone()
        };
        add_entry(&entry, &limits, &mut parts);
    }
    let mut objects = Vec::with_capacity(parts.0.len());
    for (partition, (columns, rows)) in parts.0 {
        let batch = columns.finish()?;
        let mut body = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut body, batch.schema(), Some(properties()))?;
        writer.write(&batch)?;
        writer.close()?;
        let sha256 = hex::encode(Sha256::digest(&body));
        objects.push(Object {
            key: partition.key(name),
            partition,
            body: Bytes::from(body),
            rows,
            sha256,
        });
    }
    Ok(objects)
}

/// One entry's rows, as the consumer would load them.
fn add_entry(entry: &RawEntry, limits: &Limits, parts: &mut Partitions) {
    let batch = match entry.fields.decode() {
        Ok(batch) => batch,
        Err(err) => {
            let reason = format!("undecodable stream entry: {err}");
            parts.rejected(&Rejecting::undecoded(entry).whole_entry(&reason));
            return;
        }
    };
    let received = batch.received_at.as_ref().map_or(0, |t| t.seconds);
    let received_at = datetime(received);
    let region = Region::from_proto(batch.region);
    let checked = check_entry(
        limits,
        &batch.store_id,
        region,
        received,
        batch.from_prober,
        batch.events,
    );
    let rejecting = Rejecting {
        entry,
        received_at,
        region: region.map_or(0, Region::ch_code),
        store_id: &batch.store_id,
    };
    for accepted in &checked.accepted {
        parts.event(&event_row(accepted, received_at));
    }
    for r in &checked.rejected {
        let reason = r.reason();
        let raw = prost::Message::encode_to_vec(&r.event);
        let occurred_at = datetime(r.event.occurred_at.as_ref().map_or(0, |t| t.seconds));
        parts.rejected(&rejecting.row(
            RejectSource::Consumer,
            &r.event.event_id,
            occurred_at,
            &reason,
            &raw,
        ));
    }
    for r in &batch.rejected {
        parts.rejected(&rejecting.row(
            RejectSource::Gateway,
            &r.event_id,
            0,
            &r.reason,
            &r.raw_event,
        ));
    }
    if batch.rejected_not_kept > 0 {
        let reason = not_kept_reason(batch.rejected_not_kept);
        parts.rejected(&rejecting.row(RejectSource::Gateway, "", 0, &reason, &[]));
    }
}

/// Entries read but not yet archived, with what makes them due.
#[derive(Debug, Default)]
pub struct Open {
    pub entries: Vec<RawEntry>,
    /// Encoded bytes of the entries' batches.
    pub bytes: usize,
    /// The roll period (`now / roll_every`) of the first entry: the segment is due when the
    /// period ends, so files line up with the hour (or whatever `ARCHIVER_ROLL_EVERY` is).
    pub period: Option<u64>,
}

impl Open {
    pub fn push(&mut self, entry: RawEntry, period: u64) {
        self.bytes += entry.fields.batch.as_ref().map_or(0, Bytes::len);
        self.period.get_or_insert(period);
        self.entries.push(entry);
    }

    /// Whether the segment should be sealed: its bytes reached the bound, or its period ended.
    pub fn is_due(&self, max_bytes: usize, period: u64) -> bool {
        !self.entries.is_empty()
            && (self.bytes >= max_bytes || self.period.is_some_and(|p| p != period))
    }
}
