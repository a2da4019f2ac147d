//! TLS settings fail startup with the reason. (A TLS handshake test needs a certificate
//! generator such as rcgen, which is not in the dependency tree.)

use clap::Parser;

#[tokio::test]
async fn unreadable_tls_files_fail_startup_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    std::fs::write(&stores, "").unwrap();
    let cert = dir.path().join("missing-cert.pem");
    let settings = gateway::Settings::try_parse_from([
        "gateway",
        "--stores-file",
        &stores.display().to_string(),
        "--tls-cert",
        &cert.display().to_string(),
        "--tls-key",
        &dir.path().join("missing-key.pem").display().to_string(),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = gateway::run(listener, settings, std::future::pending())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("reading tls certificate") && text.contains("missing-cert.pem"),
        "{text}"
    );
}

#[tokio::test]
async fn a_certificate_that_is_not_pem_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    std::fs::write(&stores, "").unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let settings = gateway::Settings::try_parse_from([
        "gateway",
        "--stores-file",
        &stores.display().to_string(),
        "--tls-cert",
        &cert.display().to_string(),
        "--tls-key",
        &key.display().to_string(),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = gateway::run(listener, settings, std::future::pending())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("configuring tls"), "{err:#}");
}
