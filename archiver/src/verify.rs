//! `archiver verify --date D`: the day's archive against ClickHouse. Events are compared by
//! identity `(store_id, event_id)`, each counted once on either side (ClickHouse read with
//! `FINAL`, the archive deduplicated), and counted per table, type and region.

use std::collections::{BTreeMap, BTreeSet};

use time::Date;

use crate::{
    columns::{REGIONS, TYPES, commerce_rows, enum_name, probe_rows},
    error::Error,
    layout::Kind,
    read,
    store::ArchiveStore,
};

/// An event's identity.
pub type Identity = (String, String);

/// What a count is of: table, type (`""` for probes) and region.
pub type CountKey = (String, String, String);

/// One side's events: identity → what it is counted as.
pub type Events = BTreeMap<Identity, CountKey>;

/// The outcome of a verification.
#[derive(Debug, Default)]
pub struct Verification {
    pub date: String,
    pub archived: usize,
    pub loaded: usize,
    pub only_in_archive: Vec<Identity>,
    pub only_in_clickhouse: Vec<Identity>,
    /// Counts that differ: (archive, ClickHouse).
    pub counts: BTreeMap<CountKey, (u64, u64)>,
    /// Integrity problems of the archive itself (checksums, manifest).
    pub problems: Vec<String>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.only_in_archive.is_empty()
            && self.only_in_clickhouse.is_empty()
            && self.counts.is_empty()
            && self.problems.is_empty()
    }

    /// The human-readable report `verify` prints: a summary line, then each difference.
    pub fn report(&self) -> String {
        let mut out = format!(
            "{}: {} events archived, {} in clickhouse: {}\n",
            self.date,
            self.archived,
            self.loaded,
            if self.is_clean() { "ok" } else { "DIFFERENT" }
        );
        for p in &self.problems {
            out.push_str(&format!("archive: {p}\n"));
        }
        for (s, id) in &self.only_in_archive {
            out.push_str(&format!("only in the archive: {s} {id}\n"));
        }
        for (s, id) in &self.only_in_clickhouse {
            out.push_str(&format!("only in clickhouse: {s} {id}\n"));
        }
        for ((table, kind, region), (a, c)) in &self.counts {
            out.push_str(&format!(
                "count {table} {kind} {region}: archive {a}, clickhouse {c}\n"
            ));
        }
        out
    }
}

/// The day's events in the archive, with its integrity problems.
pub async fn archived(store: &ArchiveStore, date: Date) -> Result<(Events, Vec<String>), Error> {
    let day = read::day(store, date, &[Kind::Commerce, Kind::Probes]).await?;
    let mut events = Events::new();
    for object in &day.objects {
        for batch in &object.batches {
            if object.kind == Kind::Commerce {
                for r in commerce_rows(batch)? {
                    events.insert(
                        (r.store_id.to_owned(), r.event_id.to_string()),
                        count_key(Kind::Commerce, enum_name(&TYPES, r.r#type), r.region),
                    );
                }
            } else {
                for r in probe_rows(batch)? {
                    events.insert(
                        (r.store_id.to_owned(), r.event_id.to_string()),
                        count_key(Kind::Probes, "", r.region),
                    );
                }
            }
        }
    }
    Ok((events, day.problems))
}

fn count_key(kind: Kind, r#type: &str, region: i8) -> CountKey {
    (
        kind.table().to_owned(),
        r#type.to_owned(),
        enum_name(&REGIONS, region).to_owned(),
    )
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Loaded {
    store_id: String,
    event_id: String,
    r#type: String,
    region: String,
}

/// The day's events in ClickHouse, each once.
pub async fn loaded(client: &clickhouse::Client, date: Date) -> Result<Events, Error> {
    let mut events = Events::new();
    for (kind, r#type) in [(Kind::Commerce, "toString(type)"), (Kind::Probes, "''")] {
        let sql = format!(
            "SELECT DISTINCT store_id, toString(event_id), {type}, toString(region) \
             FROM {table} FINAL WHERE toDate(occurred_at) = toDate(?)",
            table = kind.table()
        );
        let rows: Vec<Loaded> = client
            .query(&sql)
            .bind(date.to_string())
            .fetch_all()
            .await?;
        for r in rows {
            events.insert(
                (r.store_id, r.event_id),
                (kind.table().to_owned(), r.r#type, r.region),
            );
        }
    }
    Ok(events)
}

/// Compares the two sides.
pub fn compare(date: Date, archive: &Events, clickhouse: &Events) -> Verification {
    let ids = |e: &Events| e.keys().cloned().collect::<BTreeSet<_>>();
    let (a, c) = (ids(archive), ids(clickhouse));
    let counts = |e: &Events| {
        let mut out: BTreeMap<CountKey, u64> = BTreeMap::new();
        for key in e.values() {
            *out.entry(key.clone()).or_default() += 1;
        }
        out
    };
    let (ca, cc) = (counts(archive), counts(clickhouse));
    let keys: BTreeSet<&CountKey> = ca.keys().chain(cc.keys()).collect();
    Verification {
        date: date.to_string(),
        archived: archive.len(),
        loaded: clickhouse.len(),
        only_in_archive: a.difference(&c).cloned().collect(),
        only_in_clickhouse: c.difference(&a).cloned().collect(),
        counts: keys
            .into_iter()
            .filter_map(|k| {
                let pair = (
                    ca.get(k).copied().unwrap_or(0),
                    cc.get(k).copied().unwrap_or(0),
                );
                (pair.0 != pair.1).then(|| (k.clone(), pair))
            })
            .collect(),
        problems: Vec::new(),
    }
}

/// Verifies the day.
pub async fn verify(
    store: &ArchiveStore,
    client: &clickhouse::Client,
    date: Date,
) -> Result<Verification, Error> {
    let (archive, problems) = archived(store, date).await?;
    let clickhouse = loaded(client, date).await?;
    let mut v = compare(date, &archive, &clickhouse);
    v.problems = problems;
    Ok(v)
}
