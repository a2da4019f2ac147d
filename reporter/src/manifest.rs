//! The day's manifest: every object written with its SHA-256, the data watermark and the
//! time of generation — the only wall-clock value in any report object.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{fetch::DataState, objects::Object, tables::utc};

/// One object listed in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// Lowercase hex SHA-256 of the object's bytes.
    pub sha256: String,
    pub bytes: u64,
    pub content_type: String,
}

/// The run a manifest replaced: the previous manifest of the same day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Superseded {
    pub generated_at: String,
    pub watermark: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// `reports/<date>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub date: String,
    /// When this run wrote the reports (RFC 3339, UTC).
    pub generated_at: String,
    /// Latest `received_at` of the data included (Unix seconds and RFC 3339).
    pub watermark: u32,
    pub watermark_utc: String,
    /// Rows of the event tables in the days the reports read, copies included, counted
    /// before they were read (none in manifests written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Every object, sorted by key.
    pub objects: Vec<Entry>,
    /// The run this one rewrote, when the day had reports already (late data, a rerun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Superseded>,
}

impl Manifest {
    pub fn new(
        date: &str,
        data: DataState,
        generated_at: OffsetDateTime,
        objects: &[Object],
    ) -> Manifest {
        let mut entries: Vec<Entry> = objects
            .iter()
            .map(|o| Entry {
                key: o.key.clone(),
                sha256: hex::encode(Sha256::digest(&o.body)),
                bytes: o.body.len() as u64,
                content_type: o.content_type.to_owned(),
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Manifest {
            schema_version: crate::report::SCHEMA_VERSION,
            date: date.to_owned(),
            generated_at: generated_at
                .replace_nanosecond(0)
                .expect("0 is a valid nanosecond")
                .format(&Rfc3339)
                .expect("rfc 3339 formats every time"),
            watermark: data.watermark,
            watermark_utc: utc(data.watermark),
            rows: Some(data.rows),
            objects: entries,
            supersedes: None,
        }
    }

    /// What a later run records about this one when it rewrites the day.
    pub fn superseded(&self) -> Superseded {
        Superseded {
            generated_at: self.generated_at.clone(),
            watermark: self.watermark,
            rows: self.rows,
        }
    }

    /// Whether the data of the day's reports changed since this run read it (`now`): rows
    /// received after its watermark, or, at the same watermark, another number of rows than
    /// it counted. Rows can arrive with an earlier `received_at` than some already loaded:
    /// several consumers or stream shards load out of that order, a consumer takes over a
    /// dead one's entries, a replica fetches an older part after a newer one; the watermark
    /// alone missed them for good. A merge of copies also changes the count (the rewrite has
    /// the same figures), and it could hide as many rows arriving, which the next change of
    /// either then catches. An earlier watermark is a server behind this run's (a replica
    /// still fetching): never a reason to rewrite.
    pub fn is_older_than(&self, now: DataState) -> bool {
        now.watermark > self.watermark
            || (now.watermark == self.watermark && self.rows.is_some_and(|rows| now.rows != rows))
    }

    /// The manifest as an object to upload.
    pub fn object(&self) -> Object {
        Object {
            key: crate::objects::manifest_key(&self.date),
            body: crate::report::to_json(self),
            content_type: "application/json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sorted_and_hashed() {
        let objects = [
            Object {
                key: "b".into(),
                body: b"abc".to_vec(),
                content_type: "text/csv",
            },
            Object {
                key: "a".into(),
                body: Vec::new(),
                content_type: "text/csv",
            },
        ];
        let m = Manifest::new(
            "2026-01-15",
            DataState::default(),
            OffsetDateTime::UNIX_EPOCH,
            &objects,
        );
        assert_eq!(m.objects[0].key, "a");
        assert_eq!(
            m.objects[1].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(m.generated_at, "1970-01-01T00:00:00Z");
        assert_eq!(m.object().key, "reports/2026-01-15/manifest.json");
    }

    #[test]
    fn a_day_is_older_than_its_data_when_rows_were_received_later_or_grew() {
        let read = DataState {
            watermark: 100,
            rows: 10,
        };
        let m = Manifest::new("2026-01-15", read, OffsetDateTime::UNIX_EPOCH, &[]);
        assert!(!m.is_older_than(read));
        let later = DataState {
            watermark: 101,
            ..read
        };
        assert!(m.is_older_than(later), "received after the watermark");
        let loaded_late = DataState { rows: 11, ..read };
        assert!(
            m.is_older_than(loaded_late),
            "received before it, loaded after"
        );
        let merged = DataState { rows: 9, ..read };
        assert!(
            m.is_older_than(merged),
            "a merge of copies: the same figures again"
        );
        let behind = DataState {
            watermark: 99,
            rows: 11,
        };
        assert!(
            !m.is_older_than(behind),
            "a replica behind this run's server"
        );
        // a manifest written before it counted rows: the watermark alone
        let old: Manifest = serde_json::from_str(
            &serde_json::to_string(&m)
                .unwrap()
                .replace("\"rows\":10,", ""),
        )
        .unwrap();
        assert_eq!(old.rows, None);
        assert!(!old.is_older_than(loaded_late));
        assert!(old.is_older_than(later));
    }
}
