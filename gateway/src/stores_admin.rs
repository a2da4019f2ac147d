//! `gateway stores add|rotate|revoke|list`: the operator's tool for the stores file.
//!
//! A new token is printed once and never stored: the file keeps only its SHA-256. Every
//! change is written to a temporary file in the same directory, synced, and renamed over
//! the old one, so a running gateway (which reloads on change) sees the old file or the new
//! one, never half of one. The file is rewritten from its parsed form: comments are not kept.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use clap::{Parser, Subcommand};
use rand::RngCore as _;

use crate::auth::{
    EntryRole, StoreEntry, Stores, StoresFile, StoresFileError, TokenHashes, token_sha256,
};

/// Why a `gateway stores` command did nothing; the file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--stores-file (or GATEWAY_STORES_FILE) is required")]
    NoStoresFile,
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file as it is does not parse.
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: StoresFileError,
    },
    #[error("store {0:?} exists already; use `rotate` to give it a new token")]
    Exists(String),
    #[error("no store {0:?}")]
    NoStore(String),
    #[error("--key needs at least 8 hex digits of the hash")]
    ShortKey,
    #[error("store {id:?} has no token whose hash starts with {key}")]
    NoToken { id: String, key: String },
    #[error("{key} matches several tokens of store {id:?}; give more digits")]
    SeveralTokens { id: String, key: String },
    /// The edit would leave a file the gateway refuses.
    #[error("the edited file would not load: {0}")]
    Invalid(#[source] StoresFileError),
    #[error("writing toml: {0}")]
    Toml(#[from] toml::ser::Error),
    #[error("replacing {path}: {source}")]
    Replace {
        path: String,
        source: std::io::Error,
    },
    /// Printing the result failed (a closed stdout).
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

/// Edits the gateway's stores file: stores, their regions, quotas and tokens
#[derive(Parser, Clone, Debug)]
#[command(name = "gateway stores")]
pub struct StoresCli {
    /// The stores file to edit (created by `add` if missing)
    #[arg(long, env = "GATEWAY_STORES_FILE", global = true)]
    pub stores_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: StoresCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum StoresCommand {
    /// Adds a store (or, with --role prober, a prober) with a new token, printed once
    Add {
        #[arg(long)]
        id: String,
        /// europe, america or asia; a prober's is the region it probes from (its
        /// PROBER_REGION, the vantage region of every probe it sends)
        #[arg(long)]
        region: String,
        /// store: publishes its own events; prober: publishes probe results for every store
        /// of the file, from its region, and nothing else
        #[arg(long, value_enum, default_value_t = RoleArg::Store)]
        role: RoleArg,
        /// Events per second the store may send (per gateway)
        #[arg(long)]
        max_events_per_second: Option<u32>,
        /// Bytes of requests per second the store may send (per gateway); by default 1 KiB
        /// per event of --max-events-per-second
        #[arg(long)]
        max_bytes_per_second: Option<u64>,
    },
    /// Gives a store one more token, printed once; the old ones keep working until revoked
    Rotate {
        #[arg(long)]
        id: String,
    },
    /// Revokes one token of a store (by the start of its hash, as `list` shows), or the
    /// whole store
    Revoke {
        #[arg(long)]
        id: String,
        /// The first hex digits of the token's SHA-256 (at least 8); without it, the store
        /// and all its tokens are removed
        #[arg(long)]
        key: Option<String>,
    },
    /// Lists stores and probers: id, region, role, quota and the start of each token's hash
    List,
}

/// `--role` of `gateway stores add`: the stores file's `role`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Store,
    Prober,
}

impl From<RoleArg> for EntryRole {
    fn from(role: RoleArg) -> EntryRole {
        match role {
            RoleArg::Store => EntryRole::Store,
            RoleArg::Prober => EntryRole::Prober,
        }
    }
}

/// Runs one command; what it prints goes to `out`.
pub fn run(cli: StoresCli, out: &mut impl std::io::Write) -> Result<(), AdminError> {
    let path = cli.stores_file.ok_or(AdminError::NoStoresFile)?;
    let mut file = match std::fs::read_to_string(&path) {
        Ok(text) => StoresFile::parse(&text).map_err(|source| AdminError::Parse {
            path: path.display().to_string(),
            source,
        })?,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && matches!(cli.command, StoresCommand::Add { .. }) =>
        {
            StoresFile::default()
        }
        Err(source) => {
            return Err(AdminError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let position = |file: &StoresFile, id: &str| file.store.iter().position(|s| s.id == id);
    match cli.command {
        StoresCommand::List => {
            for s in &file.store {
                let keys: Vec<&str> = s
                    .token_sha256
                    .as_slice()
                    .iter()
                    .map(|h| &h[..h.len().min(12)])
                    .collect();
                let quota = match (s.max_events_per_second, s.max_bytes_per_second) {
                    (None, None) => "no quota".to_owned(),
                    (Some(e), None) => format!("{e} events/s"),
                    (None, Some(b)) => format!("{b} bytes/s"),
                    (Some(e), Some(b)) => format!("{e} events/s, {b} bytes/s"),
                };
                let role = match s.role {
                    EntryRole::Store => "store",
                    EntryRole::Prober => "prober",
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\tkeys: {}",
                    s.id,
                    s.region,
                    role,
                    quota,
                    keys.join(" ")
                )?;
            }
            return Ok(());
        }
        StoresCommand::Add {
            id,
            region,
            role,
            max_events_per_second,
            max_bytes_per_second,
        } => {
            if position(&file, &id).is_some() {
                return Err(AdminError::Exists(id));
            }
            let token = new_token();
            file.store.push(StoreEntry {
                id: id.clone(),
                region,
                token_sha256: TokenHashes::One(token_sha256(&token)),
                max_events_per_second,
                max_bytes_per_second,
                role: role.into(),
            });
            save(&path, &file)?;
            let what = match role {
                RoleArg::Store => "store",
                RoleArg::Prober => "prober",
            };
            writeln!(
                out,
                "added {what} {id}; its token (shown once, only its hash is kept):\n{token}"
            )?;
        }
        StoresCommand::Rotate { id } => {
            let i = position(&file, &id).ok_or_else(|| AdminError::NoStore(id.clone()))?;
            let token = new_token();
            let mut hashes = file.store[i].token_sha256.as_slice().to_vec();
            hashes.push(token_sha256(&token));
            file.store[i].token_sha256 = TokenHashes::from_vec(hashes);
            save(&path, &file)?;
            writeln!(
                out,
                "new token for store {id} (shown once; revoke the old one when the store uses this):\n{token}"
            )?;
        }
        StoresCommand::Revoke { id, key } => {
            let i = position(&file, &id).ok_or_else(|| AdminError::NoStore(id.clone()))?;
            let Some(key) = key else {
                file.store.remove(i);
                save(&path, &file)?;
                writeln!(out, "removed store {id} and all its tokens")?;
                return Ok(());
            };
            let key = key.to_ascii_lowercase();
            if key.len() < 8 {
                return Err(AdminError::ShortKey);
            }
            let hashes = file.store[i].token_sha256.as_slice();
            let (gone, kept): (Vec<String>, Vec<String>) = hashes
                .iter()
                .cloned()
                .partition(|h| h.to_ascii_lowercase().starts_with(&key));
            match gone.len() {
                0 => return Err(AdminError::NoToken { id, key }),
                1 => {}
                _ => return Err(AdminError::SeveralTokens { id, key }),
            }
            if kept.is_empty() {
                file.store.remove(i);
                save(&path, &file)?;
                writeln!(
                    out,
                    "revoked the last token of store {id}; the store is removed"
                )?;
            } else {
                file.store[i].token_sha256 = TokenHashes::from_vec(kept);
                save(&path, &file)?;
                writeln!(out, "revoked token {key}… of store {id}")?;
            }
        }
    }
    Ok(())
}

/// 32 random bytes, hex, with a prefix that makes a leaked token easy to recognise.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("mkt_{}", hex::encode(bytes))
}

/// Checks `file` as the gateway would, then replaces `path` with it atomically.
fn save(path: &Path, file: &StoresFile) -> Result<(), AdminError> {
    Stores::check(file.clone()).map_err(AdminError::Invalid)?;
    let text = format!(
        "# Stores allowed to publish; edit with `gateway stores`. Only token hashes are kept.\n{}",
        toml::to_string(file)?
    );
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("stores"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // the rename itself is durable once the directory is synced
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        AdminError::Replace {
            path: path.display().to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(file: &Path, args: &[&str]) -> anyhow::Result<String> {
        let mut argv = vec!["stores", "--stores-file", file.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut out = Vec::new();
        run(StoresCli::try_parse_from(argv)?, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn token_of(printed: &str) -> String {
        printed.lines().last().unwrap().to_owned()
    }

    #[test]
    fn add_rotate_revoke_keep_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stores.toml");
        let first = token_of(
            &cli(
                &file,
                &[
                    "add",
                    "--id",
                    "eu-9",
                    "--region",
                    "europe",
                    "--max-events-per-second",
                    "50",
                ],
            )
            .unwrap(),
        );
        assert!(first.starts_with("mkt_") && first.len() == 68);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&first) && text.contains(&token_sha256(&first)));
        let second = token_of(&cli(&file, &["rotate", "--id", "eu-9"]).unwrap());
        let stores = Stores::load(&file).unwrap();
        let auth = |t: &str| {
            stores
                .authenticate(Some(format!("Bearer {t}").as_bytes()))
                .map(|s| s.id.to_string())
        };
        assert_eq!(auth(&first).unwrap(), "eu-9");
        assert_eq!(auth(&second).unwrap(), "eu-9");
        assert_eq!(stores.len(), 1);

        let listed = cli(&file, &["list"]).unwrap();
        assert!(
            listed.contains("eu-9\teurope\tstore\t50 events/s"),
            "{listed}"
        );
        let old_key = &token_sha256(&first)[..10];
        cli(&file, &["revoke", "--id", "eu-9", "--key", old_key]).unwrap();
        let stores = Stores::load(&file).unwrap();
        assert!(
            stores
                .authenticate(Some(format!("Bearer {first}").as_bytes()))
                .is_err()
        );
        assert!(
            stores
                .authenticate(Some(format!("Bearer {second}").as_bytes()))
                .is_ok()
        );

        assert!(
            cli(&file, &["add", "--id", "eu-9", "--region", "europe"])
                .unwrap_err()
                .to_string()
                .contains("exists already")
        );
        assert!(
            cli(&file, &["add", "--id", "x", "--region", "mars"]).is_err(),
            "checked before writing"
        );
        assert!(cli(&file, &["revoke", "--id", "eu-9", "--key", "abc"]).is_err());
        cli(&file, &["revoke", "--id", "eu-9"]).unwrap();
        assert!(Stores::load(&file).unwrap().is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }

    #[test]
    fn add_role_prober_writes_a_prober_of_its_region_and_list_shows_roles() {
        use crate::auth::Role;
        use pipeline::{region::Region, validate::KnownStores as _};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stores.toml");
        let store = token_of(&cli(&file, &["add", "--id", "eu-1", "--region", "europe"]).unwrap());
        let printed = cli(
            &file,
            &[
                "add",
                "--id",
                "probe-asia",
                "--region",
                "asia",
                "--role",
                "prober",
            ],
        )
        .unwrap();
        assert!(printed.starts_with("added prober probe-asia;"), "{printed}");
        let prober = token_of(&printed);
        assert!(prober.starts_with("mkt_") && prober.len() == 68);

        // the file says so in the gateway's own words, and only for the prober
        let text = std::fs::read_to_string(&file).unwrap();
        let entries = StoresFile::parse(&text).unwrap().store;
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.id.as_str(), e.region.as_str(), e.role))
                .collect::<Vec<_>>(),
            [
                ("eu-1", "europe", EntryRole::Store),
                ("probe-asia", "asia", EntryRole::Prober)
            ]
        );
        assert_eq!(text.matches("role = \"prober\"").count(), 1, "{text}");
        assert!(!text.contains(&prober) && text.contains(&token_sha256(&prober)));

        // the gateway loads it: the token is a prober of asia that knows the stores, not
        // itself
        let stores = Stores::load(&file).unwrap();
        let principal = stores
            .authenticate(Some(format!("Bearer {prober}").as_bytes()))
            .unwrap();
        assert_eq!(
            (&*principal.id, principal.region),
            ("probe-asia", Region::Asia)
        );
        let Role::Prober(known) = &principal.role else {
            panic!("{principal:?} is not a prober")
        };
        assert_eq!(known.region_of("eu-1"), Some(Region::Europe));
        assert_eq!(known.region_of("probe-asia"), None);
        let store = stores
            .authenticate(Some(format!("Bearer {store}").as_bytes()))
            .unwrap();
        assert_eq!(store.role, Role::Store);

        let listed = cli(&file, &["list"]).unwrap();
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(lines.len(), 2, "{listed}");
        assert!(
            lines[0].starts_with("eu-1\teurope\tstore\tno quota\tkeys: "),
            "{listed}"
        );
        assert!(
            lines[1].starts_with("probe-asia\tasia\tprober\tno quota\tkeys: "),
            "{listed}"
        );

        // a prober's token rotates like a store's and keeps its role
        cli(&file, &["rotate", "--id", "probe-asia"]).unwrap();
        let entries = StoresFile::parse(&std::fs::read_to_string(&file).unwrap())
            .unwrap()
            .store;
        assert_eq!(entries[1].role, EntryRole::Prober);
        assert_eq!(entries[1].token_sha256.as_slice().len(), 2);

        // only the two roles the gateway knows, and a prober's region is checked too
        assert!(
            cli(
                &file,
                &["add", "--id", "x", "--region", "asia", "--role", "admin"]
            )
            .is_err()
        );
        assert!(
            cli(
                &file,
                &["add", "--id", "x", "--region", "mars", "--role", "prober"]
            )
            .unwrap_err()
            .to_string()
            .contains("would not load")
        );
        assert_eq!(
            Stores::load(&file).unwrap().len(),
            2,
            "refused adds write nothing"
        );
    }
}
