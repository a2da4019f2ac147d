//! The day's manifest, in the style of the reports' manifest: every archive object of the
//! day with its row count, entry-id range and SHA-256, rebuilt from the bucket's listing and
//! the objects' own metadata each time a segment touches the day, and written until a
//! listing after the write agrees with it, so archivers writing the same day concurrently
//! never drop each other's objects.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    error::Error,
    layout::{Kind, date_prefix, manifest_key},
    store::{ArchiveStore, StoreError},
};

/// The manifest format; bumped on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Names of the `x-amz-meta-*` fields every archive object carries, which the manifest lists.
pub const META_ROWS: &str = "rows";
pub const META_FIRST: &str = "first-entry";
pub const META_LAST: &str = "last-entry";
pub const META_SHA256: &str = "sha256";

/// One object listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// `commerce`, `probes` or `rejected`.
    pub kind: String,
    pub rows: u64,
    /// Stream ids of the first and last entry of the segment the object belongs to.
    pub first_entry: String,
    pub last_entry: String,
    /// Lowercase hex SHA-256 of the object's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// `archive/manifests/date=<date>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub date: String,
    /// When this manifest was written (RFC 3339, UTC).
    pub generated_at: String,
    /// Rows over every object, by kind.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Every object, sorted by key.
    pub objects: Vec<Entry>,
}

/// Lists the day's objects and their metadata, as the manifest would list them.
pub async fn collect(store: &ArchiveStore, date: Date) -> Result<Manifest, StoreError> {
    let mut objects = Vec::new();
    for kind in Kind::ALL {
        for listed in store.list(&date_prefix(kind, date)).await? {
            let meta = store.metadata(&listed.key).await?;
            let field = |name: &str| meta.get(name).cloned().unwrap_or_default();
            objects.push(Entry {
                kind: kind.as_str().to_owned(),
                rows: field(META_ROWS).parse().unwrap_or(0),
                first_entry: field(META_FIRST),
                last_entry: field(META_LAST),
                sha256: field(META_SHA256),
                bytes: listed.bytes,
                key: listed.key,
            });
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let mut rows = std::collections::BTreeMap::new();
    for o in &objects {
        *rows.entry(o.kind.clone()).or_insert(0) += o.rows;
    }
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        date: date.to_string(),
        generated_at: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond")
            .format(&Rfc3339)
            .expect("rfc 3339 formats every time"),
        rows,
        objects,
    })
}

/// Rewrites the day's manifest from the bucket as it is now, and settles it (see
/// [`settle`]).
pub async fn write(store: &ArchiveStore, date: Date) -> Result<Manifest, Error> {
    let manifest = collect(store, date).await?;
    settle(store, date, manifest).await
}

/// How many times a manifest is rewritten because the bucket changed meanwhile, before the
/// writer gives up (and its segment is retried).
const SETTLE_ROUNDS: usize = 20;

/// Writes `manifest` as the day's, then lists the day again; while the listing shows other
/// objects than the manifest (another archiver uploaded since `manifest` was collected,
/// and may have written its own manifest before this one), collects and writes again.
///
/// Why no archiver's objects can be lost: every archiver uploads its objects before it
/// writes a manifest and ends only when a listing taken after its own write matches what
/// it wrote. Take the last manifest write of all: every object was uploaded before its
/// uploader's write, so before the last write; the last writer's listing after it shows
/// them all, and it stopped only because its manifest lists them. No lock or conditional
/// write is needed, only an S3 whose listings show every completed upload, which SeaweedFS's
/// filer does (test `two_archivers_sealing_the_same_day_never_lose_each_other_s_objects`).
pub async fn settle(
    store: &ArchiveStore,
    date: Date,
    mut manifest: Manifest,
) -> Result<Manifest, Error> {
    for _ in 0..SETTLE_ROUNDS {
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        store
            .put_verified(
                &manifest_key(date),
                body.into(),
                &sha256,
                "application/json",
                &[],
            )
            .await?;
        if listing(store, date).await? == objects_of(&manifest) {
            return Ok(manifest);
        }
        manifest = collect(store, date).await?;
    }
    Err(Error::Unsettled {
        key: manifest_key(date),
        rounds: SETTLE_ROUNDS,
    })
}

/// The day's objects as a listing shows them: key and size.
async fn listing(store: &ArchiveStore, date: Date) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for listed in store.list(&date_prefix(kind, date)).await? {
            out.push((listed.key, listed.bytes));
        }
    }
    out.sort();
    Ok(out)
}

fn objects_of(manifest: &Manifest) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = manifest
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.bytes))
        .collect();
    out.sort();
    out
}

/// The day's manifest as stored; `None` if there is none.
pub async fn read(store: &ArchiveStore, date: Date) -> Result<Option<Manifest>, StoreError> {
    let Some(body) = store.get_if_exists(&manifest_key(date)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&body).ok())
}
