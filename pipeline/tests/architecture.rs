//! The invariants of ARCHITECTURE.md that reading the source can check, checked on every
//! test run so they stay true. Each test names the invariant it keeps.

use std::path::Path;

/// Every `.rs` file of the workspace, as (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    let root = testkit::repo_root();
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (relative(&root, &path), text)
        })
        .collect()
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The lines of `text` that contain any of `needles`, as `path:line: text`.
fn hits(path: &str, text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| needles.iter().any(|n| line.contains(n)))
        .map(|(i, line)| format!("{path}:{}: {}", i + 1, line.trim()))
        .collect()
}

/// `text` without its unit tests, which may build what production code must not.
fn production(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Library code: a crate's `src/` without its binaries' `main.rs` and `bin/`.
fn is_library(path: &str) -> bool {
    path.contains("/src/") && !path.ends_with("/main.rs") && !path.contains("/src/bin/")
}

/// "The entry format is defined only in `entry.rs`": no other file names an entry field,
/// a dead-letter field or the format tag. The field name constants are private to
/// `pipeline::entry`, so the compiler keeps the names out; this catches the literals.
#[test]
fn no_file_but_pipeline_entry_names_a_stream_entry_field() {
    // Distinctive anywhere: the traceparent field, the format tag, the dead-letter prefix.
    const ANYWHERE: &[&str] = &["\"tp\"", "\"queue.v1\"", "\"raw.", "FIELD_", "FORMAT_V1"];
    // Short or common words: field names only as stream fields are written, in the files
    // that write or read streams.
    const NEAR_STREAMS: &[&str] = &[
        "(\"f\",",
        "(\"b\",",
        "get(\"f\")",
        "get(\"b\")",
        "\"*\", \"f\"",
        "\"*\", \"b\"",
        "(\"id\"",
        "(\"reason\"",
        "(\"deliveries\"",
        "\"id\" =>",
        "\"reason\" =>",
        "\"deliveries\" =>",
    ];
    const STREAM_CALLS: &[&str] = &["xadd", "XADD", "xrange", "XRANGE", "xread", "XREAD"];
    let mut found = Vec::new();
    for (path, text) in sources() {
        if path == "pipeline/src/entry.rs" || path == "pipeline/tests/architecture.rs" {
            continue;
        }
        found.extend(hits(&path, &text, ANYWHERE));
        if STREAM_CALLS.iter().any(|c| text.contains(c)) {
            found.extend(hits(&path, &text, NEAR_STREAMS));
        }
    }
    assert!(
        found.is_empty(),
        "use pipeline::entry::{{Fields, DeadLetterFields}} instead:\n{}",
        found.join("\n")
    );
}

/// "Which errors are retriable only in `retry.rs`": no other library code inspects a
/// Redis or ClickHouse error's kind, code or text to decide what to do.
#[test]
fn errors_are_classified_only_in_pipeline_retry() {
    const NEEDLES: &[&str] = &[
        ".kind() {",
        ".kind() ==",
        "clickhouse_code(",
        "BadResponse(",
        ".details().starts_with(\"OOM",
        "is_redis_oom(",
    ];
    let mut found = Vec::new();
    for (path, text) in sources() {
        if is_library(&path) && path != "pipeline/src/retry.rs" {
            // File-system errors are not the services' to classify.
            let redis_or_clickhouse = hits(&path, production(&text), NEEDLES)
                .into_iter()
                .filter(|line| !line.contains("io::ErrorKind"));
            found.extend(redis_or_clickhouse);
        }
    }
    assert!(
        found.is_empty(),
        "classify with pipeline::retry instead:\n{}",
        found.join("\n")
    );
}

/// "Nothing in `pipeline` reads environment variables except `telemetry`", and "nothing
/// below `config.rs` reads environment variables" in the services.
#[test]
fn only_config_and_telemetry_read_the_environment() {
    let mut found = Vec::new();
    for (path, text) in sources() {
        let allowed = path.ends_with("/config.rs") || path == "pipeline/src/telemetry.rs";
        if is_library(&path) && !path.starts_with("testkit/") && !allowed {
            found.extend(hits(&path, production(&text), &["env::var", "env::vars"]));
        }
    }
    assert!(
        found.is_empty(),
        "read settings in config.rs and pass them down:\n{}",
        found.join("\n")
    );
}

/// "The gateway never talks to ClickHouse" and "the reporter only reads ClickHouse; every
/// query it runs is in `queries.rs`".
#[test]
fn only_the_consumer_and_the_reporter_use_clickhouse() {
    let root = testkit::repo_root();
    let manifest = std::fs::read_to_string(root.join("gateway/Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("clickhouse"),
        "the gateway depends on a ClickHouse client"
    );
    let mut found = Vec::new();
    for (path, text) in sources() {
        if path.starts_with("reporter/src/") && path != "reporter/src/fetch.rs" {
            found.extend(hits(
                &path,
                &text,
                &[".query(", ".insert::<", "client.insert("],
            ));
        }
    }
    assert!(
        found.is_empty(),
        "the reporter's ClickHouse I/O belongs in fetch.rs:\n{}",
        found.join("\n")
    );
}

/// "One `thiserror` enum per boundary; `anyhow` only in binaries and tests": no library
/// code of the services and shared crates names `anyhow`, so every error a caller gets is a
/// type it can match on.
#[test]
fn anyhow_is_only_in_binaries_and_tests() {
    const CRATES: &[&str] = &["consumer/", "reporter/", "gateway/", "pipeline/", "client/"];
    let mut found = Vec::new();
    for (path, text) in sources() {
        if is_library(&path) && CRATES.iter().any(|c| path.starts_with(c)) {
            found.extend(hits(&path, production(&text), &["anyhow"]));
        }
    }
    assert!(
        found.is_empty(),
        "return the module's thiserror enum instead:\n{}",
        found.join("\n")
    );
}
