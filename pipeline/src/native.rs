//! The rows of [`crate::rows`] in ClickHouse's Native format: appended column by column into
//! one buffer per column, sent as blocks the server copies column by column instead of
//! parsing row by row (`INSERT INTO <table> FORMAT Native`).
//!
//! A block over HTTP is the column count and row count (unsigned LEB128), then for each
//! column its name, its type (both length-prefixed strings) and its values: fixed-width
//! values little-endian one after the other, strings each length-prefixed. Every value is
//! laid out as in RowBinary, `UUID` included (its two 64-bit halves, high half first).
//! Columns are matched to the table by name and their types must name the table's types
//! exactly, so each row type lists its table's columns here; a test inserts both formats
//! into the real server and compares.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use clickhouse::insert_formatted::InsertFormatted;

use crate::rows::{CommerceRow, ProbeRow, RejectedRow};

/// A column: its name and its ClickHouse type, as the migrations create it.
pub type Column = (&'static str, &'static str);

/// A row type that can be written as Native columns.
pub trait NativeRow {
    /// The table's columns, in the order [`NativeRow::append`] fills them.
    const COLUMNS: &'static [Column];

    /// Appends this row's value of each column to that column's buffer.
    fn append(&self, columns: &mut [BytesMut]);
}

/// Rows of one table as Native columns, until [`Block::pieces`] hands them out as a block.
/// Each column's buffer holds the column's header (name and type) and then its values, so
/// a block goes out as its counts and then each column's bytes as they are, not copied
/// into one buffer first (#19). The buffers keep their capacity: once a block's pieces
/// are dropped, the next block of the same size allocates nothing.
pub struct Block {
    columns: &'static [Column],
    data: Vec<BytesMut>,
    rows: usize,
}

impl Block {
    /// An empty block of `R`'s table.
    pub fn new<R: NativeRow>() -> Block {
        Block {
            columns: R::COLUMNS,
            data: vec![BytesMut::new(); R::COLUMNS.len()],
            rows: 0,
        }
    }

    /// Starts each column with its header. At the first row rather than when the last
    /// block went out: by then its pieces are usually dropped, so that the header goes at
    /// the start of the buffer the last block grew, not into a new one.
    fn start(&mut self) {
        for ((name, ty), data) in self.columns.iter().zip(&mut self.data) {
            put_str(data, name.as_bytes());
            put_str(data, ty.as_bytes());
        }
    }

    /// Appends one row.
    pub fn push<R: NativeRow>(&mut self, row: &R) {
        debug_assert!(
            std::ptr::eq(self.columns, R::COLUMNS),
            "a row of another table"
        );
        if self.rows == 0 {
            self.start();
        }
        row.append(&mut self.data);
        self.rows += 1;
    }

    /// Rows appended since the last [`Block::pieces`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows appended so far as one Native block, in pieces to send one after the other
    /// (the counts, then each column), and an empty block again. Drop the pieces (or all
    /// slices of them) before the next block outgrows what is left of the buffers, so
    /// that they are reused rather than allocated afresh.
    pub fn pieces(&mut self) -> Vec<Bytes> {
        if self.rows == 0 {
            self.start();
        }
        let mut pieces = Vec::with_capacity(self.columns.len() + 1);
        let mut counts = BytesMut::with_capacity(20);
        put_varuint(&mut counts, self.columns.len() as u64);
        put_varuint(&mut counts, self.rows as u64);
        pieces.push(counts.freeze());
        pieces.extend(self.data.iter_mut().map(|data| data.split().freeze()));
        self.rows = 0;
        pieces
    }

    /// [`Block::pieces`] as one buffer (a copy): a block to look at or send whole.
    pub fn take(&mut self) -> Bytes {
        let pieces = self.pieces();
        let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
        for piece in pieces {
            out.put_slice(&piece);
        }
        out.freeze()
    }
}

/// Rows per block of a [`NativeInsert`]: a block's columns are held until it is sent, so this
/// bounds the memory an insert holds (about 7 MiB of commerce rows); the server gathers
/// small blocks into parts of up to a million rows itself (`min_insert_block_size_rows`).
pub const BLOCK_ROWS: usize = 65_536;

