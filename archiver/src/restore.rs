//! `archiver restore --date D`: reloads a day's archived events that ClickHouse lacks, with
//! the consumer's row types (`pipeline::rows`), one insert per object. Events already in
//! ClickHouse are skipped, so a restore into a damaged day adds only what is missing and
//! can be repeated; what is left is collapsed by `FINAL` like any redelivery.

use std::collections::BTreeSet;

use pipeline::rows::{COMMERCE_TABLE, CommerceRow, PROBE_TABLE, ProbeRow};
use time::Date;

use crate::{
    columns::{commerce_rows, probe_rows},
    error::Error,
    layout::Kind,
    read,
    store::ArchiveStore,
    verify,
};

/// What a restore inserted and skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub commerce: u64,
    pub probes: u64,
    /// Events already in ClickHouse (or twice in the archive).
    pub skipped: u64,
}

/// Restores the day.
pub async fn restore(
    store: &ArchiveStore,
    client: &clickhouse::Client,
    date: Date,
) -> Result<Restored, Error> {
    let mut present: BTreeSet<verify::Identity> =
        verify::loaded(client, date).await?.into_keys().collect();
    let day = read::day(store, date, &[Kind::Commerce, Kind::Probes]).await?;
    let mut restored = Restored::default();
    for object in &day.objects {
        match object.kind {
            Kind::Commerce => {
                let mut insert = client.insert::<CommerceRow<'_>>(COMMERCE_TABLE).await?;
                for batch in &object.batches {
                    for row in commerce_rows(batch)? {
                        if present.insert((row.store_id.to_owned(), row.event_id.to_string())) {
                            insert.write(&row).await?;
                            restored.commerce += 1;
                        } else {
                            restored.skipped += 1;
                        }
                    }
                }
                insert.end().await?;
            }
            Kind::Probes => {
                let mut insert = client.insert::<ProbeRow<'_>>(PROBE_TABLE).await?;
                for batch in &object.batches {
                    for row in probe_rows(batch)? {
                        if present.insert((row.store_id.to_owned(), row.event_id.to_string())) {
                            insert.write(&row).await?;
                            restored.probes += 1;
                        } else {
                            restored.skipped += 1;
                        }
                    }
                }
                insert.end().await?;
            }
            Kind::Rejected => {}
        }
    }
    Ok(restored)
}
