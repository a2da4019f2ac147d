//! Store authentication: a bearer token in the `authorization` metadata, checked against the
//! SHA-256 hashes of the stores file.
//!
//! Only hashes are stored, so the file is not a secret; comparison is constant-time, so
//! timing does not reveal how much of a hash matched. Tokens are never logged.

use std::{collections::HashMap, path::Path, sync::Arc};

use pipeline::region::Region;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An authenticated store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub id: Arc<str>,
    pub region: Region,
    /// Events per second this store may send; `None` for no limit.
    pub max_events_per_second: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoresFile {
    #[serde(default)]
    store: Vec<StoreEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreEntry {
    id: String,
    region: String,
    token_sha256: String,
    max_events_per_second: Option<u32>,
}

/// Why the stores file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoresFileError {
    #[error("reading stores file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing stores file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("store {id:?}: {problem}")]
    Invalid { id: String, problem: String },
}

/// Why a call is not authenticated. The text goes to the caller, so it never echoes the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    #[error("`authorization` metadata must be `Bearer <token>`")]
    Malformed,
    #[error("unknown store token")]
    Unknown,
}

/// The stores allowed to publish, keyed by token hash.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    by_hash: HashMap<[u8; 32], Store>,
}

impl Stores {
    /// Loads and checks a stores file.
    pub fn load(path: &Path) -> Result<Stores, StoresFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| StoresFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Stores::parse(&text)
    }

    /// Parses the TOML text of a stores file.
    pub fn parse(text: &str) -> Result<Stores, StoresFileError> {
        let file: StoresFile = toml::from_str(text)?;
        let mut by_hash = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for entry in file.store {
            let invalid = |problem: String| StoresFileError::Invalid {
                id: entry.id.clone(),
                problem,
            };
            if entry.id.is_empty() || entry.id.len() > pipeline::validate::MAX_STORE_ID_LEN {
                return Err(invalid("id must be 1 to 64 bytes".into()));
            }
            let region: Region = entry.region.parse().map_err(|e| invalid(format!("{e}")))?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(entry.token_sha256.trim(), &mut hash)
                .map_err(|_| invalid("token_sha256 must be 64 hex digits".into()))?;
            if !ids.insert(entry.id.clone()) {
                return Err(invalid("listed twice".into()));
            }
            if entry.max_events_per_second == Some(0) {
                return Err(invalid("max_events_per_second must be at least 1".into()));
            }
            let store = Store {
                id: entry.id.clone().into(),
                region,
                max_events_per_second: entry.max_events_per_second,
            };
            if by_hash.insert(hash, store).is_some() {
                return Err(invalid("shares its token with another store".into()));
            }
        }
        Ok(Stores { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Every store, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Store> {
        self.by_hash.values()
    }

    /// Authenticates the value of the `authorization` metadata.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&Store, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .ok_or(AuthError::Malformed)?;
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        let hash: [u8; 32] = Sha256::digest(token).into();
        // Every hash is compared in full so that the time taken does not depend on which
        // store, if any, matched or how many leading bytes agreed.
        let mut found = None;
        for (candidate, store) in &self.by_hash {
            if bool::from(candidate.ct_eq(&hash)) {
                found = Some(store);
            }
        }
        found.ok_or(AuthError::Unknown)
    }
}

/// The hex SHA-256 of a token, as the stores file wants it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Stores {
        Stores::parse(&format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\nmax_events_per_second = 10\n\
             [[store]]\nid = \"asia-1\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\n",
            token_sha256("secret-eu"),
            token_sha256("secret-asia")
        ))
        .unwrap()
    }

    #[test]
    fn tokens_authenticate_their_store_only() {
        let s = stores();
        assert_eq!(s.len(), 2);
        let eu = s.authenticate(Some(b"Bearer secret-eu")).unwrap();
        assert_eq!(
            (&*eu.id, eu.region, eu.max_events_per_second),
            ("eu-1", Region::Europe, Some(10))
        );
        assert_eq!(
            &*s.authenticate(Some(b"Bearer secret-asia")).unwrap().id,
            "asia-1"
        );
        assert_eq!(s.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            s.authenticate(Some(b"secret-eu")),
            Err(AuthError::Malformed)
        );
        assert_eq!(s.authenticate(Some(b"Bearer ")), Err(AuthError::Malformed));
        assert_eq!(
            s.authenticate(Some(b"Bearer secret-us")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn bad_stores_files_are_refused_with_the_reason() {
        let bad = |text: &str| Stores::parse(text).unwrap_err().to_string();
        let h = token_sha256("t");
        assert!(
            bad(&format!(
                "[[store]]\nid = \"x\"\nregion = \"mars\"\ntoken_sha256 = \"{h}\""
            ))
            .contains("unknown region")
        );
        assert!(
            bad("[[store]]\nid = \"x\"\nregion = \"asia\"\ntoken_sha256 = \"abc\"")
                .contains("64 hex digits")
        );
        assert!(
            bad(&format!(
                "[[store]]\nid = \"x\"\nregion = \"asia\"\ntoken_sha256 = \"{h}\"\ncolor = 1"
            ))
            .contains("unknown field")
        );
        let twice = format!(
            "[[store]]\nid = \"a\"\nregion = \"asia\"\ntoken_sha256 = \"{h}\"\n[[store]]\nid = \"b\"\nregion = \"asia\"\ntoken_sha256 = \"{h}\""
        );
        assert!(bad(&twice).contains("shares its token"));
    }
}