/// The largest piece a block is sent in, what `clickhouse::insert::Insert` sends RowBinary
/// in: each piece is compressed on its own (LZ4 when the client compresses), and pieces
/// this small are recycled by the allocator, where a block of megabytes would be mapped
/// and faulted in afresh every time.
const CHUNK_BYTES: usize = 256 * 1024;

/// One `INSERT INTO <table> FORMAT Native`: rows go into a [`Block`], sent every
/// [`BLOCK_ROWS`] rows and at the end. Like `clickhouse::insert::Insert`, nothing is sent
/// before the first block, so an insert without rows sends no request; the client's
/// compression applies.
pub struct NativeInsert {
    insert: InsertFormatted,
    block: Block,
    block_rows: usize,
}

impl NativeInsert {
    /// An insert of `R` rows into `table`, a name that needs no quoting.
    pub fn new<R: NativeRow>(client: &clickhouse::Client, table: &str) -> NativeInsert {
        NativeInsert {
            insert: client.insert_formatted_with(format!("INSERT INTO {table} FORMAT Native")),
            block: Block::new::<R>(),
            block_rows: BLOCK_ROWS,
        }
    }

    /// Rows per block instead of [`BLOCK_ROWS`] (at least one).
    pub fn with_block_rows(mut self, rows: usize) -> NativeInsert {
        self.block_rows = rows.max(1);
        self
    }

    /// As `clickhouse::insert::Insert::with_timeouts`: sending one piece, and waiting for
    /// the server's answer at the end.
    pub fn with_timeouts(mut self, send: Option<Duration>, end: Option<Duration>) -> NativeInsert {
        self.insert = self.insert.with_timeouts(send, end);
        self
    }

    /// Adds one row; sends the block once it is full.
    pub async fn write<R: NativeRow>(&mut self, row: &R) -> clickhouse::error::Result<()> {
        self.block.push(row);
        if self.block.rows() >= self.block_rows {
            self.send().await?;
        }
        Ok(())
    }

    /// Fills `block` (empty, of the same table: [`Spare::take`]) instead of a new one, so
    /// that its buffers, grown by an earlier insert, need not grow again.
    pub fn with_block(mut self, block: Block) -> NativeInsert {
        assert!(
            std::ptr::eq(block.columns, self.block.columns) && block.rows() == 0,
            "an empty block of the same table"
        );
        self.block = block;
        self
    }

    /// Sends what is left and waits until the server confirms the whole insert.
    pub async fn end(self) -> clickhouse::error::Result<()> {
        self.finish().await.map(drop)
    }

    /// As [`NativeInsert::end`], and hands back the emptied block for the next insert.
    pub async fn finish(mut self) -> clickhouse::error::Result<Block> {
        if self.block.rows() > 0 {
            self.send().await?;
        }
        self.insert.end().await?;
        Ok(self.block)
    }

    async fn send(&mut self) -> clickhouse::error::Result<()> {
        for piece in self.block.pieces() {
            for start in (0..piece.len()).step_by(CHUNK_BYTES) {
                let end = piece.len().min(start + CHUNK_BYTES);
                self.insert.send(piece.slice(start..end)).await?;
            }
        }
        Ok(())
    }
}

/// Emptied blocks kept between inserts, at most one per table, shared by clones: a writer
/// that inserts every second would otherwise grow a block's columns from nothing, and fault
/// in their pages afresh, at every insert (at 100k-row inserts that cost the client more
/// than the format saves it; docs/BENCHMARKS.md).
#[derive(Clone, Default)]
pub struct Spare(Arc<Mutex<Vec<Block>>>);

impl Spare {
    /// A block of `R`'s table: the one kept, or a new one.
    pub fn take<R: NativeRow>(&self) -> Block {
        let mut blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match blocks
            .iter()
            .position(|b| std::ptr::eq(b.columns, R::COLUMNS))
        {
            Some(i) => blocks.swap_remove(i),
            None => Block::new::<R>(),
        }
    }

    /// Keeps an emptied block for the next [`Spare::take`] of its table.
    pub fn put(&self, block: Block) {
        debug_assert_eq!(block.rows(), 0, "a block with rows left");
        let mut blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !blocks
            .iter()
            .any(|b| std::ptr::eq(b.columns, block.columns))
        {
            blocks.push(block);
        }
    }
}

