//! The ClickHouse side of the consumer: a flush turns raw entries into rows and writes
//! them with one Native insert per table (`pipeline::native`: columns the server copies
//! instead of parsing RowBinary row by row; docs/BENCHMARKS.md, #19).
//!
//! With sorted inserts, the default ([`Sink::with_sorted_inserts`],
//! `CONSUMER_SORTED_INSERTS`), the event tables' rows are held as records until the write's
//! end, then sent in the tables' key order, so that ClickHouse need not sort them
//! (`pipeline::native::Block`). A batch's rows are then prepared as its entries are read
//! ([`Sink::prepare_entry`] into a [`Prepared`], sent at the flush by
//! [`Sink::send_prepared`]) and the entries let go their bytes, so that memory holds the
//! batch once, as records (about 150 bytes an event). A batch whose prepared rows do not
//! load is read again from the stream and written as [`Sink::write`] writes kept entries:
//! decoded one at a time into the inserts, the same rows in the same blocks. Without
//! sorted inserts, only [`Sink::write`]: rows go into column blocks sent every
//! `pipeline::native::BLOCK_ROWS` rows, so memory holds the raw batch, one decoded entry
//! and at most one block per table. Rejected rows are held until the write's end either
//! way.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt::Write as _,
    time::Duration,
};

use clickhouse::Client;
use pipeline::{
    config::Compression,
    entry::BatchView,
    native::{NativeInsert, Spare},
    proto::{ingest::Event, queue::QueuedBatch},
    region::Region,
    rows::{
        COMMERCE_TABLE, CommerceRow, CommerceSource, EventRow, PROBE_TABLE, ProbeRow,
        REJECTED_TABLE, RejectSource, RejectedRow, datetime, event_row_with_id,
    },
    validate::{self, AsView, Context, Limits, Sender},
};
use prost::Message as _;
use uuid::Uuid;

use crate::batch::RawEntry;

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub entries: usize,
    pub commerce: usize,
    pub probes: usize,
    pub rejected: usize,
    /// Entries dead-lettered instead of loaded.
    pub dead_letters: usize,
    /// Events of redelivered entries skipped because they were already loaded.
    pub skipped: usize,
}

impl Written {
    /// Adds what another part wrote.
    pub fn add(&mut self, other: &Written) {
        self.entries += other.entries;
        self.commerce += other.commerce;
        self.probes += other.probes;
        self.rejected += other.rejected;
        self.dead_letters += other.dead_letters;
        self.skipped += other.skipped;
    }
}

/// Identities `(store_id, event_id)` already loaded, ids by store: two stores may use one id.
pub type Present = HashMap<String, HashSet<Uuid>>;

/// Events per lookup of already loaded events: 1000 UUIDs make a query of ~50 KiB.
const PRESENT_CHUNK: usize = 1000;

/// The rows of a batch's entries, added to its inserts as the entries are read
/// ([`Sink::prepare_entry`]) and sent at its flush ([`Sink::send_prepared`]): so that a batch
/// holds its rows once, not its entries' bytes beside them (#19).
pub struct Prepared {
    inserts: Inserts,
    load: Load,
}

impl Prepared {
    /// The entries added so far.
    pub fn entries(&self) -> usize {
        self.load.written.entries
    }

    /// Whether entry `index` cannot be loaded ([`Load::dead`]): its bytes go to its dead
    /// letter.
    pub fn is_dead(&self, index: usize) -> bool {
        self.load.dead.iter().any(|(i, _)| *i == index)
    }
}

/// What one write did: the rows written, and the entries that cannot be loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub written: Written,
    /// Index into the written entries and the reason, for each entry to dead-letter.
    pub dead: Vec<(usize, String)>,
}

/// What every `rejected_events` row of one entry shares: the one place such a row is
/// built, whether a whole entry, an event the consumer rejects or one the gateway did
/// (the archiver builds its rejected rows here too).
pub struct Rejecting<'a> {
    pub entry: &'a RawEntry,
    pub received_at: u32,
    pub region: i8,
    pub store_id: &'a str,
}

