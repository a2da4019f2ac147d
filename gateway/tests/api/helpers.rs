//! `spawn_gateway` and what the tests need around it: stores, events, clients, stream reads.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use fred::interfaces::{ClientLike, StreamsInterface};
use pipeline::{
    entry::Fields,
    proto::{
        ingest::{
            Event, ProbeResult, PublishRequest, Region, event::Payload,
            ingest_service_client::IngestServiceClient,
        },
        queue::QueuedBatch,
    },
};
use tonic::{Request, transport::Channel};

/// Store `eu-1` in Europe, no quota.
pub const EU_TOKEN: &str = "token-eu-1";
/// Store `asia-1` in Asia, no quota.
pub const ASIA_TOKEN: &str = "token-asia-1";
/// Store `limited` in Europe, 100 events per second.
pub const LIMITED_TOKEN: &str = "token-limited";
pub const LIMITED_QUOTA: u32 = 100;
/// Store `heavy` in Europe, no event quota, 20,000 bytes per second.
pub const HEAVY_TOKEN: &str = "token-heavy";
pub const HEAVY_BYTE_QUOTA: u64 = 20_000;

fn stores_toml() -> String {
    let store = |id: &str, region: &str, token: &str, extra: &str| {
        format!(
            "[[store]]\nid = \"{id}\"\nregion = \"{region}\"\ntoken_sha256 = \"{}\"\n{extra}",
            gateway::auth::token_sha256(token)
        )
    };
    [
        store("eu-1", "europe", EU_TOKEN, ""),
        store("asia-1", "asia", ASIA_TOKEN, ""),
        store(
            "limited",
            "europe",
            LIMITED_TOKEN,
            &format!("max_events_per_second = {LIMITED_QUOTA}\n"),
        ),
        store(
            "heavy",
            "europe",
            HEAVY_TOKEN,
            &format!("max_bytes_per_second = {HEAVY_BYTE_QUOTA}\n"),
        ),
    ]
    .concat()
}

/// A gateway running in this process on a free port, writing a fresh stream key.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub redis_url: String,
    pub stream_key: String,
    server: gateway::Background,
    _dir: tempfile::TempDir,
}

/// Starts a gateway against `redis_url` with the test stores and extra flags.
pub async fn spawn_gateway(redis_url: &str, extra: &[&str]) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores.toml");
    std::fs::write(&stores, stores_toml()).unwrap();
    let stream_key = testkit::unique_name("api");
    let mut args = vec![
        "gateway".to_owned(),
        "--stores-file".into(),
        stores.display().to_string(),
        "--redis-url".into(),
        redis_url.into(),
        "--stream-key".into(),
        stream_key.clone(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let settings = gateway::Settings::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = gateway::Background::spawn(listener, settings).unwrap();
    TestGateway {
        addr: server.addr(),
        redis_url: redis_url.to_owned(),
        stream_key,
        server,
        _dir: dir,
    }
}

impl TestGateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the gateway; the server may still be binding its services, so retry.
    pub async fn channel(&self) -> Channel {
        let url = self.url();
        testkit::eventually(Duration::from_secs(10), "the gateway to accept", || {
            let url = url.clone();
            async move { Ok(Some(Channel::from_shared(url)?.connect().await?)) }
        })
        .await
        .unwrap()
    }

    pub async fn client(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel().await)
    }

    /// `XLEN` of the gateway's stream.
    pub async fn stream_len(&self) -> u64 {
        let client = redis_client(&self.redis_url).await;
        client.xlen(&self.stream_key).await.unwrap()
    }

    /// Every batch in the stream, decoded, in stream order.
    pub async fn batches(&self) -> Vec<QueuedBatch> {
        stream_batches(&self.redis_url, &self.stream_key).await
    }

    /// Sends the shutdown signal and waits until the server has drained.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(self.server.shutdown().await?)
    }
}

/// Every batch in a stream, decoded, in stream order.
pub async fn stream_batches(redis_url: &str, stream_key: &str) -> Vec<QueuedBatch> {
    let client = redis_client(redis_url).await;
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> = client
        .xrange_values(stream_key, "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| Fields::from_pairs(fields).decode().unwrap())
        .collect()
}

pub async fn redis_client(url: &str) -> fred::clients::Client {
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(url).unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    client
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A valid probe result from `store_id` in `region`, with a fresh event id. Probes are the
/// smallest valid events, which keeps the tests' requests small.
pub fn probe(store_id: &str, region: Region) -> Event {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now - 1,
            nanos: 0,
        }),
        store_id: store_id.to_owned(),
        region: region as i32,
        payload: Some(Payload::Probe(ProbeResult {
            target: "https://shop.example/health".into(),
            up: true,
            status_code: 200,
            response_time_ms: 12,
            network_latency_ms: 3,
            bandwidth_bytes_per_second: 1_000_000,
            cpu_load: 0.25,
            ..ProbeResult::default()
        })),
    }
}

/// `n` valid events of store `eu-1`.
pub fn eu_events(n: usize) -> Vec<Event> {
    (0..n).map(|_| probe("eu-1", Region::Europe)).collect()
}

