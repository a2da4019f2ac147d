//! The Redis side of the consumer: the consumer group, reading entries (this consumer's own
//! pending entries first, then new ones) and acknowledging them.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
    types::{
        Value,
        streams::{XID, XReadResponse},
    },
};
use pipeline::{
    config::RedisArgs,
    entry::{FIELD_BATCH, FIELD_FORMAT},
};

use crate::{batch::RawEntry, config::GroupArgs};

/// Reads and acknowledges one stream as one consumer of one group.
pub struct Source {
    /// Used only for blocking `XREADGROUP`: a blocked connection would delay every other
    /// command multiplexed on it.
    reader: Client,
    /// Acknowledgements and bookkeeping.
    client: Client,
    key: String,
    group: String,
    consumer: String,
    /// True until this consumer's own pending entries (from before a crash) are re-read.
    recovering: bool,
}

impl Source {
    /// Connects both clients and creates the group if it does not exist.
    pub async fn connect(
        redis: &RedisArgs,
        group: &GroupArgs,
    ) -> Result<Source, fred::error::Error> {
        let reader = redis.client()?;
        let client = redis.client()?;
        reader.init().await?;
        client.init().await?;
        let source = Source {
            reader,
            client,
            key: redis.stream_key.clone(),
            group: group.consumer_group.clone(),
            consumer: group.consumer_name.clone(),
            recovering: true,
        };
        source.ensure_group().await?;
        Ok(source)
    }

    /// `XGROUP CREATE key group 0 MKSTREAM`: a new group starts at the beginning of the
    /// stream, so nothing written before the first consumer started is skipped.
    pub async fn ensure_group(&self) -> Result<(), fred::error::Error> {
        match self
            .client
            .xgroup_create::<Value, _, _, _>(&self.key, &self.group, "0", true)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Reads up to `count` entries, blocking up to `block` for new ones. While recovering,
    /// it returns this consumer's pending entries without blocking, until there are none.
    pub async fn read(
        &mut self,
        count: u64,
        block: Duration,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        if self.recovering {
            let entries = self.read_from(count, None, "0").await?;
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "re-reading own pending entries");
                return Ok(entries);
            }
            self.recovering = false;
        }
        let block_ms = block.as_millis().clamp(1, 5_000) as u64;
        self.read_from(count, Some(block_ms), XID::NewInGroup).await
    }

    async fn read_from(
        &self,
        count: u64,
        block_ms: Option<u64>,
        id: impl Into<XID>,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        let response: XReadResponse<String, String, String, Value> = self
            .reader
            .xreadgroup_map(
                &self.group,
                &self.consumer,
                Some(count),
                block_ms,
                false,
                &self.key,
                id.into(),
            )
            .await?;
        Ok(response
            .into_values()
            .flatten()
            .map(|(id, fields)| raw_entry(id, fields))
            .collect())
    }

    /// Acknowledges entries after their rows are in ClickHouse.
    pub async fn ack(&self, ids: &[String]) -> Result<(), fred::error::Error> {
        for chunk in ids.chunks(10_000) {
            let _: u64 = self
                .client
                .xack(&self.key, &self.group, chunk.to_vec())
                .await?;
        }
        Ok(())
    }
}

fn raw_entry(id: String, mut fields: HashMap<String, Value>) -> RawEntry {
    let mut take = |name: &str| match fields.remove(name) {
        Some(Value::Bytes(b)) => Some(b),
        Some(Value::String(s)) => Some(s.inner().clone()),
        _ => None::<Bytes>,
    };
    RawEntry {
        format: take(FIELD_FORMAT),
        batch: take(FIELD_BATCH),
        id,
    }
}