impl<'a> Rejecting<'a> {
    /// For an entry that cannot be decoded: nothing is known but the entry itself.
    pub fn undecoded(entry: &'a RawEntry) -> Rejecting<'a> {
        Rejecting {
            entry,
            received_at: entry
                .appended_at_ms()
                .map_or(0, |ms| datetime((ms / 1000) as i64)),
            region: 0,
            store_id: "",
        }
    }

    /// The `raw` of an event the consumer rejects, from the bytes it was decoded from: the
    /// event as prost encodes it once decoded, as the owned path kept it (a view is decoded
    /// from bytes prost decodes too; if not, the bytes themselves). The consumer's rows and
    /// the archiver's both take it from here, so the archive holds what ClickHouse holds.
    pub fn refused_event_raw(encoded: &[u8]) -> Vec<u8> {
        Event::decode(encoded).map_or_else(|_| encoded.to_vec(), |e| e.encode_to_vec())
    }

    /// The row for one rejected thing of the entry: an event (with its id and time) or,
    /// with an empty id, the whole entry or the gateway's count of rejected events it did
    /// not keep.
    pub fn row(
        &self,
        source: RejectSource,
        event_id: &'a str,
        occurred_at: u32,
        reason: &'a str,
        raw: &'a [u8],
    ) -> RejectedRow<'a> {
        RejectedRow {
            event_id,
            occurred_at,
            received_at: self.received_at,
            region: self.region,
            store_id: self.store_id,
            source: source as i8,
            reason,
            raw,
            delivery_count: self.entry.deliveries.min(u32::MAX as u64) as u32,
            stream_entry_id: &self.entry.id,
        }
    }

    /// The row for the whole entry, with its raw bytes.
    pub fn whole_entry(&self, reason: &'a str) -> RejectedRow<'a> {
        let raw = self.entry.fields.batch.as_deref().unwrap_or_default();
        self.row(RejectSource::Consumer, "", 0, reason, raw)
    }
}

/// The default of [`Sink::with_insert_timeout`] (`CONSUMER_INSERT_TIMEOUT`).
pub const DEFAULT_INSERT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest that sending one chunk of an insert may take, whatever the insert timeout.
const INSERT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The three inserts of one write, one per table.
struct Inserts {
    commerce: NativeInsert,
    probes: NativeInsert,
    rejected: NativeInsert,
}

/// Writes batches of entries into ClickHouse, through one server or the first of its
/// replicas that works.
#[derive(Clone)]
pub struct Sink {
    /// One client per URL of `CLICKHOUSE_URL`: one server, or replicas holding the same
    /// tables.
    clients: Vec<Client>,
    /// The replica loads go to, until an attempt fails there ([`Sink::fail_over`]).
    current: usize,
    /// [`Limits::unbounded`]: the rules without a time window, which is the gateway's alone,
    /// so an event the gateway accepted is never rejected here for its time.
    limits: Limits,
    /// How long ClickHouse may take to confirm an insert ([`Sink::with_insert_timeout`]).
    insert_timeout: Duration,
    /// Each table's column block, kept from one flush to the next (#19).
    spare: Spare,
    /// How inserts are compressed (`CLICKHOUSE_COMPRESSION`), done by
    /// `NativeInsert::with_compression` whatever the clients' own setting.
    compression: Compression,
    /// Whether the event tables' rows go in their key's order ([`Sink::with_sorted_inserts`]).
    sorted: bool,
}

impl Sink {
    /// A sink over `clients`: one server, or its replicas in the order to try them; its
    /// inserts compressed as `compression` says.
    ///
    /// # Panics
    /// If `clients` is empty.
    pub fn new(clients: Vec<Client>, compression: Compression) -> Sink {
        assert!(!clients.is_empty(), "a sink needs a clickhouse client");
        Sink {
            clients,
            current: 0,
            limits: Limits::unbounded(),
            insert_timeout: DEFAULT_INSERT_TIMEOUT,
            spare: Spare::default(),
            compression,
            sorted: true,
        }
    }

