//! The real gateway binary refuses to serve unsafely: beyond loopback without TLS, or with
//! the published demo stores, unless GATEWAY_INSECURE_DEMO names the risk. Checked through
//! scripts/preflight.sh (`gateway --preflight`) and through a plain start.

use std::{path::Path, process::Command};

/// `GATEWAY_*` settings for a run of the binary; nothing inherited from this process.
fn gateway_env(listen: &str, stores: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("GATEWAY_LISTEN".to_owned(), listen.to_owned()),
        ("GATEWAY_STORES_FILE".into(), stores.display().to_string()),
        // nothing listens there: a start that got past the check would not find Redis
        ("REDIS_URL".into(), "redis://127.0.0.1:1".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Runs scripts/preflight.sh against the built binary: (success, stdout + stderr).
fn preflight(env: &[(String, String)]) -> (bool, String) {
    let script = testkit::repo_root().join("scripts/preflight.sh");
    let out = Command::new("bash")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_gateway"))
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn example_stores() -> std::path::PathBuf {
    testkit::repo_root().join("deploy/stores.example.toml")
}

/// A stores file of one store with a random token, and TLS files (only read, not used).
fn own_setup(dir: &Path) -> (std::path::PathBuf, String, String) {
    let stores = dir.join("stores.toml");
    std::fs::write(
        &stores,
        format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
            gateway::auth::token_sha256(&uuid::Uuid::new_v4().to_string())
        ),
    )
    .unwrap();
    let certs = testkit::tls::certificates(dir).unwrap();
    (
        stores,
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    )
}

#[test]
fn the_example_stores_without_tls_are_refused_beyond_loopback() {
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &example_stores(), &[]));
    assert!(!ok, "accepted: {text}");
    for reason in [
        "refusing to serve on 0.0.0.0:50051",
        "no tls",
        "published demo tokens of eu-1, eu-2, us-1, us-2, asia-1, asia-2",
        "GATEWAY_INSECURE_DEMO=i-understand-this-gateway-is-unsafe",
    ] {
        assert!(text.contains(reason), "{reason:?} missing from: {text}");
    }
}

#[test]
fn tls_alone_does_not_make_the_demo_tokens_safe_nor_own_tokens_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (own, cert, key) = own_setup(dir.path());
    let tls = [
        ("GATEWAY_TLS_CERT", cert.as_str()),
        ("GATEWAY_TLS_KEY", key.as_str()),
    ];
    let (ok, text) = preflight(&gateway_env("[::]:50051", &example_stores(), &tls));
    assert!(
        !ok && text.contains("published demo tokens") && !text.contains("no tls"),
        "{text}"
    );
    let (ok, text) = preflight(&gateway_env("10.0.1.20:50051", &own, &[]));
    assert!(
        !ok && text.contains("no tls") && !text.contains("demo tokens"),
        "{text}"
    );
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &own, &tls));
    assert!(ok && text.contains("preflight: ok"), "{text}");
    // Compose passes an unset GATEWAY_INSECURE_DEMO as empty: that is no consent, no error
    let empty = [tls[0], tls[1], ("GATEWAY_INSECURE_DEMO", "")];
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &own, &empty));
    assert!(ok && !text.contains("accepted by"), "{text}");
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &example_stores(), &empty));
    assert!(!ok && text.contains("refusing to serve"), "{text}");
}

#[test]
fn loopback_and_the_explicit_demo_setting_are_allowed_and_said_so() {
    let (ok, text) = preflight(&gateway_env("127.0.0.1:50051", &example_stores(), &[]));
    assert!(ok, "loopback refused: {text}");
    let demo = [(
        "GATEWAY_INSECURE_DEMO",
        "i-understand-this-gateway-is-unsafe",
    )];
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &example_stores(), &demo));
    assert!(ok, "demo refused: {text}");
    assert!(
        text.contains("accepted by GATEWAY_INSECURE_DEMO: no tls")
            && text.contains("accepted by GATEWAY_INSECURE_DEMO: the stores file accepts"),
        "{text}"
    );
    for wrong in ["yes", "true", "1"] {
        let (ok, text) = preflight(&gateway_env(
            "0.0.0.0:50051",
            &example_stores(),
            &[("GATEWAY_INSECURE_DEMO", wrong)],
        ));
        assert!(
            !ok && text.contains("the only accepted value is"),
            "{wrong}: {text}"
        );
    }
}

#[test]
fn preflight_also_refuses_unloadable_files_and_a_tls_setting_on_plain_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (own, cert, key) = own_setup(dir.path());
    let tls = [
        ("GATEWAY_TLS_CERT", cert.as_str()),
        ("GATEWAY_TLS_KEY", key.as_str()),
    ];
    let missing = dir.path().join("missing.toml");
    let (ok, text) = preflight(&gateway_env("127.0.0.1:50051", &missing, &[]));
    assert!(!ok && text.contains("missing.toml"), "{text}");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[[store]]\nid = 1\n").unwrap();
    let (ok, _) = preflight(&gateway_env("127.0.0.1:50051", &broken, &[]));
    assert!(!ok, "a stores file that does not load passes");
    let no_key = [
        ("GATEWAY_TLS_CERT", cert.as_str()),
        ("GATEWAY_TLS_KEY", "/nonexistent/key.pem"),
    ];
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &own, &no_key));
    assert!(!ok && text.contains("/nonexistent/key.pem"), "{text}");
    let ca = [tls[0], tls[1], ("REDIS_TLS_CA_FILE", cert.as_str())];
    let (ok, text) = preflight(&gateway_env("0.0.0.0:50051", &own, &ca));
    assert!(!ok && text.contains("is not rediss://"), "{text}");
}

/// Without --preflight the binary refuses the same way, at startup.
#[test]
fn the_gateway_itself_refuses_to_start_the_same_way() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .envs(gateway_env("0.0.0.0:0", &example_stores(), &[]))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("refusing to serve on 0.0.0.0:0"), "{text}");
}
