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

mod order;

use std::{
    ops::Range,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use clickhouse::insert_formatted::InsertFormatted;

use crate::{
    config::Compression,
    rows::{CommerceRow, CommerceSource, ProbeRow, RejectedRow, currency, price},
};

pub use order::EventKey;

/// A column: its name and its ClickHouse type, as the migrations create it.
pub type Column = (&'static str, &'static str);

/// A row type that can be written as Native columns.
pub trait NativeRow {
    /// The table's columns, in the order [`NativeRow::append`] fills them.
    const COLUMNS: &'static [Column];

    /// Whether the table is ordered by [`EventKey`] and then its `store_id` column, so
    /// that its inserts go out in that order ([`Block`]).
    const KEYED: bool = false;

    /// Appends this row's value of each column to that column's buffer, the columns in
    /// their order.
    fn append(&self, columns: &mut (impl Columns + ?Sized));

    /// The row's [`EventKey`], for a [`NativeRow::KEYED`] table.
    fn key(&self) -> EventKey {
        EventKey::default()
    }
}

/// Where [`NativeRow::append`] writes each column's value: a buffer per column, or one
/// buffer for all (a row's record, [`Block`]).
pub trait Columns {
    /// The buffer of column `index`.
    fn at(&mut self, index: usize) -> &mut BytesMut;
}

impl Columns for [BytesMut] {
    fn at(&mut self, index: usize) -> &mut BytesMut {
        &mut self[index]
    }
}

/// One buffer every column's value goes into, one after the other: a row's record.
struct Record<'a>(&'a mut BytesMut);

impl Columns for Record<'_> {
    fn at(&mut self, _: usize) -> &mut BytesMut {
        self.0
    }
}

/// The name of the column that orders rows of equal [`EventKey`]s.
const KEY_STORE_COLUMN: &str = "store_id";

/// Rows of one table as Native columns, until [`Block::pieces`] hands them out as a block.
/// Each column's buffer holds the column's header (name and type) and then its values, so
/// a block goes out as its counts and then each column's bytes as they are, not copied
/// into one buffer first (#19). The buffers keep their capacity: once a block's pieces
/// are dropped, the next block of the same size allocates nothing.
///
/// A block of a [`NativeRow::KEYED`] table (the event tables) goes out in the table's key
/// order, so that ClickHouse need not sort it (`native::order`). Its rows are kept as
/// records, each row's values one after the other in one buffer, with each row's
/// [`EventKey`]; `Block::sort` orders the keys, and `Block::sorted_pieces` writes the
/// records of a chunk of rows, in that order, into the columns. A record is read whole, in
/// one place, where gathering each column's value from columns in the appended order would
/// read a place of its own per column, each a miss of the caches at an insert's size
/// (docs/BENCHMARKS.md, "Inserts sent in the key's order"). ClickHouse sorts what it
/// gathers of one insert (up to about a million rows, `min_insert_block_size_rows`) as one,
/// so every row of an insert is appended before its first chunk goes ([`NativeInsert`]).
pub struct Block {
    columns: &'static [Column],
    data: Vec<BytesMut>,
    rows: usize,
    /// For a keyed table, each row's key and where its record starts; `None` for any
    /// other, or rows sent as appended ([`Block::unkey`]).
    order: Option<order::Order>,
    /// A keyed table's rows as records.
    records: BytesMut,
    /// Each column's bytes per value for a keyed table, 0 for a `String` (its length, then
    /// its bytes), and what writes its sorted records into the columns (`write_sorted`).
    widths: &'static [u8],
    write_sorted: WriteSorted,
}

/// `write_sorted` of one row type.
type WriteSorted = fn(&mut [BytesMut], &[u8], &[order::Slot]);

impl Block {
    /// An empty block of `R`'s table.
    pub fn new<R: NativeRow>() -> Block {
        Block {
            columns: R::COLUMNS,
            data: vec![BytesMut::new(); R::COLUMNS.len()],
            rows: 0,
            order: R::KEYED.then(order::Order::default),
            records: BytesMut::new(),
            widths: &const { widths_of::<R>() }[..R::COLUMNS.len()],
            write_sorted: write_sorted::<R>,
        }
    }

    /// Whether this block's rows go out in the table's key order.
    fn keyed(&self) -> bool {
        self.order.is_some()
    }

    /// Sends the rows of this empty block in the order they are appended even if the table
    /// is keyed: what ClickHouse then sorts itself ([`NativeInsert::in_appended_order`]).
    fn unkey(&mut self) {
        assert_eq!(self.rows, 0, "an empty block");
        self.order = None;
        self.records = BytesMut::new();
    }

    /// Starts each column with room for a frame's head ([`HEADROOM`]) and its header. At
    /// the first row rather than when the last block went out: by then its pieces are
    /// usually dropped, so that the header goes at the start of the buffer the last block
    /// grew, not into a new one.
    fn start(&mut self) {
        for ((name, ty), data) in self.columns.iter().zip(&mut self.data) {
            data.put_bytes(0, HEADROOM);
            put_str(data, name.as_bytes());
            put_str(data, ty.as_bytes());
        }
    }

    /// Appends one row.
    pub fn push<R: NativeRow>(&mut self, row: &R) {
        debug_assert!(
            same_table(self.columns, R::COLUMNS),
            "a row of another table"
        );
        if let Some(order) = &mut self.order {
            order.push(row.key(), record_start(&self.records));
            row.append(&mut Record(&mut self.records));
        } else {
            if self.rows == 0 {
                self.start();
            }
            row.append(&mut self.data[..]);
        }
        self.rows += 1;
    }

