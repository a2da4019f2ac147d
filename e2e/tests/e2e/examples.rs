//! The Python (grpcio) and Node (@grpc/grpc-js) examples in `examples/` run against the real
//! gateway, over plaintext and over TLS: each publishes a batch, reads a BadRequest and
//! retries RESOURCE_EXHAUSTED after its RetryInfo, exiting non-zero if anything differs
//! from docs/CLIENTS.md. scripts/install.sh installs grpcio and the npm packages.

use std::{path::Path, process::Command};

use crate::helpers::*;

const TOKEN: &str = "examples-token";
/// Small, so that the examples' third step meets the quota.
const QUOTA: u32 = 10;

fn stores() -> String {
    format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\nmax_events_per_second = {QUOTA}\n",
        gateway::auth::token_sha256(TOKEN)
    )
}

/// Runs `program args` with the example's environment; panics with its output on failure.
fn run_example(program: &str, args: &[&str], addr: &str, ca: Option<&Path>, env: &[(&str, &str)]) {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("GATEWAY_ADDR", addr)
        .env("STORE_ID", "eu-1")
        .env("STORE_TOKEN", TOKEN)
        .env("STORE_QUOTA", QUOTA.to_string())
        .envs(env.iter().copied());
    if let Some(ca) = ca {
        command.env("GATEWAY_CA", ca);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    assert!(text.contains("example: ok"), "{text}");
    assert!(
        text.contains("retrying after"),
        "the quota step retried: {text}"
    );
}

/// A self-signed certificate for localhost and 127.0.0.1 (cert path, key path).
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (scripts/install.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_examples_run_against_the_gateway() {
    let root = testkit::repo_root();
    let redis = testkit::shared_redis();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let stubs = dir.path().join("gen");
    let status = Command::new("bash")
        .arg(root.join("examples/python/generate.sh"))
        .arg(&stubs)
        .status()
        .unwrap();
    assert!(status.success(), "generating the Python stubs");
    let python = root.join("examples/python/publish.py");
    let node = root.join("examples/node/publish.js");
    let pythonpath = stubs.display().to_string();

    let plain = start_gateway(
        &redis.url(),
        &testkit::unique_name("examples"),
        &stores(),
        &[],
    )
    .await;
    let tls = start_gateway(
        &redis.url(),
        &testkit::unique_name("examples-tls"),
        &stores(),
        &["--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
    let tls_addr = format!("localhost:{}", tls.addr.port());
    let cases = [
        (plain.addr.to_string(), None),
        (tls_addr, Some(Path::new(&cert))),
    ];
    for (addr, ca) in &cases {
        let py = python.display().to_string();
        let js = node.display().to_string();
        tokio::task::block_in_place(|| {
            run_example("python3", &[&py], addr, *ca, &[("PYTHONPATH", &pythonpath)]);
            run_example("node", &[&js], addr, *ca, &[]);
        });
    }
}
