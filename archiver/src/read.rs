//! Reading a day back from the archive: its objects, checked against their recorded SHA-256
//! and the day's manifest, decoded into record batches.

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
use time::Date;

use crate::{
    error::Error,
    layout::{Kind, date_prefix},
    manifest::{self, META_SHA256},
    store::ArchiveStore,
};

/// The decoded record batches of one object.
pub fn batches(key: &str, body: Bytes) -> Result<Vec<RecordBatch>, Error> {
    let object = |error: String| Error::Object {
        key: key.to_owned(),
        error,
    };
    ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|b| b.build())
        .map_err(|e| object(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| object(e.to_string()))
}

/// One archived object of a day, read and checked.
pub struct DayObject {
    pub key: String,
    pub kind: Kind,
    pub batches: Vec<RecordBatch>,
}

/// A day of the archive: its objects of `kinds`, and every integrity problem found (an
/// object whose bytes do not have its recorded SHA-256, or that the manifest does not list
/// with that SHA-256).
pub struct Day {
    pub objects: Vec<DayObject>,
    pub problems: Vec<String>,
}

/// Reads every object of `kinds` of `date`.
pub async fn day(store: &ArchiveStore, date: Date, kinds: &[Kind]) -> Result<Day, Error> {
    let manifest = manifest::read(store, date).await?;
    let mut day = Day {
        objects: Vec::new(),
        problems: Vec::new(),
    };
    if manifest.is_none() {
        day.problems.push(format!("no manifest for {date}"));
    }
    for &kind in kinds {
        for listed in store.list(&date_prefix(kind, date)).await? {
            let body = store.get(&listed.key).await?;
            let sha256 = hex::encode(Sha256::digest(&body));
            let recorded = store.metadata(&listed.key).await?.remove(META_SHA256);
            if recorded.as_deref() != Some(sha256.as_str()) {
                day.problems.push(format!(
                    "{}: sha256 {sha256}, recorded {recorded:?}",
                    listed.key
                ));
            }
            if let Some(m) = &manifest {
                let listed_in = m
                    .objects
                    .iter()
                    .any(|o| o.key == listed.key && o.sha256 == sha256);
                if !listed_in {
                    day.problems.push(format!(
                        "{}: not in the manifest with its sha256",
                        listed.key
                    ));
                }
            }
            day.objects.push(DayObject {
                batches: batches(&listed.key, body)?,
                key: listed.key,
                kind,
            });
        }
    }
    Ok(day)
}