    /// Whether to send the event tables' rows of each write in the tables' key order
    /// (`CONSUMER_SORTED_INSERTS`, the default), so that ClickHouse writes them without
    /// sorting them; the rows are then held until the write's last entry
    /// (`pipeline::native::Block`). Without it they go in the order they come, every
    /// `pipeline::native::BLOCK_ROWS` rows.
    pub fn with_sorted_inserts(mut self, sorted: bool) -> Sink {
        self.sorted = sorted;
        self
    }

    /// How long sending a chunk of an insert (at most 30 s) and waiting for ClickHouse to
    /// confirm it may take: far beyond what a batch takes (well under a second for 100k rows
    /// here), so only a server that stopped answering without closing the connection
    /// (frozen, partitioned) reaches it. Without it such a server would hold the load for
    /// ever; with it the attempt fails as timed out, and the next goes to the next replica
    /// with the same rows. It is the longest a frozen replica holds loading.
    pub fn with_insert_timeout(mut self, timeout: Duration) -> Sink {
        self.insert_timeout = timeout;
        self
    }

    /// A Native insert of `R` rows into `table` on the current replica, with the timeouts.
    fn insert<R: pipeline::native::NativeRow>(&self, table: &str) -> NativeInsert {
        let send = self.insert_timeout.min(INSERT_SEND_TIMEOUT);
        let insert = NativeInsert::with_compression::<R>(self.client(), table, self.compression)
            .with_block(self.spare.take::<R>())
            .with_timeouts(Some(send), Some(self.insert_timeout));
        if self.sorted {
            insert
        } else {
            insert.in_appended_order()
        }
    }

    /// The three inserts of one write. The rejected rows, whose table is not keyed, are held
    /// until the write's end too (a block of the write's at most), so that nothing goes
    /// out before a prepared batch's flush and a write of the same entries read again sends
    /// the same blocks, which a replicated table deduplicates.
    fn inserts(&self) -> Inserts {
        Inserts {
            commerce: self.insert::<CommerceRow<'_>>(COMMERCE_TABLE),
            probes: self.insert::<ProbeRow<'_>>(PROBE_TABLE),
            rejected: self
                .insert::<RejectedRow<'_>>(REJECTED_TABLE)
                .with_block_rows(usize::MAX),
        }
    }

    /// Whether entries can be prepared as they are read ([`Sink::prepare`]): with sorted
    /// inserts, whose rows are held until the insert's end anyway.
    pub fn prepares(&self) -> bool {
        self.sorted
    }

    /// An empty [`Prepared`]: the inserts of the next batch, to which its entries' rows are
    /// added as they are read ([`Sink::prepare_entry`]).
    ///
    /// # Panics
    /// Without sorted inserts ([`Sink::prepares`]).
    pub fn prepare(&self) -> Prepared {
        assert!(self.sorted, "entries are prepared only for sorted inserts");
        Prepared {
            inserts: self.inserts(),
            load: Load::default(),
        }
    }

    /// Adds `entry`'s rows to `prepared`, as [`Sink::write`] would write them: after this
    /// its bytes are no longer needed, unless [`Prepared::is_dead`] says it is (undecodable:
    /// its dead letter keeps them). For entries read for the first time only: a redelivered
    /// entry is looked up first ([`Sink::present_in`]) and may have interrupted loads.
    pub async fn prepare_entry(
        &self,
        prepared: &mut Prepared,
        entry: &RawEntry,
    ) -> Result<(), clickhouse::error::Error> {
        debug_assert!(
            entry.deliveries <= 1 && entry.attempts == 0,
            "a fresh entry"
        );
        let index = prepared.load.written.entries;
        prepared.load.written.entries += 1;
        self.write_entry(
            &mut prepared.inserts,
            &mut prepared.load,
            (index, entry),
            u64::MAX,
            &Present::new(),
        )
        .await
    }