/// Unsigned LEB128, as ClickHouse writes lengths and counts.
fn put_varuint(out: &mut impl bytes::BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A `String` value: its length, then its bytes.
fn put_str(out: &mut impl bytes::BufMut, s: &[u8]) {
    put_varuint(out, s.len() as u64);
    out.put_slice(s);
}

/// A `UUID` value: the high 64 bits, then the low, each little-endian.
fn put_uuid(out: &mut BytesMut, id: &uuid::Uuid) {
    let (high, low) = id.as_u64_pair();
    out.put_u64_le(high);
    out.put_u64_le(low);
}

const REGION: &str = "Enum8('europe' = 1, 'america' = 2, 'asia' = 3)";
const REGION_OR_UNSPECIFIED: &str =
    "Enum8('unspecified' = 0, 'europe' = 1, 'america' = 2, 'asia' = 3)";

/// The columns of an event table: the five [`put_event_head`] writes, then `$rest`.
macro_rules! event_columns {
    ($($rest:expr),* $(,)?) => {
        &[
            ("event_id", "UUID"),
            ("occurred_at", "DateTime('UTC')"),
            ("received_at", "DateTime('UTC')"),
            ("region", REGION),
            ("store_id", "String"),
            $($rest),*
        ]
    };
}

/// The first five columns of both event tables: `event_id`, `occurred_at`, `received_at`,
/// `region`, `store_id`.
fn put_event_head(
    c: &mut [BytesMut],
    event_id: &uuid::Uuid,
    (occurred_at, received_at): (u32, u32),
    region: i8,
    store_id: &str,
) {
    put_uuid(&mut c[0], event_id);
    c[1].put_u32_le(occurred_at);
    c[2].put_u32_le(received_at);
    c[3].put_i8(region);
    put_str(&mut c[4], store_id.as_bytes());
}

impl NativeRow for CommerceRow<'_> {
    const COLUMNS: &'static [Column] = event_columns![
        (
            "type",
            "Enum8('view' = 1, 'cart' = 2, 'remove_from_cart' = 3, 'purchase' = 4)",
        ),
        ("product_id", "UInt64"),
        ("category_id", "UInt64"),
        ("category_code", "String"),
        ("brand", "String"),
        ("seller_id", "UInt64"),
        ("currency", "String"),
        ("price", "Decimal(18, 9)"),
        ("quantity", "UInt32"),
        ("user_id", "UInt64"),
        ("session_id", "String"),
    ];

    fn append(&self, c: &mut [BytesMut]) {
        let times = (self.occurred_at, self.received_at);
        put_event_head(c, &self.event_id, times, self.region, self.store_id);
        c[5].put_i8(self.r#type);
        c[6].put_u64_le(self.product_id);
        c[7].put_u64_le(self.category_id);
        put_str(&mut c[8], self.category_code.as_bytes());
        put_str(&mut c[9], self.brand.as_bytes());
        c[10].put_u64_le(self.seller_id);
        put_str(&mut c[11], self.currency.as_bytes());
        c[12].put_i64_le(self.price);
        c[13].put_u32_le(self.quantity);
        c[14].put_u64_le(self.user_id);
        put_str(&mut c[15], self.session_id.as_bytes());
    }
}

impl NativeRow for ProbeRow<'_> {
    const COLUMNS: &'static [Column] = event_columns![
        ("target", "String"),
        ("up", "UInt8"),
        ("status_code", "UInt16"),
        ("response_time_ms", "UInt32"),
        ("network_latency_ms", "UInt32"),
        ("bandwidth_bytes_per_second", "UInt64"),
        ("cpu_load", "Float64"),
        ("vantage_region", REGION_OR_UNSPECIFIED),
        ("tls_handshake_ms", "UInt32"),
        ("time_to_first_byte_ms", "UInt32"),
    ];

    fn append(&self, c: &mut [BytesMut]) {
        let times = (self.occurred_at, self.received_at);
        put_event_head(c, &self.event_id, times, self.region, self.store_id);
        put_str(&mut c[5], self.target.as_bytes());
        c[6].put_u8(self.up);
        c[7].put_u16_le(self.status_code);
        c[8].put_u32_le(self.response_time_ms);
        c[9].put_u32_le(self.network_latency_ms);
        c[10].put_u64_le(self.bandwidth_bytes_per_second);
        c[11].put_f64_le(self.cpu_load);
        c[12].put_i8(self.vantage_region);
        c[13].put_u32_le(self.tls_handshake_ms);
        c[14].put_u32_le(self.time_to_first_byte_ms);
    }
}

