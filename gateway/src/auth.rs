//! Store authentication: a bearer token in the `authorization` metadata, checked against the
//! SHA-256 hashes of the stores file.
//!
//! Only hashes are stored, so the file is not a secret; comparison is constant-time, so
//! timing does not reveal how much of a hash matched. Tokens are never logged.
//!
//! An entry with `role = "prober"` is not a store but a prober of its region: it may
//! publish probe results for every store of the file, and nothing else ([`Role`]).
//!
//! A store may have several tokens (`token_sha256` is a string or an array), so a token can
//! be rotated with no gap: add the new one, switch the store over, revoke the old one.
//! [`LiveStores`] is the file as currently in force: [`LiveStores::watch`] reloads it on
//! SIGHUP and when its contents change, and keeps the previous one when the new one is bad.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pipeline::region::Region;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An authenticated store, or prober (see [`Store::role`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub id: Arc<str>,
    pub region: Region,
    /// What it may publish.
    pub role: Role,
    /// Events per second this store may send; `None` for no limit.
    pub max_events_per_second: Option<u32>,
    /// Bytes of requests per second this store may send; `None` for no limit. The stores
    /// file's `max_bytes_per_second`, or [`DEFAULT_BYTES_PER_EVENT`] per event of the event
    /// quota.
    pub max_bytes_per_second: Option<u64>,
}

/// What an entry of the stores file may publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Its own events, commerce and probes.
    #[default]
    Store,
    /// Probe results taken from its region, for the stores of the file it was loaded
    /// with (a snapshot: a reload makes new principals with the new list).
    Prober(Arc<KnownStores>),
}

/// The stores of the file (not its probers), by id: what a prober may probe.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KnownStores(HashMap<Arc<str>, Region>);

impl pipeline::validate::KnownStores for KnownStores {
    fn region_of(&self, store_id: &str) -> Option<Region> {
        self.0.get(store_id).copied()
    }
}

/// `role` in the stores file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryRole {
    #[default]
    Store,
    Prober,
}

impl EntryRole {
    fn is_store(&self) -> bool {
        *self == EntryRole::Store
    }
}

/// The byte quota of a store that sets `max_events_per_second` and no
/// `max_bytes_per_second`: 1 KiB per event of its event quota. A real event is 150 to 400
/// bytes encoded, so honest traffic never meets this limit first; a store that fills its
/// events with kilobytes of text does.
pub const DEFAULT_BYTES_PER_EVENT: u64 = 1024;

/// The stores file as written: `gateway stores` edits it through this type.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoresFile {
    #[serde(default)]
    pub store: Vec<StoreEntry>,
}

/// One `[[store]]` table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    pub id: String,
    pub region: String,
    pub token_sha256: TokenHashes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_events_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_second: Option<u64>,
    /// `"store"` (the default) or `"prober"`.
    #[serde(default, skip_serializing_if = "EntryRole::is_store")]
    pub role: EntryRole,
}

/// `token_sha256 = "…"` or `token_sha256 = ["…", "…"]`: every token the store may use.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TokenHashes {
    One(String),
    Many(Vec<String>),
}

impl TokenHashes {
    pub fn as_slice(&self) -> &[String] {
        match self {
            TokenHashes::One(one) => std::slice::from_ref(one),
            TokenHashes::Many(many) => many,
        }
    }

    /// A single hash is written as a string, several as an array.
    pub fn from_vec(mut hashes: Vec<String>) -> TokenHashes {
        if hashes.len() == 1 {
            TokenHashes::One(hashes.remove(0))
        } else {
            TokenHashes::Many(hashes)
        }
    }
}