    /// Sends what `prepared` holds and waits until ClickHouse confirms every insert: what
    /// [`Sink::write`] of the same entries does.
    pub async fn send_prepared(
        &self,
        prepared: Prepared,
    ) -> Result<Load, clickhouse::error::Error> {
        self.finish(prepared.inserts).await?;
        Ok(prepared.load)
    }

    /// The client of the replica loads go to now.
    pub fn client(&self) -> &Client {
        &self.clients[self.current]
    }

    /// Sends the next attempts to the next replica (in `CLICKHOUSE_URL`'s order, round the
    /// list); returns its index. With one server it stays. The caller decides when, by
    /// `pipeline::retry::fails_over`.
    pub fn fail_over(&mut self) -> usize {
        self.current = (self.current + 1) % self.clients.len();
        self.current
    }

    /// Which events of `entries` redelivered entries are already loaded (see
    /// [`Sink::write`]). A batch looks once, before its first attempt, and every attempt
    /// uses that answer: a retry then sends the identical rows, which a replicated table
    /// deduplicates by block, whereas a second look could find (or, failing, miss) rows the
    /// first attempt wrote and change the block.
    ///
    /// A redelivered entry may have been loaded already by a consumer that died before its
    /// XACK. Skipping what is there keeps the tables free of duplicates in the common case;
    /// FINAL still covers the rest (two consumers racing, a partial insert). One lookup for
    /// all of them: redelivered entries come in runs (a restart, a takeover), and a query
    /// per entry made their loads slow.
    pub async fn present_in(&self, entries: &[RawEntry]) -> Present {
        let redelivered: Vec<QueuedBatch> = entries
            .iter()
            .filter(|e| e.deliveries > 1)
            .filter_map(|e| e.fields.decode().ok())
            .collect();
        if redelivered.is_empty() {
            return Present::new();
        }
        let events: Vec<&Event> = redelivered.iter().flat_map(|b| &b.events).collect();
        self.present(&events).await
    }

    /// Inserts every row of `entries`, but the events `present` names
    /// ([`Sink::present_in`]); succeeds only when ClickHouse confirmed all inserts. The
    /// same arguments give the same rows in the same order, so a retry resends the same
    /// blocks.
    ///
    /// Entries that cannot be loaded at all (undecodable, or whose load was interrupted
    /// `max_attempts` times: each time, the consumer died while loading it) become one
    /// `rejected_events` row each with the reason, and are returned in [`Load::dead`] for
    /// the caller to dead-letter and acknowledge.
    pub async fn write(
        &self,
        entries: &[RawEntry],
        max_attempts: u64,
        present: &Present,
    ) -> Result<Load, clickhouse::error::Error> {
        let mut inserts = self.inserts();
        let mut load = Load {
            written: Written {
                entries: entries.len(),
                ..Written::default()
            },
            dead: Vec::new(),
        };
        for entry in entries.iter().enumerate() {
            self.write_entry(&mut inserts, &mut load, entry, max_attempts, present)
                .await?;
        }
        self.finish(inserts).await?;
        Ok(load)
    }

    /// Writes the rows of the entry `index` of a write into `inserts`, or, if it cannot be
    /// loaded at all, its one `rejected_events` row, noting it in `load.dead`.
    async fn write_entry(
        &self,
        inserts: &mut Inserts,
        load: &mut Load,
        (index, entry): (usize, &RawEntry),
        max_attempts: u64,
        present: &Present,
    ) -> Result<(), clickhouse::error::Error> {
        let decoded = if entry.attempts >= max_attempts {
            Err(format!(
                "left unloaded by {} consumer crashes during its load (limit \
                 {max_attempts}); delivered {} times",
                entry.attempts, entry.deliveries
            ))
        } else {
            entry
                .fields
                .decode_view()
                .map_err(|err| format!("undecodable stream entry: {err}"))
        };
        match decoded {
            Ok(batch) => {
                self.write_batch(batch, entry, present, inserts, &mut load.written)
                    .await
            }
            Err(reason) => {
                inserts
                    .rejected
                    .write(&Rejecting::undecoded(entry).whole_entry(&reason))
                    .await?;
                load.written.rejected += 1;
                load.dead.push((index, reason));
                Ok(())
            }
        }
    }