impl NativeRow for RejectedRow<'_> {
    const COLUMNS: &'static [Column] = &[
        ("event_id", "String"),
        ("occurred_at", "DateTime('UTC')"),
        ("received_at", "DateTime('UTC')"),
        ("region", REGION_OR_UNSPECIFIED),
        ("store_id", "String"),
        ("source", "Enum8('gateway' = 1, 'consumer' = 2)"),
        ("reason", "String"),
        ("raw", "String"),
        ("delivery_count", "UInt32"),
        ("stream_entry_id", "String"),
    ];

    fn append(&self, c: &mut [BytesMut]) {
        put_str(&mut c[0], self.event_id.as_bytes());
        c[1].put_u32_le(self.occurred_at);
        c[2].put_u32_le(self.received_at);
        c[3].put_i8(self.region);
        put_str(&mut c[4], self.store_id.as_bytes());
        c[5].put_i8(self.source);
        put_str(&mut c[6], self.reason.as_bytes());
        put_str(&mut c[7], self.raw);
        c[8].put_u32_le(self.delivery_count);
        put_str(&mut c[9], self.stream_entry_id.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varuint_is_leb128() {
        for (v, bytes) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            put_varuint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
    }

    fn rejected_row() -> RejectedRow<'static> {
        RejectedRow {
            event_id: "e",
            occurred_at: 1,
            received_at: 2,
            region: 3,
            store_id: "s",
            source: 2,
            reason: "r",
            raw: b"\x00\x01",
            delivery_count: 4,
            stream_entry_id: "1-0",
        }
    }

    #[test]
    fn spare_blocks_keep_their_buffers_one_per_table() {
        let spare = Spare::default();
        let mut block = spare.take::<RejectedRow<'_>>();
        block.push(&rejected_row());
        block.take();
        let kept = block.data.as_ptr();
        spare.put(block);
        // a second block of the same table is not kept
        spare.put(Block::new::<RejectedRow<'_>>());
        assert_eq!(spare.take::<RejectedRow<'_>>().data.as_ptr(), kept);
        assert_eq!(spare.take::<RejectedRow<'_>>().data[0].capacity(), 0);
        // another table's block is another block
        assert_eq!(spare.take::<CommerceRow<'_>>().data.len(), 16);
    }

    #[test]
    fn a_block_is_counts_then_named_typed_columns() {
        let row = rejected_row();
        let mut block = Block::new::<RejectedRow<'_>>();
        block.push(&row);
        block.push(&row);
        assert_eq!(block.rows(), 2);
        let (first, grown) = (block.data[0].as_ptr() as usize, block.data[0].capacity());
        let bytes = block.take();
        assert_eq!(block.rows(), 0);
        assert_eq!(&bytes[..2], &[10, 2]);
        assert_eq!(&bytes[2..12], b"\x08event_id\x06");
        assert_eq!(&bytes[12..18], b"String");
        assert_eq!(&bytes[18..22], b"\x01e\x01e");
        // every column's values follow its header, and nothing else is left over
        let values: usize = [4, 8, 8, 2, 4, 2, 4, 6, 8, 8].iter().sum();
        let headers: usize = RejectedRow::COLUMNS
            .iter()
            .map(|(n, t)| 2 + n.len() + t.len())
            .sum();
        assert_eq!(bytes.len(), 2 + headers + values);
        // the buffers are reused once the pieces are dropped: a second block is the same
        // bytes, in the buffer the first one grew
        block.push(&row);
        block.push(&row);
        let at = block.data[0].as_ptr() as usize;
        assert!(
            (first..first + grown).contains(&at),
            "the first block's buffer"
        );
        assert_eq!(block.take(), bytes);
    }
}
