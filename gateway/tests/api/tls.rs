//! TLS: bad settings fail startup with the reason, and a real handshake with certificates
//! made by the openssl command line admits trusting clients only.

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

/// (CA PEM, cert path, key path) of fresh test certificates.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let certs = testkit::tls::certificates(dir).unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    (certs.ca_pem.clone(), path(&certs.cert), path(&certs.key))
}

/// The handshake itself: a client that trusts the CA publishes over TLS; a plaintext client
/// and a client that does not trust the CA are refused before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trust_the_certificate_publish_over_tls_and_others_are_refused() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};

    use crate::helpers::*;

    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let redis = testkit::shared_redis();
    let gateway = spawn_gateway(&redis.url(), &["--tls-cert", &cert, "--tls-key", &key]).await;
    let url = format!("https://localhost:{}", gateway.addr.port());

    let trusted = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = testkit::eventually(
        std::time::Duration::from_secs(10),
        "a TLS connection",
        || {
            let (url, tls) = (url.clone(), trusted.clone());
            async move {
                Ok(Some(
                    Channel::from_shared(url)?
                        .tls_config(tls)?
                        .connect()
                        .await?,
                ))
            }
        },
    )
    .await
    .unwrap();
    let mut client =
        pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(channel);
    let response = client
        .publish(authed(EU_TOKEN, request(0, eu_events(2))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 2);
    assert_eq!(gateway.stream_len().await, 1, "queued over TLS");

    // plaintext HTTP/2 against the TLS port
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", gateway.addr.port()))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => {
            pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(channel)
                .publish(authed(EU_TOKEN, request(0, eu_events(1))))
                .await
                .is_err()
        }
    };
    assert!(refused, "a plaintext client is refused");

    // a client that trusts another CA: the handshake fails
    let other_dir = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = certificates(other_dir.path());
    let untrusted = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other_ca))
        .domain_name("localhost");
    let handshake = Channel::from_shared(url)
        .unwrap()
        .tls_config(untrusted)
        .unwrap()
        .connect()
        .await;
    assert!(handshake.is_err(), "an unknown CA fails the handshake");
    assert_eq!(gateway.stream_len().await, 1, "nothing else was queued");
}
