//! What must hold before the gateway serves: it refuses to listen beyond loopback without
//! TLS, or with stores whose tokens anyone can derive from the secret this repository
//! publishes, unless the operator names the risk with `GATEWAY_INSECURE_DEMO`.
//!
//! The check runs in the binary (`main.rs`), not in a deployment script, so every way of
//! starting a gateway gets it (Compose, Terraform's cloud-init, systemd, by hand) and it
//! judges the settings the process really has: the address it binds, the stores file it
//! reads, whether TLS is configured. `gateway --preflight` runs it (and loads the stores,
//! TLS and Redis settings) without serving; `scripts/preflight.sh` runs that, locally or in
//! Compose (`--compose`).

use std::{fmt, net::SocketAddr, path::Path};

use crate::{auth::token_sha256, config::Settings};

/// The only value `GATEWAY_INSECURE_DEMO` accepts: long and explicit on purpose, so that
/// nobody sets it by accident or copies it without reading it.
pub const INSECURE_DEMO_CONSENT: &str = "i-understand-this-gateway-is-unsafe";

/// What `GATEWAY_INSECURE_DEMO` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InsecureDemo {
    /// Unset or empty (Compose passes unset variables as empty): unsafe exposure is refused.
    #[default]
    Refused,
    /// The consent phrase: the operator accepted the risks, for a demo.
    Accepted,
}

/// Parses `GATEWAY_INSECURE_DEMO` (for clap): empty, or exactly the consent phrase.
pub fn parse_insecure_demo(s: &str) -> Result<InsecureDemo, String> {
    match s {
        "" => Ok(InsecureDemo::Refused),
        INSECURE_DEMO_CONSENT => Ok(InsecureDemo::Accepted),
        _ => Err(format!(
            "the only accepted value is {INSECURE_DEMO_CONSENT:?}, and only for a demo"
        )),
    }
}

/// A way in which serving on a non-loopback address would be unsafe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Risk {
    /// No TLS: bearer tokens and events would cross the network readable by anyone on path.
    Plaintext,
    /// These stores' token hashes are those of the demo fleet, derived from
    /// [`pipeline::demo::PUBLISHED_TOKEN_SECRET`]: anyone can publish as them.
    PublishedDemoTokens(Vec<String>),
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Risk::Plaintext => f.write_str(
                "no tls: bearer tokens would cross the network unencrypted \
                 (set GATEWAY_TLS_CERT and GATEWAY_TLS_KEY)",
            ),
            Risk::PublishedDemoTokens(ids) => write!(
                f,
                "the stores file accepts the published demo tokens of {} (deploy/stores.example.toml): \
                 anyone can publish as those stores (use a stores file with random tokens)",
                ids.join(", ")
            ),
        }
    }
}

