//! The day's manifest: every object written with its SHA-256, the data watermark and the
//! time of generation — the only wall-clock value in any report object.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{objects::Object, tables::utc};

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
    /// Every object, sorted by key.
    pub objects: Vec<Entry>,
    /// The run this one rewrote, when the day had reports already (late data, a rerun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Superseded>,
}

impl Manifest {
    pub fn new(
        date: &str,
        watermark: u32,
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
            watermark,
            watermark_utc: utc(watermark),
            objects: entries,
            supersedes: None,
        }
    }

    /// What a later run records about this one when it rewrites the day.
    pub fn superseded(&self) -> Superseded {
        Superseded {
            generated_at: self.generated_at.clone(),
            watermark: self.watermark,
        }
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
        let m = Manifest::new("2026-01-15", 0, OffsetDateTime::UNIX_EPOCH, &objects);
        assert_eq!(m.objects[0].key, "a");
        assert_eq!(
            m.objects[1].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(m.generated_at, "1970-01-01T00:00:00Z");
        assert_eq!(m.object().key, "reports/2026-01-15/manifest.json");
    }
}
