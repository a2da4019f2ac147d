//! The targets file (`PROBER_TARGETS_FILE`): what to probe, how, and how often.
//!
//! ```toml
//! [[target]]
//! name = "checkout"                       # ProbeResult.target
//! store_id = "eu-1"                       # the store, as the gateway's stores file names it
//! region = "europe"                       # the store's region (not the prober's)
//! url = "https://eu-1.example.com/health"
//! method = "GET"                          # default GET
//! expected_status = 200                   # default 200; any other status is down
//! payload_url = "https://eu-1.example.com/probe/1mb"  # optional: bandwidth
//! load_url = "https://eu-1.example.com/probe/load"    # optional: {"cpu_load": 0.42}
//! interval = "30s"                        # default 30s
//! jitter = "3s"                           # default a tenth of the interval
//! timeout = "10s"                         # default 10s
//! ```

use std::{path::Path, time::Duration};

use http::{Method, Uri};
use pipeline::region::Region;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    target: Vec<Entry>,
}

/// One `[[target]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    store_id: String,
    region: String,
    url: String,
    method: Option<String>,
    expected_status: Option<u16>,
    payload_url: Option<String>,
    load_url: Option<String>,
    interval: Option<String>,
    jitter: Option<String>,
    timeout: Option<String>,
}

/// A checked target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub store_id: String,
    /// The store's region: the event's `region`, which the gateway checks.
    pub region: Region,
    pub url: Uri,
    pub method: Method,
    pub expected_status: u16,
    /// Downloaded after an up probe to measure bandwidth.
    pub payload_url: Option<Uri>,
    /// Answers `{"cpu_load": <0..=1>}` (JSON; other fields are ignored).
    pub load_url: Option<Uri>,
    pub interval: Duration,
    /// Each wait is `interval` plus a uniform random part of up to `jitter`, so that probers
    /// started together do not probe in step.
    pub jitter: Duration,
    /// Of each request (the probe, the payload, the load); a probe that times out is down,
    /// with this as its response time.
    pub timeout: Duration,
}

/// Why the targets file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("reading targets file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing targets file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("target {name:?}: {problem}")]
    Invalid { name: String, problem: String },
    #[error("the targets file lists no [[target]]")]
    Empty,
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and checks the targets file.
pub fn load(path: &Path) -> Result<Vec<Target>, TargetsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TargetsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Parses and checks the text of a targets file.
pub fn parse(text: &str) -> Result<Vec<Target>, TargetsError> {
    let file: File = toml::from_str(text)?;
    if file.target.is_empty() {
        return Err(TargetsError::Empty);
    }
    let mut names = std::collections::HashSet::new();
    file.target
        .into_iter()
        .map(|entry| {
            let invalid = |problem: String| TargetsError::Invalid {
                name: entry.name.clone(),
                problem,
            };
            if !names.insert((entry.store_id.clone(), entry.name.clone())) {
                return Err(invalid(format!(
                    "listed twice for store {:?}",
                    entry.store_id
                )));
            }
            check(&entry).map_err(invalid)
        })
        .collect()
}

fn check(e: &Entry) -> Result<Target, String> {
    use pipeline::validate::{MAX_STORE_ID_LEN, MAX_TARGET_LEN};
    if e.name.is_empty() || e.name.len() > MAX_TARGET_LEN {
        return Err(format!("name must be 1 to {MAX_TARGET_LEN} bytes"));
    }
    if e.store_id.is_empty() || e.store_id.len() > MAX_STORE_ID_LEN {
        return Err(format!("store_id must be 1 to {MAX_STORE_ID_LEN} bytes"));
    }
    let region: Region = e.region.parse().map_err(|err| format!("{err}"))?;
    let method = match &e.method {
        None => Method::GET,
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("method {m:?} is not an HTTP method"))?,
    };
    let expected_status = e.expected_status.unwrap_or(200);
    if !(100..=599).contains(&expected_status) {
        return Err(format!(
            "expected_status {expected_status} is not within 100..=599"
        ));
    }
    let duration = |field: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(v) => pipeline::config::parse_duration(v).map_err(|err| format!("{field}: {err}")),
    };
    let interval = duration("interval", &e.interval, DEFAULT_INTERVAL)?;
    let jitter = duration("jitter", &e.jitter, interval / 10)?;
    let timeout = duration("timeout", &e.timeout, DEFAULT_TIMEOUT)?;
    if interval.is_zero() || timeout.is_zero() {
        return Err("interval and timeout must be above zero".into());
    }
    // a response time is a u32 of milliseconds
    if timeout > Duration::from_secs(3600) {
        return Err("timeout must be at most 1h".into());
    }
    Ok(Target {
        name: e.name.clone(),
        store_id: e.store_id.clone(),
        region,
        url: url("url", &e.url)?,
        method,
        expected_status,
        payload_url: e
            .payload_url
            .as_deref()
            .map(|u| url("payload_url", u))
            .transpose()?,
        load_url: e
            .load_url
            .as_deref()
            .map(|u| url("load_url", u))
            .transpose()?,
        interval,
        jitter,
        timeout,
    })
}

/// An absolute `http://` or `https://` URL with a host.
pub fn url(field: &str, text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|err| format!("{field} {text:?} is not a URL: {err}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(format!(
            "{field} {text:?} must be an absolute http:// or https:// URL"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
        [[target]]
        name = "checkout"
        store_id = "eu-1"
        region = "europe"
        url = "https://eu-1.example.com/health"
    "#;

    #[test]
    fn defaults_fill_what_a_target_leaves_out() {
        let t = &parse(ONE).unwrap()[0];
        assert_eq!(t.method, Method::GET);
        assert_eq!(t.expected_status, 200);
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(t.jitter, Duration::from_secs(3));
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert_eq!(t.region, Region::Europe);
        assert_eq!((t.payload_url.as_ref(), t.load_url.as_ref()), (None, None));
    }

    #[test]
    fn every_field_is_read() {
        let t = &parse(&format!(
            "{ONE}method = \"head\"\nexpected_status = 204\npayload_url = \"http://h/1mb\"\n\
             load_url = \"http://h/load\"\ninterval = \"1m\"\njitter = \"0s\"\ntimeout = \"2s\"\n"
        ))
        .unwrap()[0];
        assert_eq!(t.method, Method::HEAD);
        assert_eq!(t.expected_status, 204);
        assert_eq!(t.payload_url.as_ref().unwrap().path(), "/1mb");
        assert_eq!(t.load_url.as_ref().unwrap().host(), Some("h"));
        assert_eq!(
            (t.interval, t.jitter, t.timeout),
            (
                Duration::from_secs(60),
                Duration::ZERO,
                Duration::from_secs(2)
            )
        );
    }

    #[test]
    fn bad_files_say_which_target_and_why() {
        let bad = |extra: &str| parse(&format!("{ONE}{extra}\n")).unwrap_err().to_string();
        assert!(bad("color = 1").contains("unknown field"));
        assert!(bad("expected_status = 700").contains("not within 100..=599"));
        assert!(bad("timeout = \"0s\"").contains("above zero"));
        assert!(bad("interval = \"5\"").contains("no unit"));
        assert!(bad("load_url = \"ftp://h/load\"").contains("http:// or https://"));
        assert!(bad("method = \"GE T\"").contains("not an HTTP method"));
        assert!(bad(ONE).contains("listed twice"));
        let asia = ONE.replace("europe", "mars");
        assert!(
            parse(&asia)
                .unwrap_err()
                .to_string()
                .contains("\"checkout\"")
        );
        assert!(matches!(parse(""), Err(TargetsError::Empty)));
    }
}