/// Why the gateway refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Listening beyond loopback with risks the operator has not accepted.
    #[error(
        "refusing to serve on {listen}, which is not a loopback address: {}; for a demo only, \
         set GATEWAY_INSECURE_DEMO={INSECURE_DEMO_CONSENT}",
        join(risks)
    )]
    Unsafe {
        listen: SocketAddr,
        risks: Vec<Risk>,
    },
    /// The stores file cannot be read.
    #[error("reading the stores file {path}: {source}")]
    StoresFile {
        path: String,
        source: std::io::Error,
    },
    /// The stores file does not load (`--preflight` only).
    #[error(transparent)]
    Stores(#[from] crate::auth::StoresFileError),
    /// A TLS file cannot be read (`--preflight` only).
    #[error("reading tls file {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
    /// The Redis settings do not make a client (`--preflight` only).
    #[error("configuring redis: {0}")]
    Redis(#[source] fred::error::Error),
}

fn join(risks: &[Risk]) -> String {
    risks
        .iter()
        .map(Risk::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The risks of serving `stores_toml` on `listen`, with or without TLS. None on loopback:
/// nobody else can connect there (local runs, tests, a sidecar proxy that terminates TLS).
pub fn risks(listen: SocketAddr, tls: bool, stores_toml: &str) -> Vec<Risk> {
    if listen.ip().is_loopback() {
        return Vec::new();
    }
    let mut risks = Vec::new();
    if !tls {
        risks.push(Risk::Plaintext);
    }
    let demo = published_demo_stores(stores_toml);
    if !demo.is_empty() {
        risks.push(Risk::PublishedDemoTokens(demo));
    }
    risks
}

/// The ids of the stores in `stores_toml` whose token is the demo fleet's token for that id.
///
/// Only store ids and hex strings are looked at (the text is searched for each demo hash),
/// so this holds whatever shape a store's token entries take. A file that is not TOML has
/// no demo stores here; loading it fails with the parse error anyway.
fn published_demo_stores(stores_toml: &str) -> Vec<String> {
    let Ok(file) = stores_toml.parse::<toml::Table>() else {
        return Vec::new();
    };
    let text = stores_toml.to_ascii_lowercase();
    let ids = file
        .get("store")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|store| store.get("id")?.as_str());
    ids.filter(|id| {
        let token = pipeline::demo::store_token(pipeline::demo::PUBLISHED_TOKEN_SECRET, id);
        text.contains(&token_sha256(&token))
    })
    .map(str::to_owned)
    .collect()
}

/// Refuses unsafe exposure unless `GATEWAY_INSECURE_DEMO` accepts it; returns the risks
/// accepted that way (the caller logs them loudly).
pub fn check(settings: &Settings) -> Result<Vec<Risk>, PreflightError> {
    let stores_toml = read(&settings.stores_file)?;
    let tls = settings.tls_cert.is_some() && settings.tls_key.is_some();
    let risks = risks(settings.listen, tls, &stores_toml);
    if risks.is_empty() || settings.insecure_demo == InsecureDemo::Accepted {
        Ok(risks)
    } else {
        Err(PreflightError::Unsafe {
            listen: settings.listen,
            risks,
        })
    }
}

/// What `gateway --preflight` checks, without binding or connecting: [`check`], then that
/// the stores file loads, the TLS files are readable and the Redis settings make a client
/// (a `rediss://` URL with an unreadable CA file fails here).
pub fn full(settings: &Settings) -> Result<Vec<Risk>, PreflightError> {
    let risks = check(settings)?;
    crate::auth::Stores::load(&settings.stores_file)?;
    for path in settings.tls_cert.iter().chain(&settings.tls_key) {
        std::fs::read(path).map_err(|source| PreflightError::TlsFile {
            path: path.display().to_string(),
            source,
        })?;
    }
    settings.redis.config().map_err(PreflightError::Redis)?;
    Ok(risks)
}

fn read(path: &Path) -> Result<String, PreflightError> {
    std::fs::read_to_string(path).map_err(|source| PreflightError::StoresFile {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/stores.example.toml");

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_store_of_the_shipped_example_is_recognised() {
        let ids = published_demo_stores(EXAMPLE);
        assert_eq!(ids, ["eu-1", "eu-2", "us-1", "us-2", "asia-1", "asia-2"]);
    }

    #[test]
    fn a_larger_demo_fleet_is_recognised_and_random_tokens_are_not() {
        let demo = format!(
            "[[store]]\nid = \"asia-7\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\n",
            token_sha256(&pipeline::demo::store_token(
                pipeline::demo::PUBLISHED_TOKEN_SECRET,
                "asia-7"
            ))
            .to_ascii_uppercase()
        );
        assert_eq!(published_demo_stores(&demo), ["asia-7"]);
        let own = format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
            token_sha256("a-random-token-of-our-own")
        );
        assert!(published_demo_stores(&own).is_empty());
        assert!(published_demo_stores("not toml [[").is_empty());
    }

    #[test]
    fn loopback_is_always_allowed() {
        for listen in ["127.0.0.1:50051", "[::1]:50051", "127.0.0.2:1"] {
            assert!(risks(addr(listen), false, EXAMPLE).is_empty(), "{listen}");
        }
    }

    #[test]
    fn beyond_loopback_plaintext_and_demo_tokens_are_each_a_risk() {
        for listen in ["0.0.0.0:50051", "[::]:50051", "10.0.1.20:50051"] {
            let both = risks(addr(listen), false, EXAMPLE);
            assert_eq!(both.len(), 2, "{listen}: {both:?}");
            assert_eq!(both[0], Risk::Plaintext);
            assert!(matches!(&both[1], Risk::PublishedDemoTokens(ids) if ids.len() == 6));
            assert_eq!(risks(addr(listen), true, EXAMPLE).len(), 1);
            assert_eq!(risks(addr(listen), false, "").len(), 1);
            assert!(risks(addr(listen), true, "").is_empty());
        }
    }

    #[test]
    fn only_the_exact_consent_phrase_is_accepted() {
        assert_eq!(
            parse_insecure_demo(INSECURE_DEMO_CONSENT),
            Ok(InsecureDemo::Accepted)
        );
        assert_eq!(parse_insecure_demo(""), Ok(InsecureDemo::Refused));
        for wrong in [
            "yes",
            "true",
            "1",
            " ",
            "I-UNDERSTAND-THIS-GATEWAY-IS-UNSAFE",
        ] {
            let err = parse_insecure_demo(wrong).unwrap_err();
            assert!(err.contains(INSECURE_DEMO_CONSENT), "{err}");
        }
    }

    #[test]
    fn the_refusal_names_every_risk_and_the_way_out() {
        let err = PreflightError::Unsafe {
            listen: addr("0.0.0.0:50051"),
            risks: risks(addr("0.0.0.0:50051"), false, EXAMPLE),
        }
        .to_string();
        for part in [
            "0.0.0.0:50051",
            "GATEWAY_TLS_CERT",
            "eu-1, eu-2",
            "GATEWAY_INSECURE_DEMO=i-understand-this-gateway-is-unsafe",
        ] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }
}