impl StoresFile {
    /// Parses the TOML text without checking the entries (see [`Stores::parse`]).
    pub fn parse(text: &str) -> Result<StoresFile, StoresFileError> {
        Ok(toml::from_str(text)?)
    }
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
        Stores::parse(&read(path)?)
    }

    /// Parses the TOML text of a stores file.
    pub fn parse(text: &str) -> Result<Stores, StoresFileError> {
        Stores::check(StoresFile::parse(text)?)
    }

    /// Checks every entry of a parsed stores file.
    pub fn check(file: StoresFile) -> Result<Stores, StoresFileError> {
        let mut by_hash = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        // regions are checked below, entry by entry, with the entry's name in the error
        let known = Arc::new(KnownStores(
            file.store
                .iter()
                .filter(|e| e.role == EntryRole::Store)
                .filter_map(|e| Some((e.id.as_str().into(), e.region.parse().ok()?)))
                .collect(),
        ));
        for entry in file.store {
            let invalid = |problem: String| StoresFileError::Invalid {
                id: entry.id.clone(),
                problem,
            };
            if entry.id.is_empty() || entry.id.len() > pipeline::validate::MAX_STORE_ID_LEN {
                return Err(invalid("id must be 1 to 64 bytes".into()));
            }
            let region: Region = entry.region.parse().map_err(|e| invalid(format!("{e}")))?;
            let hashes = entry.token_sha256.as_slice();
            if hashes.is_empty() {
                return Err(invalid("token_sha256 must list at least one hash".into()));
            }
            if !ids.insert(entry.id.clone()) {
                return Err(invalid("listed twice".into()));
            }
            if entry.max_events_per_second == Some(0) {
                return Err(invalid("max_events_per_second must be at least 1".into()));
            }
            if entry.max_bytes_per_second == Some(0) {
                return Err(invalid("max_bytes_per_second must be at least 1".into()));
            }
            let store = Store {
                id: entry.id.clone().into(),
                region,
                role: match entry.role {
                    EntryRole::Store => Role::Store,
                    EntryRole::Prober => Role::Prober(known.clone()),
                },
                max_events_per_second: entry.max_events_per_second,
                max_bytes_per_second: entry.max_bytes_per_second.or_else(|| {
                    entry
                        .max_events_per_second
                        .map(|events| u64::from(events) * DEFAULT_BYTES_PER_EVENT)
                }),
            };
            for hex_hash in hashes {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(hex_hash.trim(), &mut hash)
                    .map_err(|_| invalid("token_sha256 must be 64 hex digits".into()))?;
                if by_hash.insert(hash, store.clone()).is_some() {
                    return Err(invalid(
                        "shares its token with another store, or lists a token twice".into(),
                    ));
                }
            }
        }
        Ok(Stores { by_hash })
    }

    /// Number of stores (not tokens).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Every store once, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Store> {
        let mut seen = std::collections::HashSet::new();
        self.by_hash
            .values()
            .filter(move |store| seen.insert(store.id.clone()))
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

/// The stores file in force, swapped whole on reload: a request sees the old file or the
/// new one, never a mix.
pub struct LiveStores {
    path: PathBuf,
    current: RwLock<Arc<Stores>>,
    /// The text in force and the last text refused, to tell whether the file changed (and
    /// to complain about a bad file once, not every poll).
    texts: std::sync::Mutex<(String, Option<String>)>,
    /// Bumped by every successful reload, so a long-lived stream re-checks its token only
    /// when the file changed.
    generation: AtomicU64,
}

