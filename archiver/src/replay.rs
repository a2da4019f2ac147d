//! `archiver replay-rejected --date D [--dry-run]`: the day's refused events, kept in
//! `archive/rejected/`, checked again under today's rules (`pipeline::validate`, through the
//! consumer's `check_entry`), and those now valid appended to the stream again as ordinary
//! entries (`pipeline::entry`): the consumer loads them, and the archiver archives them.
//!
//! Idempotent: each replayed event's identity is recorded in the hash
//! `<stream shard>:replayed` (field `<store_id> <event_id>`, value: the id of the entry that
//! carried it again) right after its entry is appended, and an identity found there is not
//! queued again. A crash between the append and the record queues those events once more
//! at the next replay; the tables' identity (ReplacingMergeTree on `(store_id, event_id)`,
//! read with `FINAL`) still counts them once.
//!
//! A refused event is replayed under its store and the time the gateway received it: the
//! rules see it as they would have, had they been today's then. Probe results a prober
//! sent are checked as their store's own (the row does not say a prober sent them).

use std::collections::{BTreeMap, HashSet};

use consumer::sink::check_entry;
use fred::{
    clients::Client,
    interfaces::{HashesInterface, StreamsInterface},
};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::{
    entry::{Fields, encode_batch},
    proto::{ingest::Event, queue::QueuedBatch},
    region::Region,
    shard::Shards,
    validate::Limits,
};
use prost::Message;
use time::Date;

use crate::{columns::rejected_rows, error::Error, layout::Kind, read, store::ArchiveStore};

/// Events per entry appended, as a store's request might carry them.
const EVENTS_PER_ENTRY: usize = 100;

/// What a replay found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Rejected rows of the day.
    pub rows: u64,
    /// Rows without an event to replay: a whole undecodable entry, or the count of refused
    /// events whose bytes the gateway did not keep.
    pub without_event: u64,
    /// Events that still break a rule.
    pub still_invalid: u64,
    /// Valid events replayed before (or twice in the day's rows).
    pub already_replayed: u64,
    /// Valid events appended again (or, with `--dry-run`, that would be).
    pub queued: u64,
    /// Entries appended.
    pub entries: u64,
}

impl Replayed {
    /// The line `replay-rejected` prints.
    pub fn report(&self, date: Date, dry_run: bool) -> String {
        format!(
            "{date}: {} rejected rows: {} events {} again in {} entries, {} already replayed, \
             {} still invalid, {} without an event to replay\n",
            self.rows,
            self.queued,
            if dry_run { "would be queued" } else { "queued" },
            self.entries,
            self.already_replayed,
            self.still_invalid,
            self.without_event,
        )
    }
}

/// A refused event valid under today's rules, on its way back to the stream.
struct Candidate {
    store_id: String,
    region: Region,
    received: i64,
    event: Event,
}

/// The hash of identities replayed onto `key`.
pub fn replayed_key(key: &str) -> String {
    format!("{key}:replayed")
}

/// Replays the day's refused events that `limits` now accept.
pub async fn replay(
    store: &ArchiveStore,
    redis: &Client,
    shards: &Shards,
    date: Date,
    limits: &Limits,
    dry_run: bool,
) -> Result<Replayed, Error> {
    let day = read::day(store, date, &[Kind::Rejected]).await?;
    if day.objects.is_empty() && day.problems.iter().any(|p| p.starts_with("no manifest")) {
        return Err(Error::NoDay(date.to_string()));
    }
    if !day.problems.is_empty() {
        return Err(Error::Damaged(day.problems.join("\n")));
    }
    let mut out = Replayed::default();
    // Per shard, in the order the rows were archived.
    let mut valid: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for object in &day.objects {
        for batch in &object.batches {
            for row in rejected_rows(batch)? {
                out.rows += 1;
                if row.raw.is_empty() {
                    out.without_event += 1;
                    continue;
                }
                let (Some(region), Ok(event)) = (
                    Region::from_proto(i32::from(row.region)),
                    Event::decode(row.raw),
                ) else {
                    out.without_event += 1;
                    continue;
                };
                let received = i64::from(row.received_at);
                let checked = check_entry(
                    limits,
                    row.store_id,
                    Some(region),
                    received,
                    false,
                    vec![event],
                );
                let Some(accepted) = checked.accepted.into_iter().next() else {
                    out.still_invalid += 1;
                    continue;
                };
                let event = accepted.into_event();
                if !seen.insert(identity(row.store_id, &event.event_id)) {
                    out.already_replayed += 1;
                    continue;
                }
                valid
                    .entry(shards.of_store(row.store_id))
                    .or_default()
                    .push(Candidate {
                        store_id: row.store_id.to_owned(),
                        region,
                        received,
                        event,
                    });
            }
        }
    }
    let bar = progress(valid.values().map(|v| v.len() as u64).sum());
    for (shard, candidates) in valid {
        let key = shards.key(shard);
        let replayed = replayed_key(key);
        let mut candidates = candidates.into_iter().peekable();
        while let Some(first) = candidates.next() {
            // One entry: events of the same store, region and receipt, as one request made them.
            let (store_id, region, received) =
                (first.store_id.clone(), first.region, first.received);
            let mut group = vec![first];
            while group.len() < EVENTS_PER_ENTRY {
                let same = |c: &Candidate| {
                    c.store_id == store_id && c.region == region && c.received == received
                };
                match candidates.next_if(same) {
                    Some(c) => group.push(c),
                    None => break,
                }
            }
            bar.inc(group.len() as u64);
            let ids: Vec<String> = group
                .iter()
                .map(|c| identity(&c.store_id, &c.event.event_id))
                .collect();
            let done: Vec<Option<String>> = redis.hmget(&replayed, ids.clone()).await?;
            let (mut fresh, mut fresh_ids) = (Vec::new(), Vec::new());
            for ((candidate, id), done) in group.into_iter().zip(ids).zip(done) {
                if done.is_some() {
                    out.already_replayed += 1;
                } else {
                    fresh.push(candidate);
                    fresh_ids.push(id);
                }
            }
            let Some(head) = fresh.first() else { continue };
            out.queued += fresh.len() as u64;
            out.entries += 1;
            if dry_run {
                continue;
            }
            let batch = QueuedBatch {
                store_id: head.store_id.clone(),
                region: head.region.to_proto() as i32,
                received_at: Some(prost_types::Timestamp {
                    seconds: head.received,
                    nanos: 0,
                }),
                events: fresh.into_iter().map(|c| c.event).collect(),
                ..Default::default()
            };
            let fields = Fields::new(encode_batch(&batch), None);
            let entry: String = redis.xadd(key, false, None, "*", fields.pairs()).await?;
            let record: Vec<(String, String)> = fresh_ids
                .into_iter()
                .map(|id| (id, entry.clone()))
                .collect();
            let _: fred::types::Value = redis.hset(&replayed, record).await?;
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// An event's identity as a field of the replayed hash.
fn identity(store_id: &str, event_id: &str) -> String {
    format!("{store_id} {event_id}")
}

/// A bar on the terminal (hidden when stderr is not one), like the simulator's.
fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events {msg}",
        )
        .expect("valid template"),
    );
    bar
}
