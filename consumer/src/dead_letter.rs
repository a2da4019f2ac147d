//! The dead-letter stream `<stream>:dead`: entries that cannot be loaded, kept with the
//! reason so an operator can list them and, once the cause is fixed, replay them.
//!
//! A dead-letter entry has the fields `id` (the original stream id), `reason`,
//! `deliveries`, and every original field under its name prefixed with `raw.`, so a
//! replay writes back exactly what the producer wrote.

use std::collections::HashMap;

use bytes::Bytes;
use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
};

use crate::batch::RawEntry;

/// Prefix of the original fields in a dead-letter entry; keeps them apart from ours.
const RAW_PREFIX: &str = "raw.";

/// The dead-letter stream of `stream`.
pub fn dead_key(stream: &str) -> String {
    format!("{stream}:dead")
}

/// The fields of the dead-letter entry for `entry`.
pub fn fields(entry: &RawEntry, reason: &str) -> Vec<(String, Bytes)> {
    let mut out = vec![
        ("id".to_owned(), Bytes::from(entry.id.clone())),
        ("reason".to_owned(), Bytes::from(reason.to_owned())),
        (
            "deliveries".to_owned(),
            Bytes::from(entry.deliveries.to_string()),
        ),
    ];
    let original = [
        (pipeline::entry::FIELD_FORMAT, &entry.format),
        (pipeline::entry::FIELD_BATCH, &entry.batch),
    ];
    for (name, value) in original {
        if let Some(value) = value {
            out.push((format!("{RAW_PREFIX}{name}"), value.clone()));
        }
    }
    for (name, value) in &entry.other {
        out.push((format!("{RAW_PREFIX}{name}"), value.clone()));
    }
    out
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
    pub raw: Vec<(String, Bytes)>,
}

impl DeadLetter {
    fn parse(stream: &str, id: String, fields: Vec<(String, Bytes)>) -> DeadLetter {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let mut letter = DeadLetter {
            stream: stream.to_owned(),
            id,
            original_id: String::new(),
            reason: String::new(),
            deliveries: 0,
            raw: Vec::new(),
        };
        for (name, value) in fields {
            match name.as_str() {
                "id" => letter.original_id = text(&value),
                "reason" => letter.reason = text(&value),
                "deliveries" => letter.deliveries = text(&value).parse().unwrap_or(0),
                _ => {
                    if let Some(raw) = name.strip_prefix(RAW_PREFIX) {
                        letter.raw.push((raw.to_owned(), value));
                    }
                }
            }
        }
        letter
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
            if letter.raw.is_empty() {
                tracing::warn!(id = %letter.id, "dead letter has no original fields; skipped");
                continue;
            }
            let new_id: String = self
                .client
                .xadd(&letter.stream, false, None, "*", letter.raw.clone())
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
            format: Some(Bytes::from_static(b"queue.v1")),
            batch: Some(Bytes::from_static(&[0xff, 0x00])),
            other: vec![("tp".into(), Bytes::from_static(b"00-ab"))],
            deliveries: 6,
            attempts: 0,
        };
        let letter = DeadLetter::parse("events", "9-0".into(), fields(&entry, "bad bytes"));
        assert_eq!(letter.original_id, "5-1");
        assert_eq!(letter.reason, "bad bytes");
        assert_eq!(letter.deliveries, 6);
        assert_eq!(
            letter.raw,
            vec![
                ("f".to_owned(), Bytes::from_static(b"queue.v1")),
                ("b".to_owned(), Bytes::from_static(&[0xff, 0x00])),
                ("tp".to_owned(), Bytes::from_static(b"00-ab")),
            ]
        );
    }
}