    /// Appends the `commerce_events` rows of `rows`, received at `received_at`, written
    /// straight from the events' views a column at a time: each fixed-width column grows
    /// once and takes its values into place, where [`Block::push`] of a [`CommerceRow`]
    /// per event puts each value with its own capacity check (#19). The same bytes as
    /// pushing each event's [`CommerceRow`]; for a keyed block, that is what it does.
    pub fn push_commerce(&mut self, rows: &[CommerceSource<'_, '_>], received_at: u32) {
        debug_assert!(
            same_table(self.columns, CommerceRow::COLUMNS),
            "a block of another table"
        );
        if self.keyed() {
            for r in rows {
                self.push(&r.row(received_at));
            }
            return;
        }
        if rows.is_empty() {
            return;
        }
        if self.rows == 0 {
            self.start();
        }
        let c = &mut self.data[..];
        // a UUID's high half, then its low, each little-endian: the u128 with its halves swapped
        fixed(&mut c[0], rows, |r| {
            r.event_id.as_u128().rotate_left(64).to_le_bytes()
        });
        fixed(&mut c[1], rows, |r| r.occurred_at.to_le_bytes());
        fixed(&mut c[2], rows, |_| received_at.to_le_bytes());
        fixed(&mut c[3], rows, |r| r.region.to_le_bytes());
        strings(&mut c[4], rows, |r| r.store_id);
        fixed(&mut c[5], rows, |r| (r.commerce.r#type as i8).to_le_bytes());
        fixed(&mut c[6], rows, |r| r.commerce.product_id.to_le_bytes());
        fixed(&mut c[7], rows, |r| r.commerce.category_id.to_le_bytes());
        strings(&mut c[8], rows, |r| r.commerce.category_code);
        strings(&mut c[9], rows, |r| r.commerce.brand);
        fixed(&mut c[10], rows, |r| r.commerce.seller_id.to_le_bytes());
        strings(&mut c[11], rows, |r| currency(r.commerce));
        fixed(&mut c[12], rows, |r| price(r.commerce).to_le_bytes());
        fixed(&mut c[13], rows, |r| r.commerce.quantity.to_le_bytes());
        fixed(&mut c[14], rows, |r| r.commerce.user_id.to_le_bytes());
        strings(&mut c[15], rows, |r| r.commerce.session_id);
        self.rows += rows.len();
    }

    /// Rows appended since the last [`Block::pieces`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows appended so far as one Native block, in pieces to send one after the other
    /// (the counts, then each column), and an empty block again. Drop the pieces (or all
    /// slices of them) before the next block outgrows what is left of the buffers, so
    /// that they are reused rather than allocated afresh.
    ///
    /// A keyed block's rows go in the key's order: `Block::sort`, then all of them as one
    /// chunk (`Block::sorted_pieces`).
    pub fn pieces(&mut self) -> Vec<Bytes> {
        without_headroom(self.framed_pieces())
    }

    /// [`Block::pieces`], each with [`HEADROOM`] bytes before it: room for the head of the
    /// frame it may go out in.
    fn framed_pieces(&mut self) -> Vec<BytesMut> {
        if self.keyed() && self.rows > 0 {
            self.sort();
            let pieces = self.sorted_pieces(0..self.rows);
            self.clear();
            return pieces;
        }
        if self.rows == 0 {
            self.start();
        }
        let mut pieces = Vec::with_capacity(self.columns.len() + 1);
        pieces.push(counts(self.columns.len(), self.rows));
        pieces.extend(self.data.iter_mut().map(BytesMut::split));
        self.rows = 0;
        pieces
    }

    /// For a keyed block: puts its rows in the key's order, for `Block::sorted_pieces`,
    /// which sends them, and [`Block::clear`], which empties the block after.
    fn sort(&mut self) {
        let Some(order) = &mut self.order else {
            return;
        };
        debug_assert_eq!(order.len(), self.rows);
        let store = self
            .columns
            .iter()
            .position(|(name, _)| *name == KEY_STORE_COLUMN)
            .expect("a keyed table has a store_id column");
        let (records, widths) = (&self.records[..], self.widths);
        // the store's bytes, without their length: ClickHouse compares strings as memcmp,
        // then by length, which is the order of byte slices
        let store_of = |start: u32| {
            let value = field(records, widths, start as usize, store);
            let prefix = value.iter().position(|b| *b < 0x80).map_or(0, |p| p + 1);
            &value[prefix..]
        };
        order.sort(|a, b| store_of(a).cmp(store_of(b)));
    }

    /// The sorted rows `range` (`Block::sort`) as one Native block, in pieces as
    /// `Block::framed_pieces` gives them: the rows' records, in the key's order, written
    /// into the columns.
    fn sorted_pieces(&mut self, range: Range<usize>) -> Vec<BytesMut> {
        self.start();
        let sorted = &self.order.as_ref().expect("a keyed block").sorted()[range];
        for (data, &width) in self.data.iter_mut().zip(self.widths) {
            // a String's length byte and a few bytes: it grows if they are longer
            let width = if width == 0 { 16 } else { usize::from(width) };
            data.reserve(width * sorted.len());
        }
        (self.write_sorted)(&mut self.data, &self.records, sorted);
        let mut pieces = Vec::with_capacity(self.columns.len() + 1);
        pieces.push(counts(self.columns.len(), sorted.len()));
        pieces.extend(self.data.iter_mut().map(BytesMut::split));
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

    /// Empties a sorted block (`Block::sort`) for its next rows, its buffers kept.
    fn clear(&mut self) {
        self.records.clear();
        if let Some(order) = &mut self.order {
            order.clear();
        }
        self.rows = 0;
    }
}

/// Writes the records of the rows `sorted`, in that order, into the columns of `R`'s table
/// (`Block::sorted_pieces`). One writer per row type, so that each column's width is a
/// constant of the code: the loop over the columns unrolls into one copy of a known width per
/// column, where a loop over the widths as data dispatched on each value's width at run time,
/// a fifth of the writer's instructions (docs/BENCHMARKS.md, "The sorted writer per row
/// type").
fn write_sorted<R: NativeRow>(data: &mut [BytesMut], records: &[u8], sorted: &[order::Slot]) {
    let widths = const { widths_of::<R>() };
    let data = &mut data[..R::COLUMNS.len()];
    for (i, slot) in sorted.iter().enumerate() {
        // the record a few rows on, so that it is in the cache when its turn comes: the
        // records are read in no order the processor could foresee
        if let Some(ahead) = sorted.get(i + PREFETCH_ROWS) {
            prefetch(records, ahead.record() as usize);
        }
        let mut at = slot.record() as usize;
        // `column` a literal, so that `widths[column]` is a constant and each `match`
        // leaves the copy of its column's width; the columns past the table's last go
        macro_rules! columns {
            ($($column:literal)*) => {$(
                if $column < R::COLUMNS.len() {
                    let data = &mut data[$column];
                    at = match widths[$column] {
                        1 => copy::<1>(data, records, at),
                        2 => copy::<2>(data, records, at),
                        4 => copy::<4>(data, records, at),
                        8 => copy::<8>(data, records, at),
                        16 => copy::<16>(data, records, at),
                        _ => {
                            let end = at + string_len(&records[at..]);
                            data.put_slice(&records[at..end]);
                            end
                        }
                    };
                }
            )*};
        }
        columns!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
        debug_assert!(
            at > slot.record() as usize,
            "a record's end after its start"
        );
    }
}

/// Rows ahead that `Block::sorted_pieces` asks the processor to fetch: enough to cover a
/// miss of the caches, at a few tens of nanoseconds a row.
const PREFETCH_ROWS: usize = 8;

/// Asks the processor to fetch the two cache lines at `records[at..]` (a record is about
/// 150 bytes); nothing where it cannot be asked.
///
/// The workspace's second `unsafe` (ARCHITECTURE.md, "Unsafe code"): `_mm_prefetch` is
/// unsafe only as an intrinsic of a target feature, SSE, which every x86-64 processor has
/// (it is on in every x86-64 build). A prefetch reads nothing into the program and cannot
/// fault, whatever the address.
#[inline]
#[allow(unsafe_code)]
fn prefetch(records: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = records.as_ptr().wrapping_add(at).cast::<i8>();
        // SAFETY: SSE is part of x86-64; a prefetch of any address is harmless
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (records, at);
}

/// Where the next record starts: its offset in the records, which stay under 4 GiB (an
/// insert holds what one flush read, `CONSUMER_BATCH_BYTES`).
fn record_start(records: &BytesMut) -> u32 {
    u32::try_from(records.len()).expect("a block's records under 4 GiB")
}

/// Appends the `W` bytes of a fixed-width value at `records[at..]`; where the next starts.
#[inline]
fn copy<const W: usize>(data: &mut BytesMut, records: &[u8], at: usize) -> usize {
    let value: [u8; W] = records[at..at + W].try_into().expect("W bytes");
    data.put_slice(&value);
    at + W
}

/// The bytes of the `String` value at the start of `value`: its length's, then its own.
/// Inlined, with a first test for the one length byte of a text under 128 bytes, which
/// nearly every value is: called for each `String` value of every row.
#[inline]
fn string_len(value: &[u8]) -> usize {
    match value.first() {
        Some(&len) if len < 0x80 => 1 + usize::from(len),
        _ => long_string_len(value),
    }
}

/// [`string_len`] of a value of two or more length bytes.
#[cold]
fn long_string_len(value: &[u8]) -> usize {
    let mut len = 0usize;
    for (i, byte) in value.iter().enumerate() {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if *byte < 0x80 {
            return i + 1 + len;
        }
    }
    unreachable!("a record's string has its length")
}

/// The value of column `column` in the record at `records[start..]`, its length included
/// for a `String`.
fn field<'r>(records: &'r [u8], widths: &[u8], start: usize, column: usize) -> &'r [u8] {
    let len = |at: usize, width: u8| match width {
        0 => string_len(&records[at..]),
        width => usize::from(width),
    };
    let at = widths[..column]
        .iter()
        .fold(start, |at, &width| at + len(at, width));
    &records[at..at + len(at, widths[column])]
}

/// Rows per block of a [`NativeInsert`]: a block's columns are held until it is sent, so this
/// bounds the memory of its columns (about 7 MiB of commerce rows; a keyed table's rows are
/// held as records until the insert ends, [`Block`]); the server gathers small blocks into
/// parts of up to a million rows itself (`min_insert_block_size_rows`).
pub const BLOCK_ROWS: usize = 65_536;

/// The largest piece a block is sent in, what `clickhouse::insert::Insert` sends RowBinary
/// in: each piece is compressed on its own (LZ4 when the client compresses), and pieces
/// this small are recycled by the allocator, where a block of megabytes would be mapped
/// and faulted in afresh every time.
const CHUNK_BYTES: usize = 256 * 1024;

/// One `INSERT INTO <table> FORMAT Native`: rows go into a [`Block`], sent every
/// [`BLOCK_ROWS`] rows and at the end; a keyed table's rows all at the end, in the key's
/// order, in blocks of [`BLOCK_ROWS`]. Like `clickhouse::insert::Insert`, nothing is sent
/// before the first block, so an insert without rows sends no request; the client's
/// compression applies.
pub struct NativeInsert {
    insert: InsertFormatted,
    block: Block,
    block_rows: usize,
    /// Frames made here ([`NativeInsert::with_compression`]), or `None`: the client's own
    /// setting applies.
    frames: Option<Frames>,
}

impl NativeInsert {
    /// An insert of `R` rows into `table`, a name that needs no quoting.
    pub fn new<R: NativeRow>(client: &clickhouse::Client, table: &str) -> NativeInsert {
        NativeInsert {
            insert: client.insert_formatted_with(format!("INSERT INTO {table} FORMAT Native")),
            block: Block::new::<R>(),
            block_rows: BLOCK_ROWS,
            frames: None,
        }
    }

