//! The ClickHouse side of the consumer: a flush turns raw entries into rows and writes
//! them with one RowBinary insert per table.
//!
//! Entries are decoded one at a time while rows stream into the inserts, so memory holds
//! the raw batch plus one decoded entry, not every decoded event.

use clickhouse::Client;
use pipeline::{
    entry::decode_entry,
    proto::queue::QueuedBatch,
    region::Region,
    rows::{
        COMMERCE_TABLE, CommerceRow, EventRow, PROBE_TABLE, ProbeRow, REJECTED_TABLE, RejectSource,
        RejectedRow, datetime, event_row,
    },
    validate::{self, Context, Limits, Sender},
};

use crate::batch::RawEntry;

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub entries: usize,
    pub commerce: usize,
    pub probes: usize,
    pub rejected: usize,
}

/// Writes batches of entries into ClickHouse.
#[derive(Clone)]
pub struct Sink {
    client: Client,
    limits: Limits,
}

impl Sink {
    pub fn new(client: Client, limits: Limits) -> Sink {
        Sink { client, limits }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Inserts every row of `entries`; succeeds only when ClickHouse confirmed all inserts.
    pub async fn write(&self, entries: &[RawEntry]) -> Result<Written, clickhouse::error::Error> {
        let mut commerce = self
            .client
            .insert::<CommerceRow<'_>>(COMMERCE_TABLE)
            .await?;
        let mut probes = self.client.insert::<ProbeRow<'_>>(PROBE_TABLE).await?;
        let mut rejected = self
            .client
            .insert::<RejectedRow<'_>>(REJECTED_TABLE)
            .await?;
        let mut written = Written {
            entries: entries.len(),
            ..Written::default()
        };
        for entry in entries {
            let batch = match decode_entry(entry.format.as_deref(), entry.batch.as_deref()) {
                Ok(batch) => batch,
                Err(err) => {
                    let reason = format!("undecodable stream entry: {err}");
                    rejected
                        .write(&RejectedRow {
                            event_id: "",
                            occurred_at: 0,
                            received_at: 0,
                            region: 0,
                            store_id: "",
                            source: RejectSource::Consumer as i8,
                            reason: &reason,
                            raw: entry.batch.as_deref().unwrap_or_default(),
                            delivery_count: 1,
                            stream_entry_id: &entry.id,
                        })
                        .await?;
                    written.rejected += 1;
                    continue;
                }
            };
            self.write_batch(
                &batch,
                &entry.id,
                &mut commerce,
                &mut probes,
                &mut rejected,
                &mut written,
            )
            .await?;
        }
        commerce.end().await?;
        probes.end().await?;
        rejected.end().await?;
        Ok(written)
    }

    async fn write_batch(
        &self,
        batch: &QueuedBatch,
        entry_id: &str,
        commerce: &mut clickhouse::insert::Insert<CommerceRow<'_>>,
        probes: &mut clickhouse::insert::Insert<ProbeRow<'_>>,
        rejected: &mut clickhouse::insert::Insert<RejectedRow<'_>>,
        written: &mut Written,
    ) -> Result<(), clickhouse::error::Error> {
        let received = batch.received_at.as_ref().map_or(0, |t| t.seconds);
        let received_at = datetime(received);
        let region = Region::from_proto(batch.region);
        let region_code = region.map_or(0, Region::ch_code);
        // The same rules as the gateway, with "now" being when the gateway received the
        // batch, so events queued during an outage do not age out while they wait.
        let ctx = Context {
            limits: &self.limits,
            now_unix: received,
            sender: region.map(|region| Sender {
                store_id: &batch.store_id,
                region,
            }),
        };
        let verdict = validate::check_batch(&ctx, &batch.events);
        let mut bad = verdict.rejected.into_iter().peekable();
        for (index, event) in batch.events.iter().enumerate() {
            if let Some((_, violations)) = bad.next_if(|(i, _)| *i == index) {
                let reason = validate::reason(&violations);
                let raw = prost::Message::encode_to_vec(event);
                rejected
                    .write(&RejectedRow {
                        event_id: &event.event_id,
                        occurred_at: datetime(event.occurred_at.as_ref().map_or(0, |t| t.seconds)),
                        received_at,
                        region: region_code,
                        store_id: &batch.store_id,
                        source: RejectSource::Consumer as i8,
                        reason: &reason,
                        raw: &raw,
                        delivery_count: 1,
                        stream_entry_id: entry_id,
                    })
                    .await?;
                written.rejected += 1;
                continue;
            }
            match event_row(event, received_at, region_code) {
                Some(EventRow::Commerce(row)) => {
                    commerce.write(&row).await?;
                    written.commerce += 1;
                }
                Some(EventRow::Probe(row)) => {
                    probes.write(&row).await?;
                    written.probes += 1;
                }
                None => {}
            }
        }
        for r in &batch.rejected {
            rejected
                .write(&RejectedRow {
                    event_id: &r.event_id,
                    occurred_at: 0,
                    received_at,
                    region: region_code,
                    store_id: &batch.store_id,
                    source: RejectSource::Gateway as i8,
                    reason: &r.reason,
                    raw: &r.raw_event,
                    delivery_count: 1,
                    stream_entry_id: entry_id,
                })
                .await?;
            written.rejected += 1;
        }
        Ok(())
    }
}