impl LiveStores {
    /// Loads and checks the stores file at `path`.
    pub fn load(path: &Path) -> Result<LiveStores, StoresFileError> {
        let text = read(path)?;
        let stores = Stores::parse(&text)?;
        Ok(LiveStores {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(stores)),
            texts: std::sync::Mutex::new((text, None)),
            generation: AtomicU64::new(0),
        })
    }

    /// The stores in force.
    pub fn current(&self) -> Arc<Stores> {
        self.current.read().expect("stores lock").clone()
    }

    /// Counts successful reloads.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Authenticates the value of the `authorization` metadata against the stores in force.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Store, AuthError> {
        self.current().authenticate(authorization).cloned()
    }

    /// Reads the file again; swaps it in if it changed and is valid. `Ok(false)` when it
    /// did not change since it was last loaded or refused. On error the stores in force stay.
    pub fn reload(&self) -> Result<bool, StoresFileError> {
        let text = read(&self.path)?;
        let mut texts = self.texts.lock().expect("stores lock");
        if texts.0 == text || texts.1.as_ref() == Some(&text) {
            return Ok(false);
        }
        let stores = match Stores::parse(&text) {
            Ok(stores) => stores,
            Err(e) => {
                texts.1 = Some(text);
                return Err(e);
            }
        };
        *self.current.write().expect("stores lock") = Arc::new(stores);
        *texts = (text, None);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Reloads on SIGHUP and, every `poll` (unless zero), when the file's contents changed;
    /// calls `reloaded` after each swap. Runs until aborted.
    pub async fn watch(self: Arc<Self>, poll: Duration, reloaded: impl Fn(&Stores) + Send) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = (!poll.is_zero()).then(|| {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        loop {
            let trigger = tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => "sighup",
                Some(_) = async { Some(tick.as_mut()?.tick().await) } => "change",
                else => return,
            };
            match self.reload() {
                Ok(false) => {}
                Ok(true) => {
                    let stores = self.current();
                    tracing::info!(file = %self.path.display(), trigger, stores = stores.len(), "stores file reloaded");
                    metrics::counter!("gateway_stores_reloads_total", "result" => "ok")
                        .increment(1);
                    reloaded(&stores);
                }
                Err(e) => {
                    tracing::error!(file = %self.path.display(), trigger, error = %e, "stores file refused; the previous one stays in force");
                    metrics::counter!("gateway_stores_reloads_total", "result" => "refused")
                        .increment(1);
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<String, StoresFileError> {
    std::fs::read_to_string(path).map_err(|source| StoresFileError::Read {
        path: path.display().to_string(),
        source,
    })
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
        // the byte quota follows the event quota unless set
        assert_eq!(eu.max_bytes_per_second, Some(10 * DEFAULT_BYTES_PER_EVENT));
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
        assert!(
            bad(&format!(
                "[[store]]\nid = \"x\"\nregion = \"asia\"\ntoken_sha256 = \"{h}\"\nmax_bytes_per_second = 0"
            ))
            .contains("max_bytes_per_second must be at least 1")
        );
    }

    #[test]
    fn a_prober_knows_the_stores_of_its_file_and_not_other_probers() {
        use pipeline::validate::KnownStores as _;
        let s = Stores::parse(&format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n\
             [[store]]\nid = \"probe-asia\"\nregion = \"asia\"\nrole = \"prober\"\ntoken_sha256 = \"{}\"\n",
            token_sha256("t-eu"),
            token_sha256("t-probe")
        ))
        .unwrap();
        assert_eq!(
            s.authenticate(Some(b"Bearer t-eu")).unwrap().role,
            Role::Store
        );
        let prober = s.authenticate(Some(b"Bearer t-probe")).unwrap();
        assert_eq!(prober.region, Region::Asia);
        let Role::Prober(known) = &prober.role else {
            panic!("{prober:?} is not a prober")
        };
        assert_eq!(known.region_of("eu-1"), Some(Region::Europe));
        assert_eq!(known.region_of("probe-asia"), None);
        assert_eq!(known.region_of("nope"), None);
        let bad = Stores::parse(&format!(
            "[[store]]\nid = \"x\"\nregion = \"asia\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"",
            token_sha256("t")
        ))
        .unwrap_err()
        .to_string();
        assert!(bad.contains("unknown variant `admin`"), "{bad}");
    }

    #[test]
    fn a_byte_quota_is_set_or_derived_from_the_event_quota() {
        let h = |t: &str| token_sha256(t);
        let s = Stores::parse(&format!(
            "[[store]]\nid = \"a\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\nmax_bytes_per_second = 5000\n\
             [[store]]\nid = \"b\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\nmax_events_per_second = 3\nmax_bytes_per_second = 7\n",
            h("ta"),
            h("tb")
        ))
        .unwrap();
        let a = s.authenticate(Some(b"Bearer ta")).unwrap();
        assert_eq!(
            (a.max_events_per_second, a.max_bytes_per_second),
            (None, Some(5000))
        );
        let b = s.authenticate(Some(b"Bearer tb")).unwrap();
        assert_eq!(
            (b.max_events_per_second, b.max_bytes_per_second),
            (Some(3), Some(7))
        );
        assert_eq!(
            stores()
                .authenticate(Some(b"Bearer secret-asia"))
                .unwrap()
                .max_bytes_per_second,
            None
        );
    }
}
