//! A segment: a range of one consumer's stream entries, archived together. Its entries'
//! rows go into one Parquet writer per partition as they are read, and the segment is
//! sealed before an entry could take an object past `ARCHIVER_OBJECT_BYTES` (the writer's
//! own estimate of the encoded size decides). Turning entries into Parquet objects is pure
//! and deterministic, so a segment rewritten after a crash has the same keys and the same
//! bytes.
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
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use pipeline::{
    region::Region,
    rows::{
        CommerceRow, EventRow, ProbeRow, RejectSource, RejectedRow, datetime, event_row_with_id,
    },
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

/// Rows handed to the Parquet writer at a time, per partition, at most (or fewer, once
/// they hold a page's worth of bytes). The writer's output depends on how its input is cut
/// into batches, so the cut depends on the rows alone, never on how the stream was read: a
/// segment rebuilt after a crash has the same bytes.
const ROWS_PER_WRITE: usize = 1024;

/// Bytes kept free below the bound for the footer (schema, row-group and page-offset
/// metadata) and the pages' headers.
const FOOTER_ALLOWANCE: usize = 16 * 1024;

/// An entry's rows are taken to encode to at most this many times its stream bytes (its
/// events' protobuf): Parquet's plain encoding of these columns is about as large as
/// protobuf's, and the writer's estimate counts the page being filled uncompressed.
const ENTRY_GROWTH: usize = 2;

/// One partition of the open segment: its Parquet writer and the rows not yet handed to it.
struct Part {
    columns: Columns,
    /// Rows in `columns`, and their plain size.
    pending_rows: usize,
    pending_bytes: usize,
    rows: u64,
    /// Made at the first write, with the first batch's schema.
    writer: Option<ArrowWriter<Vec<u8>>>,
}

impl Part {
    fn new(kind: Kind) -> Part {
        Part {
            columns: Columns::new(kind),
            pending_rows: 0,
            pending_bytes: 0,
            rows: 0,
            writer: None,
        }
    }

    /// What the object would hold if closed now: the bytes written, the writer's estimate of
    /// its row group in progress (pages being filled counted uncompressed), and the plain
    /// size of the rows not handed to it yet.
    fn estimated_bytes(&self) -> usize {
        let writer = self
            .writer
            .as_ref()
            .map_or(0, |w| w.bytes_written() + w.in_progress_size());
        writer + self.pending_bytes
    }

    fn added(
        &mut self,
        kind: Kind,
        bytes: usize,
        properties: &WriterProperties,
    ) -> Result<(), EncodeError> {
        self.pending_rows += 1;
        self.pending_bytes += bytes;
        self.rows += 1;
        if self.pending_rows == ROWS_PER_WRITE
            || self.pending_bytes >= properties.data_page_size_limit()
        {
            self.write(kind, properties)?;
        }
        Ok(())
    }

    /// Hands the pending rows to the writer.
    fn write(&mut self, kind: Kind, properties: &WriterProperties) -> Result<(), EncodeError> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.columns, Columns::new(kind)).finish()?;
        if self.writer.is_none() {
            self.writer = Some(ArrowWriter::try_new(
                Vec::new(),
                batch.schema(),
                Some(properties.clone()),
            )?);
        }
        if let Some(writer) = self.writer.as_mut() {
            writer.write(&batch)?;
        }
        self.pending_rows = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    /// The finished file.
    fn close(mut self, kind: Kind, properties: &WriterProperties) -> Result<Vec<u8>, EncodeError> {
        self.write(kind, properties)?;
        match self.writer {
            // writes the footer, then hands the buffer back
            Some(writer) => Ok(writer.into_inner()?),
            None => Ok(Vec::new()),
        }
    }
}

/// The open segment: entries read but not yet sealed, their rows already in each
/// partition's Parquet writer, and what makes the segment due.
pub struct Open {
    /// The entries' stream ids, in order: the segment's range, and what is acknowledged.
    pub ids: Vec<String>,
    /// The roll period (`now / roll_every`) of the first entry: the segment is due when the
    /// period ends, so files line up with the hour (or whatever `ARCHIVER_ROLL_EVERY` is).
    pub period: Option<u64>,
    parts: BTreeMap<Partition, Part>,
    properties: WriterProperties,
    /// The largest object allowed, in bytes.
    object_bytes: usize,
    /// The entries' bytes as the stream holds them ([`RawEntry::size`]), which stay in Redis
    /// until the segment is written, and the most the segment may hold.
    stream_bytes: usize,
    segment_bytes: usize,
}

