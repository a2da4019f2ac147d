//! One HTTP request on a fresh connection, each phase timed apart: DNS, TCP connect, TLS
//! handshake, the response head (time to first byte), the end of the body.
//!
//! Every phase is timed from the start of the request, on one monotonic clock, so the
//! figures nest: `network_latency ≤ network_latency + tls ≤ ttfb ≤ total`. The whole request
//! runs under one timeout; when it fires, the phases reached so far keep their figures and
//! the request counts as timed out after exactly the timeout.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What one request got, as far as it went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// DNS resolution plus TCP connect.
    pub network_latency: Option<Duration>,
    /// The TLS handshake alone; `None` for `http://` or when not reached.
    pub tls_handshake: Option<Duration>,
    /// From the start to the response head.
    pub time_to_first_byte: Option<Duration>,
    /// From the start to the end of the body, or to the failure or timeout.
    pub total: Duration,
    /// The response's status, once its head arrived.
    pub status: Option<u16>,
    /// Body bytes received.
    pub body_bytes: u64,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body arrived.
    Complete,
    /// The timeout fired first; `Phases::total` is the timeout.
    TimedOut,
    /// The connection failed: refused, dropped, TLS refused, a broken response.
    Failed(String),
}

/// A finished request: how it ended, its timings, and the start of its body.
#[derive(Clone, Debug)]
pub struct Measured {
    pub outcome: Outcome,
    pub phases: Phases,
    /// At most `keep_body` bytes of the body (for the load endpoint).
    pub body: Vec<u8>,
}

/// What requests need besides the URL: the TLS trust roots.
#[derive(Clone)]
pub struct Http {
    tls: TlsConnector,
}

/// Why a request could not even start.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("no TLS trust roots: {0}")]
    NoRoots(String),
    #[error("reading CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable certificate: {problem}")]
    BadCa { path: String, problem: String },
}

impl Http {
    /// Trusts the system's roots plus the PEM certificates of `extra_ca` (a private CA, or a
    /// test's).
    pub fn new(extra_ca: Option<&std::path::Path>) -> Result<Http, MeasureError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|source| MeasureError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            let bad = |problem: String| MeasureError::BadCa {
                path: path.display().to_string(),
                problem,
            };
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        } else if added == 0 {
            return Err(MeasureError::NoRoots(
                "the system has no CA certificates and no CA file was given".into(),
            ));
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Http {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `method url` on a new connection and reads the whole body, within `timeout`.
    pub async fn request(
        &self,
        method: &Method,
        url: &Uri,
        timeout: Duration,
        keep_body: usize,
    ) -> Measured {
        let start = Instant::now();
        let mut phases = Phases::default();
        let mut body = Vec::new();
        let run = self.run(method, url, start, &mut phases, &mut body, keep_body);
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(())) => Outcome::Complete,
            Ok(Err(problem)) => Outcome::Failed(problem),
            Err(_) => Outcome::TimedOut,
        };
        phases.total = match outcome {
            Outcome::TimedOut => timeout,
            _ => start.elapsed(),
        };
        Measured {
            outcome,
            phases,
            body,
        }
    }

    async fn run(
        &self,
        method: &Method,
        url: &Uri,
        start: Instant,
        phases: &mut Phases,
        body: &mut Vec<u8>,
        keep_body: usize,
    ) -> Result<(), String> {
        let host = url.host().ok_or("the URL has no host")?;
        // `[::1]` in a URL is `::1` to the resolver and to TLS
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let https = url.scheme_str() == Some("https");
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let connected = start.elapsed();
        phases.network_latency = Some(connected);
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let authority = url.authority().map_or(host, |a| a.as_str());
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, authority)
            .header(
                header::USER_AGENT,
                concat!("marketplace-prober/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        if https {
            let name = ServerName::try_from(bare.to_owned())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
            phases.tls_handshake = Some(start.elapsed() - connected);
            exchange(TokioIo::new(tls), request, start, phases, body, keep_body).await
        } else {
            exchange(TokioIo::new(tcp), request, start, phases, body, keep_body).await
        }
    }
}

/// HTTP/1.1 over an open connection: one request, the head, the body.
async fn exchange<I>(
    io: I,
    request: Request<Empty<Bytes>>,
    start: Instant,
    phases: &mut Phases,
    body: &mut Vec<u8>,
    keep_body: usize,
) -> Result<(), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // the connection task ends with the exchange (or when this future is dropped at the
    // timeout, with the sender)
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        phases.time_to_first_byte = Some(start.elapsed());
        phases.status = Some(response.status().as_u16());
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                phases.body_bytes += data.len() as u64;
                let room = keep_body.saturating_sub(body.len());
                body.extend_from_slice(&data[..room.min(data.len())]);
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    result
}