    /// Ends the three inserts of a write: each sends what it holds and waits for
    /// ClickHouse's confirmation; their blocks are kept for the next write.
    async fn finish(&self, inserts: Inserts) -> Result<(), clickhouse::error::Error> {
        // Each insert's CLIENT span covers sending its last block and the wait for
        // ClickHouse's confirmation, the part of a flush that depends on the server.
        let Inserts {
            commerce,
            probes,
            rejected,
        } = inserts;
        let block = pipeline::trace::traced(
            pipeline::trace::insert_span(COMMERCE_TABLE),
            commerce.finish(),
        )
        .await?;
        self.spare.put(block);
        let block =
            pipeline::trace::traced(pipeline::trace::insert_span(PROBE_TABLE), probes.finish())
                .await?;
        self.spare.put(block);
        let block = pipeline::trace::traced(
            pipeline::trace::insert_span(REJECTED_TABLE),
            rejected.finish(),
        )
        .await?;
        self.spare.put(block);
        Ok(())
    }

    /// Records entries ClickHouse refused as `rejected_events` rows, with the reason.
    pub async fn write_rejected(
        &self,
        dead: &[(&RawEntry, &str)],
    ) -> Result<(), clickhouse::error::Error> {
        // with the insert timeouts: a frozen server fails the load, whose entries stay
        // pending and are read again, instead of holding it for ever
        let mut rejected = self.insert::<RejectedRow<'_>>(REJECTED_TABLE);
        for (entry, reason) in dead {
            rejected
                .write(&Rejecting::undecoded(entry).whole_entry(reason))
                .await?;
        }
        self.spare.put(rejected.finish().await?);
        Ok(())
    }