/// What [`Open::push`] did with an entry.
#[derive(Debug)]
pub enum Pushed {
    /// Its rows are in the segment.
    Added,
    /// Its rows might take an object past the bound: the segment must be sealed first; the
    /// entry is handed back untouched.
    Full(RawEntry),
}

impl Open {
    /// An empty segment whose objects stay within `object_bytes` and whose entries within
    /// `segment_bytes` of the stream.
    pub fn new(object_bytes: usize, segment_bytes: usize) -> Open {
        Open {
            ids: Vec::new(),
            period: None,
            parts: BTreeMap::new(),
            properties: properties(object_bytes),
            object_bytes,
            stream_bytes: 0,
            segment_bytes,
        }
    }

    /// An empty segment with this one's bounds: the next one, once this one is sealed.
    pub fn emptied(&self) -> Open {
        Open::new(self.object_bytes, self.segment_bytes)
    }

    /// The entries' bytes as the stream holds them ([`RawEntry::size`]).
    pub fn stream_bytes(&self) -> usize {
        self.stream_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The largest estimated object of the segment so far, in bytes.
    pub fn largest_object(&self) -> usize {
        self.parts
            .values()
            .map(Part::estimated_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Whether the segment should be sealed because its period ended.
    pub fn is_due(&self, period: u64) -> bool {
        !self.is_empty() && self.period.is_some_and(|p| p != period)
    }

    /// Adds an entry's rows, unless they might take one of the segment's objects past the
    /// bound, or the segment's entries past their bound in the stream: an object never
    /// exceeds it, a segment holds no more of the stream than its bound, and the first entry
    /// of a segment always goes in.
    pub fn push(&mut self, entry: RawEntry, period: u64) -> Result<Pushed, EncodeError> {
        let growth = entry.fields.batch.as_ref().map_or(0, Bytes::len) * ENTRY_GROWTH;
        if !self.is_empty()
            && (self.largest_object() + growth + FOOTER_ALLOWANCE > self.object_bytes
                || self.stream_bytes + entry.size() > self.segment_bytes)
        {
            return Ok(Pushed::Full(entry));
        }
        self.push_unbounded(entry, period)?;
        Ok(Pushed::Added)
    }

    /// Adds an entry's rows whatever the size (a segment rebuilt after a crash holds the
    /// range its marker names, as first sealed).
    pub fn push_unbounded(&mut self, entry: RawEntry, period: u64) -> Result<(), EncodeError> {
        // The delivery count says how often the archiver read the entry, which differs
        // after a crash: the archive's rows must not, so every entry counts as delivered once.
        let entry = RawEntry {
            deliveries: 1,
            attempts: 0,
            ..entry
        };
        add_entry(&entry, &Limits::unbounded(), self)?;
        self.period.get_or_insert(period);
        self.stream_bytes += entry.size();
        self.ids.push(entry.id);
        Ok(())
    }

    fn part(&mut self, partition: Partition) -> (&mut Part, &WriterProperties) {
        let kind = partition.kind;
        let part = self
            .parts
            .entry(partition)
            .or_insert_with(|| Part::new(kind));
        (part, &self.properties)
    }

    fn event(&mut self, row: &EventRow<'_>) -> Result<(), EncodeError> {
        match row {
            EventRow::Commerce(r) => {
                let p = Partition::at(Kind::Commerce, r.occurred_at, Some(region(r.region)));
                let (part, properties) = self.part(p);
                if let Columns::Commerce(c) = &mut part.columns {
                    c.push(r);
                }
                part.added(Kind::Commerce, commerce_size(r), properties)
            }
            EventRow::Probe(r) => {
                let p = Partition::at(Kind::Probes, r.occurred_at, Some(region(r.region)));
                let (part, properties) = self.part(p);
                if let Columns::Probes(c) = &mut part.columns {
                    c.push(r);
                }
                part.added(Kind::Probes, probe_size(r), properties)
            }
        }
    }

    fn rejected(&mut self, row: &RejectedRow<'_>) -> Result<(), EncodeError> {
        let p = Partition::at(Kind::Rejected, row.received_at, None);
        let (part, properties) = self.part(p);
        if let Columns::Rejected(c) = &mut part.columns {
            c.push(row);
        }
        part.added(Kind::Rejected, rejected_size(row), properties)
    }

    /// The segment's objects, named `name`, one per partition its rows fall in, and its
    /// entries' ids.
    pub fn finish(self, name: &SegmentName) -> Result<(Vec<String>, Vec<Object>), EncodeError> {
        let mut objects = Vec::with_capacity(self.parts.len());
        for (partition, part) in self.parts {
            let rows = part.rows;
            let body = part.close(partition.kind, &self.properties)?;
            let sha256 = hex::encode(Sha256::digest(&body));
            objects.push(Object {
                key: partition.key(name),
                partition,
                body: Bytes::from(body),
                rows,
                sha256,
            });
        }
        Ok((self.ids, objects))
    }
}

/// Plain sizes of a row (strings with their 4-byte lengths, numbers at their width): what
/// it adds to a page before compression.
fn commerce_size(r: &CommerceRow<'_>) -> usize {
    let text = [
        r.store_id,
        r.category_code,
        r.brand,
        r.currency,
        r.session_id,
    ];
    // event id (16 bytes), region and type names, two timestamps, five 8-byte numbers and
    // the 16-byte price, the quantity, and the strings' lengths
    16 + 32 + 16 + 40 + 16 + 4 + 8 * 4 + text.iter().map(|s| s.len()).sum::<usize>()
}

fn probe_size(r: &ProbeRow<'_>) -> usize {
    16 + 32 + 16 + 8 * 8 + 8 * 4 + r.store_id.len() + r.target.len()
}

fn rejected_size(r: &RejectedRow<'_>) -> usize {
    let text = [r.event_id, r.store_id, r.reason, r.stream_entry_id];
    32 + 16 + 4 + 8 * 4 + r.raw.len() + text.iter().map(|s| s.len()).sum::<usize>()
}

fn region(code: i8) -> &'static str {
    enum_name(&REGIONS, code)
}

/// The writer settings: zstd pages, and nothing that varies between runs (the `created_by`
/// is the crate's, not a time), so the same rows give the same bytes.
///
/// The writer's size estimate counts the page being filled and the dictionary uncompressed,
/// so both are kept small beside the bound (a 128th of it, 1 MiB at most), and the event id,
/// unique per row, is not dictionary-encoded at all (a dictionary of it would hold the whole
/// column uncompressed until the end): the estimate then stays close to the bytes written,
/// and objects end near the bound. Statistics per column chunk only, so the footer does not
/// grow with the pages.
fn properties(object_bytes: usize) -> WriterProperties {
    let page = (object_bytes / 128).clamp(1024, 1024 * 1024);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_data_page_size_limit(page)
        .set_dictionary_page_size_limit(page)
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!(
            "marketplace archiver {}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

/// One entry's rows, as the consumer would load them: decoded as views borrowing the
/// entry's bytes (`Fields::decode_view`, the consumer's decoder), so no event is copied into
/// owned strings on the way to the columns.
fn add_entry(entry: &RawEntry, limits: &Limits, parts: &mut Open) -> Result<(), EncodeError> {
    let batch = match entry.fields.decode_view() {
        Ok(batch) => batch,
        Err(err) => {
            let reason = format!("undecodable stream entry: {err}");
            return parts.rejected(&Rejecting::undecoded(entry).whole_entry(&reason));
        }
    };
    let received = batch.received_at.as_ref().map_or(0, |t| t.seconds);
    let received_at = datetime(received);
    let region = Region::from_proto(batch.region);
    let store_id = batch.store_id;
    let checked = check_entry(
        limits,
        store_id,
        region,
        received,
        batch.from_prober,
        batch.events,
    );
    let rejecting = Rejecting {
        entry,
        received_at,
        region: region.map_or(0, Region::ch_code),
        store_id,
    };
    // the ids the rules parsed already, as the consumer takes them
    for (accepted, id) in checked.with_ids() {
        parts.event(&event_row_with_id(accepted, id, received_at))?;
    }
    for r in &checked.rejected {
        let reason = r.reason();
        let raw = Rejecting::refused_event_raw(batch.encoded_events[r.index]);
        let occurred_at = datetime(r.event.occurred_at.map_or(0, |t| t.seconds));
        parts.rejected(&rejecting.row(
            RejectSource::Consumer,
            r.event.event_id,
            occurred_at,
            &reason,
            &raw,
        ))?;
    }
    for r in &batch.rejected {
        parts.rejected(&rejecting.row(
            RejectSource::Gateway,
            &r.event_id,
            0,
            &r.reason,
            &r.raw_event,
        ))?;
    }
    if batch.rejected_not_kept > 0 {
        let reason = not_kept_reason(batch.rejected_not_kept);
        parts.rejected(&rejecting.row(RejectSource::Gateway, "", 0, &reason, &[]))?;
    }
    Ok(())
}