    /// An insert of `R` rows into `table` in frames compressed as `compression` says
    /// ([`Frames`]: LZ4, or stored as they are), whatever the client's own setting, made
    /// here in a buffer kept from one frame to the next (#19).
    pub fn with_compression<R: NativeRow>(
        client: &clickhouse::Client,
        table: &str,
        compression: Compression,
    ) -> NativeInsert {
        // the body is frames: what the client asks for when it compresses
        let client = client
            .clone()
            .with_compression(clickhouse::Compression::None)
            .with_setting("decompress", "1");
        NativeInsert {
            frames: Some(Frames::new(compression)),
            ..NativeInsert::new::<R>(&client, table)
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

    /// Adds one row; sends the block once it is full, unless the table is keyed: then the
    /// rows go at the end, in the key's order ([`Block`]).
    pub async fn write<R: NativeRow>(&mut self, row: &R) -> clickhouse::error::Result<()> {
        self.block.push(row);
        if self.block.rows() >= self.block_rows && !self.block.keyed() {
            self.send().await?;
        }
        Ok(())
    }

    /// Adds the `commerce_events` rows of `rows` ([`Block::push_commerce`]), received at
    /// `received_at`; sends each block once it is full: the same blocks as a
    /// [`NativeInsert::write`] of each event's [`CommerceRow`].
    pub async fn write_commerce(
        &mut self,
        mut rows: &[CommerceSource<'_, '_>],
        received_at: u32,
    ) -> clickhouse::error::Result<()> {
        if self.block.keyed() {
            self.block.push_commerce(rows, received_at);
            return Ok(());
        }
        while !rows.is_empty() {
            let room = self.block_rows.saturating_sub(self.block.rows()).max(1);
            let (now, rest) = rows.split_at(room.min(rows.len()));
            self.block.push_commerce(now, received_at);
            rows = rest;
            if self.block.rows() >= self.block_rows {
                self.send().await?;
            }
        }
        Ok(())
    }

    /// Fills `block` (empty, of the same table: [`Spare::take`]) instead of a new one, so
    /// that its buffers, grown by an earlier insert, need not grow again.
    pub fn with_block(mut self, block: Block) -> NativeInsert {
        assert!(
            same_table(block.columns, self.block.columns) && block.rows() == 0,
            "an empty block of the same table"
        );
        // an insert in the appended order (`in_appended_order`) sends a kept block so too
        let mut block = block;
        if !self.block.keyed() {
            block.unkey();
        }
        self.block = block;
        self
    }

    /// Sends the rows in the order they are written, even into a keyed table, in blocks of
    /// the block size (`Block::unkey`: the bench's reference of unsorted inserts).
    pub fn in_appended_order(mut self) -> NativeInsert {
        self.block.unkey();
        self
    }

    /// Sends what is left and waits until the server confirms the whole insert.
    pub async fn end(self) -> clickhouse::error::Result<()> {
        self.finish().await.map(drop)
    }

    /// As [`NativeInsert::end`], and hands back the emptied block for the next insert.
    pub async fn finish(mut self) -> clickhouse::error::Result<Block> {
        let rows = self.block.rows();
        if self.block.keyed() && rows > 0 {
            self.block.sort();
            for from in (0..rows).step_by(self.block_rows) {
                let pieces = self
                    .block
                    .sorted_pieces(from..rows.min(from + self.block_rows));
                self.send_pieces(pieces).await?;
            }
            self.block.clear();
        } else if rows > 0 {
            self.send().await?;
        }
        self.insert.end().await?;
        Ok(self.block)
    }

    async fn send(&mut self) -> clickhouse::error::Result<()> {
        let pieces = self.block.framed_pieces();
        self.send_pieces(pieces).await
    }

    /// Sends pieces of `Block::framed_pieces`. Stored frames (`CLICKHOUSE_COMPRESSION=none`)
    /// are made in place: the head goes into the piece's [`HEADROOM`] and the piece goes
    /// out whole as one frame, where copying it behind a head cost the consumer a copy of
    /// every byte it sends (docs/BENCHMARKS.md, "The sorted writer per row type"). Anything
    /// else, and a piece above [`MAX_STORED_FRAME`], goes in frames of [`CHUNK_BYTES`] made
    /// from copies, or as it is for the client to compress.
    async fn send_pieces(&mut self, pieces: Vec<BytesMut>) -> clickhouse::error::Result<()> {
        for piece in pieces {
            if self.frames.as_ref().is_some_and(|f| f.stored)
                && piece.len() - HEADROOM <= MAX_STORED_FRAME
            {
                self.insert.send(stored_in_place(piece)?).await?;
                continue;
            }
            let piece = piece.freeze().slice(HEADROOM..);
            for start in (0..piece.len()).step_by(CHUNK_BYTES) {
                let end = piece.len().min(start + CHUNK_BYTES);
                let chunk = match &mut self.frames {
                    Some(frames) => frames.frame(&piece[start..end])?,
                    None => piece.slice(start..end),
                };
                self.insert.send(chunk).await?;
            }
        }
        Ok(())
    }
}

/// ClickHouse's compressed frames, as a body sent with `decompress=1` holds them: a
/// CityHash128 (v1.0.2) of the rest of the frame (16 bytes, its halves swapped), the method,
/// the frame's size from the method on and the data's size (each `u32` little-endian), then
/// the data: one LZ4 block (method 0x82), or the data as it is (0x02, ClickHouse's `NONE`
/// codec).
///
/// LZ4 frames are what `clickhouse::Client` sends with `Compression::Lz4`, but compressed
/// into a buffer and with a hash table both kept from one frame to the next, where the client
/// zeroes a new buffer of the largest output size for every frame (about a third of its LZ4
/// instructions, docs/BENCHMARKS.md). Stored frames are `CLICKHOUSE_COMPRESSION=none`: the
/// server reads them through the same checksummed frame reader as LZ4 frames and copies the
/// data out, where LZ4 cost the consumer about 0.06 µs per event (docs/BENCHMARKS.md, "Stored
/// frames"). Every frame of an insert has its one method: servers may refuse a body whose
/// frames mix methods.
#[derive(Default)]
struct Frames {
    /// Stored frames instead of LZ4.
    stored: bool,
    out: Vec<u8>,
    /// The hash tables LZ4 finds matches with, 16-bit entries for pieces under 64 KiB and
    /// 32-bit for longer ones: the one `lz4_flex::block::compress_into` makes anew for
    /// each piece, so that a frame is the client's, byte for byte.
    small: Option<lz4_flex::block::CompressTable>,
    large: Option<lz4_flex::block::CompressTable>,
}

/// Checksum, method, compressed size, data size.
const FRAME_HEAD: usize = 16 + 1 + 4 + 4;
/// The most data a stored frame made in place holds: a block's column is at most
/// [`BLOCK_ROWS`] values, a few MiB, and the server holds each frame whole as it reads it
/// (it refuses frames above 1 GiB).
const MAX_STORED_FRAME: usize = 64 << 20;
/// The method byte of an LZ4 frame.
const LZ4: u8 = 0x82;
/// The method byte of a stored frame.
const STORED: u8 = 0x02;

impl Frames {
    /// Frames as `compression` says.
    fn new(compression: Compression) -> Frames {
        Frames {
            stored: compression == Compression::None,
            ..Frames::default()
        }
    }

    /// `data` as one frame.
    fn frame(&mut self, data: &[u8]) -> clickhouse::error::Result<Bytes> {
        if self.stored {
            stored(data)
        } else {
            self.lz4(data)
        }
    }

    /// `data` as one LZ4 frame.
    fn lz4(&mut self, data: &[u8]) -> clickhouse::error::Result<Bytes> {
        let largest = FRAME_HEAD + lz4_flex::block::get_maximum_output_size(data.len());
        if self.out.len() < largest {
            self.out.resize(largest, 0);
        }
        let table = if data.len() < usize::from(u16::MAX) {
            self.small
                .get_or_insert_with(lz4_flex::block::CompressTable::small)
        } else {
            self.large
                .get_or_insert_with(lz4_flex::block::CompressTable::large)
        };
        let size =
            lz4_flex::block::compress_into_with_table(data, &mut self.out[FRAME_HEAD..], table)
                .map_err(|e| frame_error(e.to_string()))?;
        let frame = &mut self.out[..FRAME_HEAD + size];
        seal(frame, LZ4, data.len())?;
        Ok(Bytes::copy_from_slice(frame))
    }
}

/// `data` as one stored frame: copied once, behind room for its head ([`stored_in_place`]).
fn stored(data: &[u8]) -> clickhouse::error::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(HEADROOM + data.len());
    frame.put_bytes(0, HEADROOM);
    frame.put_slice(data);
    stored_in_place(frame)
}

/// A piece of `Block::framed_pieces` as one stored frame, its head written into its
/// [`HEADROOM`]: the frame [`stored`] makes of the piece's data, without copying it.
fn stored_in_place(mut piece: BytesMut) -> clickhouse::error::Result<Bytes> {
    let data = piece.len() - HEADROOM;
    seal(&mut piece, STORED, data)?;
    Ok(piece.freeze())
}

/// Fills in the head of `frame`, its first [`FRAME_HEAD`] bytes, before the frame's data (of
/// `data_len` bytes before `method` applied): the method, both sizes, and the checksum of
/// everything after the checksum.
fn seal(frame: &mut [u8], method: u8, data_len: usize) -> clickhouse::error::Result<()> {
    let sizes = u32::try_from(frame.len() - 16)
        .ok()
        .zip(u32::try_from(data_len).ok())
        .ok_or_else(|| frame_error(format!("a frame of {data_len} bytes")))?;
    frame[16] = method;
    frame[17..21].copy_from_slice(&sizes.0.to_le_bytes());
    frame[21..25].copy_from_slice(&sizes.1.to_le_bytes());
    let checksum = cityhash_rs::cityhash_102_128(&frame[16..]).rotate_right(64);
    frame[..16].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

fn frame_error(message: String) -> clickhouse::error::Error {
    clickhouse::error::Error::Compression(message.into())
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
            .position(|b| same_table(b.columns, R::COLUMNS))
        {
            Some(i) => blocks.swap_remove(i),
            None => Block::new::<R>(),
        }
    }

    /// Keeps an emptied block for the next [`Spare::take`] of its table.
    pub fn put(&self, block: Block) {
        debug_assert_eq!(block.rows(), 0, "a block with rows left");
        let mut blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !blocks.iter().any(|b| same_table(b.columns, block.columns)) {
            blocks.push(block);
        }
    }
}

/// Whether two lists of columns are one table's: by value, as a constant's address may
/// differ between two uses of it (each crate or codegen unit can hold its own copy); the
/// address is only the quick answer.
fn same_table(a: &'static [Column], b: &'static [Column]) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// A block's first piece: its column count and row count, after [`HEADROOM`].
fn counts(columns: usize, rows: usize) -> BytesMut {
    let mut counts = BytesMut::with_capacity(HEADROOM + 20);
    counts.put_bytes(0, HEADROOM);
    put_varuint(&mut counts, columns as u64);
    put_varuint(&mut counts, rows as u64);
    counts
}

/// Bytes before each piece of a block, where a stored frame's head is written in place
/// (`NativeInsert::send_pieces`): the piece is then sent as it is, not copied behind a head.
const HEADROOM: usize = FRAME_HEAD;

/// Pieces as `Block::framed_pieces` gives them, without their [`HEADROOM`].
fn without_headroom(pieces: Vec<BytesMut>) -> Vec<Bytes> {
    pieces
        .into_iter()
        .map(|piece| piece.freeze().slice(HEADROOM..))
        .collect()
}

/// The most columns a keyed table may have: the length of [`widths_of`]'s array.
const MAX_KEYED_COLUMNS: usize = 32;

/// [`width`] of each column of a keyed table `R`, 0 for a `String`, then zeros up to
/// [`MAX_KEYED_COLUMNS`]; all zeros for any other table, whose rows are never records.
/// Computed when compiling.
const fn widths_of<R: NativeRow>() -> [u8; MAX_KEYED_COLUMNS] {
    let columns = R::COLUMNS;
    let mut widths = [0; MAX_KEYED_COLUMNS];
    if !R::KEYED {
        return widths;
    }
    assert!(
        columns.len() <= MAX_KEYED_COLUMNS,
        "a keyed table of more than MAX_KEYED_COLUMNS columns"
    );
    let mut i = 0;
    while i < columns.len() {
        widths[i] = match width(columns[i].1) {
            Some(width) => width as u8,
            None => 0,
        };
        i += 1;
    }
    widths
}

/// The bytes of a value of type `ty` if fixed (every type of the keyed tables), `None` for
/// `String`. A `const fn`, so a type it does not know fails the build ([`widths_of`]).
const fn width(ty: &str) -> Option<usize> {
    const FIXED: &[(&str, usize)] = &[
        ("UInt8", 1),
        ("UInt16", 2),
        ("UInt32", 4),
        ("DateTime('UTC')", 4),
        ("UInt64", 8),
        ("Float64", 8),
        ("Decimal(18, 9)", 8),
        ("UUID", 16),
    ];
    if same_bytes(ty.as_bytes(), b"String") {
        return None;
    }
    let enum8 = b"Enum8(";
    if ty.len() > enum8.len() && same_bytes(ty.as_bytes().split_at(enum8.len()).0, enum8) {
        return Some(1);
    }
    let mut i = 0;
    while i < FIXED.len() {
        if same_bytes(ty.as_bytes(), FIXED[i].0.as_bytes()) {
            return Some(FIXED[i].1);
        }
        i += 1;
    }
    panic!("a column type of unknown width")
}

/// `a == b`, in a `const fn`.
const fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
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

/// Appends one `W`-byte value per item, `value`'s little-endian bytes: gathered on the
/// stack [`GATHER`] at a time, then appended with one capacity check and one copy.
/// (Growing the column first and writing into it zeroes every byte first: a `memset`
/// that cost more than it saved.)
fn fixed<T, const W: usize>(column: &mut BytesMut, items: &[T], value: impl Fn(&T) -> [u8; W]) {
    for chunk in items.chunks(GATHER) {
        let mut gathered = [[0; W]; GATHER];
        for (slot, item) in gathered.iter_mut().zip(chunk) {
            *slot = value(item);
        }
        column.put_slice(gathered[..chunk.len()].as_flattened());
    }
}

/// Values [`fixed`] gathers before it appends them.
const GATHER: usize = 32;

/// Appends one `String` value per item, the column grown once for all of them.
fn strings<'a, T>(column: &mut BytesMut, items: &[T], value: impl Fn(&T) -> &'a str) {
    // two length bytes each: every text the rules accept is under 16 KiB
    column.reserve(items.iter().map(|item| value(item).len() + 2).sum());
    for item in items {
        put_str(column, value(item).as_bytes());
    }
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
    c: &mut (impl Columns + ?Sized),
    event_id: &uuid::Uuid,
    (occurred_at, received_at): (u32, u32),
    region: i8,
    store_id: &str,
) {
    put_uuid(c.at(0), event_id);
    c.at(1).put_u32_le(occurred_at);
    c.at(2).put_u32_le(received_at);
    c.at(3).put_i8(region);
    put_str(c.at(4), store_id.as_bytes());
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
    const KEYED: bool = true;

    fn key(&self) -> EventKey {
        EventKey::new(self.occurred_at, &self.event_id)
    }

    fn append(&self, c: &mut (impl Columns + ?Sized)) {
        let times = (self.occurred_at, self.received_at);
        put_event_head(c, &self.event_id, times, self.region, self.store_id);
        c.at(5).put_i8(self.r#type);
        c.at(6).put_u64_le(self.product_id);
        c.at(7).put_u64_le(self.category_id);
        put_str(c.at(8), self.category_code.as_bytes());
        put_str(c.at(9), self.brand.as_bytes());
        c.at(10).put_u64_le(self.seller_id);
        put_str(c.at(11), self.currency.as_bytes());
        c.at(12).put_i64_le(self.price);
        c.at(13).put_u32_le(self.quantity);
        c.at(14).put_u64_le(self.user_id);
        put_str(c.at(15), self.session_id.as_bytes());
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
    const KEYED: bool = true;

    fn key(&self) -> EventKey {
        EventKey::new(self.occurred_at, &self.event_id)
    }

    fn append(&self, c: &mut (impl Columns + ?Sized)) {
        let times = (self.occurred_at, self.received_at);
        put_event_head(c, &self.event_id, times, self.region, self.store_id);
        put_str(c.at(5), self.target.as_bytes());
        c.at(6).put_u8(self.up);
        c.at(7).put_u16_le(self.status_code);
        c.at(8).put_u32_le(self.response_time_ms);
        c.at(9).put_u32_le(self.network_latency_ms);
        c.at(10).put_u64_le(self.bandwidth_bytes_per_second);
        c.at(11).put_f64_le(self.cpu_load);
        c.at(12).put_i8(self.vantage_region);
        c.at(13).put_u32_le(self.tls_handshake_ms);
        c.at(14).put_u32_le(self.time_to_first_byte_ms);
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

    fn append(&self, c: &mut (impl Columns + ?Sized)) {
        put_str(c.at(0), self.event_id.as_bytes());
        c.at(1).put_u32_le(self.occurred_at);
        c.at(2).put_u32_le(self.received_at);
        c.at(3).put_i8(self.region);
        put_str(c.at(4), self.store_id.as_bytes());
        c.at(5).put_i8(self.source);
        put_str(c.at(6), self.reason.as_bytes());
        put_str(c.at(7), self.raw);
        c.at(8).put_u32_le(self.delivery_count);
        put_str(c.at(9), self.stream_entry_id.as_bytes());
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
    fn frames_are_the_bytes_the_client_compresses_to() {
        let mut frames = Frames::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // few distinct bytes: matches for LZ4 to find, and some runs
                    (state % 7) as u8
                })
                .collect()
        };
        // a piece at most CHUNK_BYTES, then smaller ones after the table and buffer grew
        for data in [
            random(CHUNK_BYTES),
            b"\x10\x03".to_vec(),
            random(100_000),
            vec![7; 70_000],
            random(1000),
            b"abc".to_vec(),
        ] {
            let expected = clickhouse::_priv::lz4_compress(&data).unwrap();
            assert_eq!(frames.lz4(&data).unwrap(), expected, "{} bytes", data.len());
        }
    }

    #[test]
    fn stored_frames_hold_the_data_as_it_is_behind_a_checksummed_head() {
        let mut frames = Frames::new(Compression::None);
        for data in [vec![], b"abc".to_vec(), vec![7; CHUNK_BYTES]] {
            let frame = frames.frame(&data).unwrap();
            assert_eq!(frame.len(), FRAME_HEAD + data.len());
            assert_eq!(frame[16], 0x02, "ClickHouse's NONE method");
            let size = |at: usize| u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
            assert_eq!(size(17) as usize, 9 + data.len(), "method, sizes and data");
            assert_eq!(size(21) as usize, data.len());
            assert_eq!(&frame[FRAME_HEAD..], &data[..]);
            let checksum = cityhash_rs::cityhash_102_128(&frame[16..]).rotate_right(64);
            assert_eq!(frame[..16], checksum.to_le_bytes());
        }
        // the LZ4 ones have the same head, with their method
        let lz4 = Frames::new(Compression::Lz4).frame(b"abc").unwrap();
        assert_eq!(lz4[16], 0x82);
    }

    #[test]
    fn stored_frames_made_in_place_are_the_frames_of_the_pieces() {
        // an unkeyed block and a keyed one (written by `write_sorted`), of rows whose
        // columns are larger than a chunk, and an empty block
        let rows: Vec<CommerceRow<'_>> = (0..40_000u32)
            .map(|i| {
                let id = uuid::Uuid::from_u128(u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                commerce_row(i, id, 20_000, "store-a")
            })
            .collect();
        let mut blocks = [unkeyed_commerce_block(), Block::new::<CommerceRow<'_>>()];
        for block in &mut blocks {
            for row in &rows {
                block.push(row);
            }
            let framed = block.framed_pieces();
            for row in &rows {
                block.push(row);
            }
            let pieces = block.pieces();
            assert_eq!(framed.len(), pieces.len());
            assert!(
                pieces.iter().any(|p| p.len() > CHUNK_BYTES),
                "a piece over a chunk"
            );
            for (framed, piece) in framed.into_iter().zip(&pieces) {
                assert_eq!(stored_in_place(framed).unwrap(), stored(piece).unwrap());
            }
        }
        let mut empty = unkeyed_commerce_block();
        let framed = empty.framed_pieces();
        let pieces = empty.pieces();
        for (framed, piece) in framed.into_iter().zip(&pieces) {
            assert_eq!(stored_in_place(framed).unwrap(), stored(piece).unwrap());
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

    /// Commerce rows written straight from accepted views, a column at a time and in
    /// uneven runs, are the bytes of each event's `CommerceRow` pushed one by one; a probe
    /// has no `CommerceSource`.
    /// A commerce row whose texts have lengths from `i`, some past one length byte.
    fn commerce_row(i: u32, id: uuid::Uuid, day: u32, store: &'static str) -> CommerceRow<'static> {
        const TEXT: &str = concat!(
            "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
            "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
        );
        let text = |n: u32| &TEXT[..(n as usize % TEXT.len())];
        CommerceRow {
            event_id: id,
            occurred_at: day * 86_400 + i % 86_400,
            received_at: i,
            region: (i % 3) as i8 + 1,
            store_id: store,
            r#type: (i % 4) as i8 + 1,
            product_id: u64::from(i) * 7,
            category_id: u64::from(i) * 11,
            category_code: text(i * 13),
            brand: text(i),
            seller_id: u64::from(i) << 40,
            currency: "EUR",
            price: i64::from(i) * 1_000_000_007,
            quantity: i,
            user_id: u64::MAX - u64::from(i),
            session_id: text(i * 31 + 130),
        }
    }

    /// Rows over three days with random ids, ids shared by two stores and copies of rows,
    /// in no order; and the same rows in ClickHouse's order of the key, found independently
    /// of [`EventKey`]: the day, the id's last eight bytes then its first eight, the store.
    fn rows_and_their_order() -> (Vec<CommerceRow<'static>>, Vec<CommerceRow<'static>>) {
        // a multiplicative hash: ids spread over both halves, in no order
        let hash =
            |i: u32| u128::from(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let stores = ["store-b", "store-a", "", "store-a0"];
        let mut rows = Vec::new();
        for i in 0..1000u32 {
            let id = uuid::Uuid::from_u128(hash(i));
            let day = 20_000 + (hash(i) >> 100) as u32 % 3;
            rows.push((i, id, day, stores[i as usize % 3]));
            if i % 50 == 0 {
                rows.push((i, id, day, stores[3]));
                rows.push((i, id, day, stores[i as usize % 3]));
            }
        }
        let mut sorted = rows.clone();
        sorted.sort_by_key(|&(_, id, day, store)| {
            let bytes = *id.as_bytes();
            (day, bytes[8..].to_vec(), bytes[..8].to_vec(), store)
        });
        let rows_of = |params: Vec<(u32, uuid::Uuid, u32, &'static str)>| {
            params
                .into_iter()
                .map(|(i, id, day, store)| commerce_row(i, id, day, store))
                .collect()
        };
        let (rows, sorted) = (rows_of(rows), rows_of(sorted));
        (rows, sorted)
    }

    /// A block of commerce rows sent in the order they are appended.
    fn unkeyed_commerce_block() -> Block {
        let mut block = Block::new::<CommerceRow<'_>>();
        block.unkey();
        block
    }

    #[test]
    fn keyed_blocks_go_out_in_the_tables_order() {
        let (rows, sorted) = rows_and_their_order();
        assert_ne!(
            rows.iter().map(|r| r.event_id).collect::<Vec<_>>(),
            sorted.iter().map(|r| r.event_id).collect::<Vec<_>>(),
            "the rows start out of order"
        );
        let mut appended = unkeyed_commerce_block();
        assert!(!appended.keyed());
        for row in &sorted {
            appended.push(row);
        }
        let expected = appended.take();
        let mut keyed = Block::new::<CommerceRow<'_>>();
        assert!(keyed.keyed());
        for row in &rows {
            keyed.push(row);
        }
        assert_eq!(keyed.take(), expected);
        // again from the kept buffers, and from rows already in order
        for row in rows.iter().rev() {
            keyed.push(row);
        }
        assert_eq!(keyed.take(), expected);
        for row in &sorted {
            keyed.push(row);
        }
        assert_eq!(keyed.take(), expected);

        // in chunks, as an insert sends them: each chunk is the next rows in order
        for row in &rows {
            keyed.push(row);
        }
        keyed.sort();
        let mut from = 0;
        while from < rows.len() {
            let to = rows.len().min(from + 333);
            let mut chunk = unkeyed_commerce_block();
            for row in &sorted[from..to] {
                chunk.push(row);
            }
            let pieces = without_headroom(keyed.sorted_pieces(from..to));
            assert_eq!(pieces.concat(), chunk.take(), "rows {from}..{to}");
            from = to;
        }
        keyed.clear();
        assert_eq!(keyed.rows(), 0);
        for row in &sorted[..3] {
            keyed.push(row);
        }
        let mut three = unkeyed_commerce_block();
        for row in &sorted[..3] {
            three.push(row);
        }
        assert_eq!(
            keyed.take(),
            three.take(),
            "nothing of the last block is left"
        );
    }

    #[test]
    fn commerce_straight_from_views_is_the_rows_block() {
        use crate::{
            rows::{EventRow, event_row_with_id},
            validate::{Context, Limits, check_batch},
            view::{CommerceView, EventView, MoneyView, PayloadView, ProbeView},
        };
        let ids: Vec<String> = (0..150u128)
            .map(|i| {
                uuid::Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
                    .to_string()
            })
            .collect();
        // text of n bytes, not all ASCII
        let texts: Vec<String> = (0..=128)
            .map(|n| {
                let mut text: String = "é-xyz".chars().cycle().take(n / 2).collect();
                while text.len() > n {
                    text.pop();
                }
                let pad = n - text.len();
                text + &"a".repeat(pad)
            })
            .collect();
        let text = |n: usize| texts[n % 129].as_str();
        let views: Vec<EventView<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| EventView {
                event_id: id,
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_768_435_200 + i as i64,
                    nanos: (i * 1000) as i32,
                }),
                store_id: ["store-1", "s", text(64)][i % 3],
                region: 1 + (i % 3) as i32,
                payload: Some(if i % 10 == 9 {
                    PayloadView::Probe(ProbeView {
                        target: "https://shop.example/",
                        status_code: 200,
                        up: true,
                        ..ProbeView::default()
                    })
                } else {
                    PayloadView::Commerce(CommerceView {
                        r#type: 1 + (i % 4) as i32,
                        product_id: u64::MAX - i as u64,
                        category_id: i as u64 + 1,
                        category_code: text(i),
                        brand: text(i * 7),
                        seller_id: 1 << (i % 64),
                        price: Some(MoneyView {
                            currency_code: ["EUR", "JPY", "USD"][i % 3],
                            units: [0, 1, 999_999_999][i % 3],
                            nanos: (i * 1_234_567) as i32 % 1_000_000_000,
                        }),
                        quantity: 1 + i as u32,
                        user_id: i as u64 * 1_000_003 + 1,
                        session_id: text(i % 128 + 1),
                    })
                }),
            })
            .collect();
        let limits = Limits::unbounded();
        let ctx = Context {
            limits: &limits,
            now_unix: 1_768_435_200,
            sender: None,
        };
        let checked = check_batch(&ctx, views);
        assert!(checked.is_clean(), "{:?}", checked.rejected);
        let received_at = 1_768_435_300;
        let mut by_rows = Block::new::<CommerceRow<'_>>();
        for (accepted, id) in checked.with_ids() {
            if let EventRow::Commerce(row) = event_row_with_id(accepted, id, received_at) {
                by_rows.push(&row);
            }
        }
        let sources: Vec<CommerceSource<'_, '_>> = checked
            .with_ids()
            .filter_map(|(accepted, id)| CommerceSource::new(accepted, id))
            .collect();
        assert_eq!(sources.len(), 135, "the probes have none");
        assert_eq!(by_rows.rows(), 135);
        let mut straight = Block::new::<CommerceRow<'_>>();
        // runs of one, of more than a gathering and the rest
        straight.push_commerce(&sources[..1], received_at);
        straight.push_commerce(&sources[1..1], received_at);
        straight.push_commerce(&sources[1..80], received_at);
        straight.push_commerce(&sources[80..], received_at);
        assert_eq!(straight.rows(), 135);
        let (straight, by_rows) = (straight.take(), by_rows.take());
        assert_eq!(straight.len(), by_rows.len());
        assert!(straight == by_rows, "the blocks differ");
    }
}