pub fn request(sequence: u64, events: Vec<Event>) -> PublishRequest {
    PublishRequest {
        sequence,
        events,
        all_or_nothing: false,
    }
}

/// The code and message of a failed call, for assertions that print both.
pub fn code_of<T: std::fmt::Debug>(result: &Result<T, tonic::Status>) -> tonic::Code {
    match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// How a raw gRPC frame's payload is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// `payload` compressed this way.
    pub fn compress(self, payload: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        match self {
            Encoding::Identity => payload.to_vec(),
            Encoding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                encoder.write_all(payload).unwrap();
                encoder.finish().unwrap()
            }
            Encoding::Zstd => zstd::encode_all(payload, 19).unwrap(),
        }
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Zstd => Some("zstd"),
        }
    }
}

/// One `Publish` as raw HTTP/2 (so the frame's compressed flag and payload can be anything):
/// `payload` is already compressed with `encoding`; `token` goes in `authorization`.
pub fn raw_publish_request(
    url: &str,
    payload: &[u8],
    encoding: Encoding,
    token: Option<&str>,
) -> http::Request<tonic::body::Body> {
    use bytes::BufMut as _;
    let mut frame = bytes::BytesMut::with_capacity(5 + payload.len());
    frame.put_u8(u8::from(encoding != Encoding::Identity));
    frame.put_u32(payload.len() as u32);
    frame.put_slice(payload);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{url}/marketplace.ingest.v1.IngestService/Publish"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(name) = encoding.header() {
        request = request.header("grpc-encoding", name);
    }
    request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            frame.freeze(),
        )))
        .unwrap()
}

/// A channel to `url`, retried while the server starts.
pub async fn connect(url: &str) -> Channel {
    testkit::eventually(Duration::from_secs(10), "the gateway to accept", || {
        let url = url.to_owned();
        async move { Ok(Some(Channel::from_shared(url)?.connect().await?)) }
    })
    .await
    .unwrap()
}

/// Sends `request` on `channel` and returns the gRPC status it was answered with (OK too).
pub async fn raw_status(
    channel: Channel,
    request: http::Request<tonic::body::Body>,
) -> tonic::Status {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = match channel.oneshot(request).await {
        Ok(response) => response,
        Err(err) => return tonic::Status::unavailable(format!("transport: {err}")),
    };
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    match response.into_body().collect().await {
        Ok(body) => body
            .trailers()
            .and_then(tonic::Status::from_header_map)
            .unwrap_or_else(|| tonic::Status::unknown("no grpc-status in trailers")),
        Err(err) => tonic::Status::unavailable(format!("body: {err}")),
    }
}

/// [`raw_publish_request`] on a fresh connection to `url`, returning the answer's status.
pub async fn raw_publish_to(
    url: &str,
    payload: &[u8],
    encoding: Encoding,
    token: Option<&str>,
) -> tonic::Status {
    let channel = connect(url).await;
    raw_status(channel, raw_publish_request(url, payload, encoding, token)).await
}

/// The real `gateway` binary in a process of its own, so that its memory can be read, on a
/// free port, with the test stores and a fresh stream key; killed on drop.
///
/// `HOSTILE_GATEWAY_BIN` names another binary to attack instead (an older build, to measure
/// the figures before a change). It runs under a 4 GiB address-space limit (`prlimit --as`): a gateway that tries to
/// hold more aborts instead of taking the shared test machine down with it.
pub struct GatewayProcess {
    pub url: String,
    pub redis_url: String,
    pub stream_key: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Address space the binary may reserve; far above the 128 MiB the hostile tests allow.
const PROCESS_ADDRESS_SPACE: u64 = 4 << 30;

impl GatewayProcess {
    pub async fn spawn(extra: &[&str]) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let stores = dir.path().join("stores.toml");
        std::fs::write(&stores, stores_toml()).unwrap();
        let port = testkit::free_port();
        let redis_url = testkit::shared_redis().url();
        let stream_key = testkit::unique_name("hostile");
        let child = std::process::Command::new("prlimit")
            .arg(format!("--as={PROCESS_ADDRESS_SPACE}"))
            .arg("--")
            .arg(
                std::env::var_os("HOSTILE_GATEWAY_BIN")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_gateway").into()),
            )
            .arg("--stores-file")
            .arg(&stores)
            .args(["--redis-url", &redis_url])
            .args(["--stream-key", &stream_key])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let process = GatewayProcess {
            url: format!("http://127.0.0.1:{port}"),
            redis_url,
            stream_key,
            child,
            _dir: dir,
        };
        connect(&process.url).await;
        process
    }

    /// Peak resident set of the process so far (`VmHWM`), in KiB; `None` once it is gone.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        testkit::peak_rss_kib(self.child.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `XLEN` of the gateway's stream.
    pub async fn stream_len(&self) -> u64 {
        redis_client(&self.redis_url)
            .await
            .xlen(&self.stream_key)
            .await
            .unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