    /// Which events of `batch` are already in `commerce_events` or `probe_results`, by
    /// identity `(store_id, event_id)`, looked up by day and id so the query reads only the
    /// primary-key ranges of those days.
    ///
    /// Only an optimisation: on error it finds nothing (and FINAL still collapses the
    /// duplicates), so a failing lookup never fails or dead-letters the entry.
    async fn present(&self, events: &[&Event]) -> Present {
        let mut found = Present::new();
        // Ids go into the query text; chunks keep it far below max_query_size (256 KiB).
        for events in events.chunks(PRESENT_CHUNK) {
            match self.present_chunk(events).await {
                Ok(ids) => {
                    for (store, id) in ids {
                        if let Ok(id) = Uuid::try_parse(&id) {
                            found.entry(store).or_default().insert(id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "looking up already loaded events failed");
                    return Present::new();
                }
            }
        }
        found
    }

    async fn present_chunk(
        &self,
        events: &[&Event],
    ) -> Result<Vec<(String, String)>, clickhouse::error::Error> {
        let mut days = BTreeSet::new();
        let mut ids = String::new();
        for event in events {
            // Only ids that parse, written back in canonical form: nothing to quote, and
            // anything else fails validation and has no row.
            let id = Uuid::try_parse(&event.event_id).ok();
            let day = event
                .occurred_at
                .as_ref()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
                .map(|t| t.date());
            if let (Some(id), Some(day)) = (id, day) {
                days.insert(day);
                if !ids.is_empty() {
                    ids.push(',');
                }
                let _ = write!(ids, "toUUID('{id}')");
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let days = days
            .iter()
            .map(|d| format!("toDate('{d}')"))
            .collect::<Vec<_>>()
            .join(",");
        let filter = format!("WHERE toDate(occurred_at) IN ({days}) AND event_id IN ({ids})");
        self.client()
            .query(&format!(
                "SELECT store_id, toString(event_id) FROM {COMMERCE_TABLE} {filter} \
                 UNION ALL SELECT store_id, toString(event_id) FROM {PROBE_TABLE} {filter}"
            ))
            .fetch_all()
            .await
    }

    async fn write_batch(
        &self,
        batch: BatchView<'_>,
        entry: &RawEntry,
        present: &Present,
        inserts: &mut Inserts,
        written: &mut Written,
    ) -> Result<(), clickhouse::error::Error> {
        let BatchView {
            store_id,
            region,
            received_at,
            events,
            encoded_events,
            rejected,
            rejected_not_kept,
            from_prober,
        } = batch;
        let received = received_at.as_ref().map_or(0, |t| t.seconds);
        let received_at = datetime(received);
        let region = Region::from_proto(region);
        let region_code = region.map_or(0, Region::ch_code);
        let checked = check_entry(
            &self.limits,
            store_id,
            region,
            received,
            from_prober,
            events,
        );
        let rejecting = Rejecting {
            entry,
            received_at,
            region: region_code,
            store_id,
        };
        for r in &checked.rejected {
            let reason = r.reason();
            let raw = Rejecting::refused_event_raw(encoded_events[r.index]);
            let occurred_at = datetime(r.event.occurred_at.map_or(0, |t| t.seconds));
            let row = rejecting.row(
                RejectSource::Consumer,
                r.event.event_id,
                occurred_at,
                &reason,
                &raw,
            );
            inserts.rejected.write(&row).await?;
            written.rejected += 1;
        }
        // commerce rows gathered and written a column at a time, straight from the views
        // (`Block::push_commerce`, #19); probes, one in ten events, row by row
        let mut commerce = Vec::with_capacity(checked.accepted.len());
        for (accepted, id) in checked.with_ids() {
            let loaded =
                !present.is_empty() && present.get(store_id).is_some_and(|ids| ids.contains(&id));
            if loaded {
                written.skipped += 1;
                continue;
            }
            if let Some(row) = CommerceSource::new(accepted, id) {
                commerce.push(row);
                continue;
            }
            match event_row_with_id(accepted, id, received_at) {
                EventRow::Commerce(_) => unreachable!("a commerce event is a CommerceSource"),
                EventRow::Probe(row) => {
                    inserts.probes.write(&row).await?;
                    written.probes += 1;
                }
            }
        }
        inserts
            .commerce
            .write_commerce(&commerce, received_at)
            .await?;
        written.commerce += commerce.len();
        for r in &rejected {
            let row = rejecting.row(
                RejectSource::Gateway,
                &r.event_id,
                0,
                &r.reason,
                &r.raw_event,
            );
            inserts.rejected.write(&row).await?;
            written.rejected += 1;
        }
        // one row stands for the rejected events whose bytes the gateway did not keep, so
        // that `rejected_events` still shows that (and how many) there were
        if rejected_not_kept > 0 {
            let reason = not_kept_reason(rejected_not_kept);
            let row = rejecting.row(RejectSource::Gateway, "", 0, &reason, &[]);
            inserts.rejected.write(&row).await?;
            written.rejected += 1;
        }
        Ok(())
    }
}

/// The reason of the row that stands for `count` rejected events the gateway counted but did
/// not keep (`QueuedBatch.rejected_not_kept`).
pub fn not_kept_reason(count: u32) -> String {
    format!(
        "{count} more rejected events of this request were not kept: the gateway keeps the \
         first GATEWAY_MAX_REJECTED_KEPT per request (the store's response listed each)"
    )
}

/// The rules as the consumer applies them to one decoded entry, its events owned or views
/// (the archiver too): the
/// gateway's but its time window (see `Sink::limits`), for what a producer that is not the
/// gateway may have written wrong, and the range the tables hold.
pub fn check_entry<E: AsView>(
    limits: &Limits,
    store_id: &str,
    region: Option<Region>,
    received: i64,
    from_prober: bool,
    events: Vec<E>,
) -> validate::Checked<E> {
    let ctx = Context {
        limits,
        now_unix: received,
        sender: region.map(|region| {
            if from_prober {
                // the gateway checked each event's store against its stores file
                Sender::Prober {
                    prober_id: store_id,
                    region,
                    stores: None,
                }
            } else {
                Sender::Store { store_id, region }
            }
        }),
    };
    validate::check_batch(&ctx, events)
}
