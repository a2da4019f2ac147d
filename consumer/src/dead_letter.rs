//! The dead-letter stream `<stream>:dead`: entries that cannot be loaded, kept with the
//! reason so an operator can list them and, once the cause is fixed, replay them. The
//! dead-letter entry's fields are [`pipeline::entry::DeadLetterFields`].

use std::collections::HashMap;

use bytes::Bytes;
use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
};
use pipeline::entry::{DeadLetterFields, Fields};

use crate::batch::RawEntry;

/// The dead-letter stream of `stream`.
pub fn dead_key(stream: &str) -> String {
    format!("{stream}:dead")
}

/// The fields of the dead-letter entry for `entry`.
pub fn fields(entry: &RawEntry, reason: &str) -> Vec<(String, Bytes)> {
    DeadLetterFields {
        original_id: entry.id.clone(),
        reason: reason.to_owned(),
        deliveries: entry.deliveries,
        fields: entry.fields.clone(),
    }
    .pairs()
}

/// One entry of the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The main stream (shard) it came from and is replayed to.
    pub stream: String,
    /// Its id in the dead-letter stream, which `replay` takes.
    pub id: String,
    /// Its id in the main stream when it was dead-lettered.
    pub original_id: String,
    pub reason: String,
    pub deliveries: u64,
    /// The fields as the producer wrote them.
    pub raw: Fields,
}

impl DeadLetter {
    fn parse(stream: &str, id: String, fields: Vec<(String, Bytes)>) -> DeadLetter {
        let DeadLetterFields {
            original_id,
            reason,
            deliveries,
            fields,
        } = DeadLetterFields::from_pairs(fields);
        DeadLetter {
            stream: stream.to_owned(),
            id,
            original_id,
            reason,
            deliveries,
            raw: fields,
        }
    }
}

/// The dead-letter streams of one main stream (of each of its shards), for an operator.
pub struct DeadLetters {
    client: Client,
    streams: Vec<String>,
}

impl DeadLetters {
    /// Connects to the Redis holding `redis.stream_key` and its shards.
    pub async fn connect(
        redis: &pipeline::config::RedisArgs,
    ) -> Result<DeadLetters, fred::error::Error> {
        let client = redis.client()?;
        client.init().await?;
        Ok(DeadLetters {
            client,
            streams: redis.shards().keys().to_vec(),
        })
    }

    /// Every dead-lettered entry, shard by shard, oldest first.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, fred::error::Error> {
        let mut letters = Vec::new();
        for stream in &self.streams {
            let entries: Vec<(String, HashMap<String, Bytes>)> = self
                .client
                .xrange_values(dead_key(stream), "-", "+", None)
                .await?;
            letters.extend(
                entries.into_iter().map(|(id, fields)| {
                    DeadLetter::parse(stream, id, fields.into_iter().collect())
                }),
            );
        }
        Ok(letters)
    }

    /// Appends the original fields of each named dead letter (every one if `ids` is
    /// `None`) to the stream (shard) it came from as a new entry, then deletes it from the
    /// dead-letter stream. Returns the new ids. Unknown ids are skipped.
    ///
    /// A crash between the two writes leaves the letter in both streams; replaying it
    /// again loads its events twice, which `ReplacingMergeTree` collapses.
    pub async fn replay(&self, ids: Option<&[String]>) -> Result<Vec<String>, fred::error::Error> {
        let letters = self.list().await?;
        let mut replayed = Vec::new();
        for letter in letters
            .into_iter()
            .filter(|l| ids.is_none_or(|ids| ids.contains(&l.id)))
        {
            if letter.raw == Fields::default() {
                tracing::warn!(id = %letter.id, "dead letter has no original fields; skipped");
                continue;
            }
            let new_id: String = self
                .client
                .xadd(&letter.stream, false, None, "*", letter.raw.pairs())
                .await?;
            let _: u64 = self
                .client
                .xdel(dead_key(&letter.stream), letter.id.as_str())
                .await?;
            tracing::info!(dead = %letter.id, original = %letter.original_id, id = %new_id, "replayed");
            replayed.push(new_id);
        }
        Ok(replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let entry = RawEntry {
            id: "5-1".into(),
            fields: Fields::new(Bytes::from_static(&[0xff, 0x00]), Some("00-ab".to_owned())),
            deliveries: 6,
            attempts: 0,
        };
        let letter = DeadLetter::parse("events", "9-0".into(), fields(&entry, "bad bytes"));
        assert_eq!(letter.original_id, "5-1");
        assert_eq!(letter.reason, "bad bytes");
        assert_eq!(letter.deliveries, 6);
        assert_eq!(letter.raw, entry.fields);
    }
}
