//! The tonic server: the ingest API, `grpc.health.v1` and reflection (v1 and v1alpha, the
//! latter for grpcurl 1.8.6), serving until the shutdown future completes.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use pipeline::proto::{
    FILE_DESCRIPTOR_SET,
    ingest::{
        PublishRequest, PublishResponse,
        ingest_service_server::{IngestService, IngestServiceServer},
    },
};
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    codec::CompressionEncoding,
    transport::{Identity, Server, ServerTlsConfig},
};
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::{
    auth::{LiveStores, Store},
    backpressure::Backpressure,
    config::Settings,
    error::ApiError,
    ingest::Ingest,
    queue::Queue,
    quota::Quotas,
};

/// The `IngestService` implementation: authentication, then [`Ingest`].
#[derive(Clone)]
pub struct IngestApi {
    /// Behind an `Arc` because every request of a stream holds it while in flight.
    ingest: Arc<Ingest>,
    /// The stores file in force; reloaded underneath us.
    stores: Arc<LiveStores>,
    /// Requests of one `PublishStream` call processed concurrently; bounds the memory and
    /// Redis work one client can pin with a single stream.
    stream_max_in_flight: usize,
}

impl IngestApi {
    pub fn new(ingest: Ingest, stores: Arc<LiveStores>, stream_max_in_flight: usize) -> IngestApi {
        IngestApi {
            ingest: Arc::new(ingest),
            stores,
            stream_max_in_flight: stream_max_in_flight.max(1),
        }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<Store, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        Ok(self.stores.authenticate(header).map_err(ApiError::from)?)
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let span = pipeline::trace::rpc_server_span(
            <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
            "Publish",
            request.metadata().as_ref(),
        );
        let started = std::time::Instant::now();
        let result = async {
            let store = self.authenticate(&request)?;
            let response = self.ingest.publish(&store, request.into_inner()).await?;
            Ok(Response::new(response))
        }
        .instrument(span.clone())
        .await;
        let code = result
            .as_ref()
            .map_or_else(|s: &Status| s.code(), |_| tonic::Code::Ok);
        span.record("rpc.grpc.status_code", code as i64);
        metrics::histogram!("gateway_rpc_duration_seconds", "method" => "Publish", "code" => code_label(code))
            .record(started.elapsed().as_secs_f64());
        result
    }

    type PublishStreamStream = ResponseStream;

    /// Publishes a stream of requests: each gets exactly one response carrying its
    /// `sequence`, in request order, sent only after its events are queued.
    ///
    /// The store is authenticated at stream start, and again before the next request
    /// whenever the stores file was reloaded, so a revoked token stops a stream that is
    /// already open (its next request ends the stream with UNAUTHENTICATED). Up to `stream_max_in_flight`
    /// requests are validated and written concurrently; `buffered` keeps their responses in
    /// request order.
    ///
    /// **The stream ends with the status of the first request that fails** (invalid with
    /// `all_or_nothing`, over quota, overloaded, Redis unavailable, undecodable). Carrying on
    /// past a failure would leave a gap in the acknowledged sequences that a client could
    /// easily miss; ending the stream makes the rule simple: every response received is an
    /// acknowledgement, every request before the failing one was queued, and the client
    /// resends from the failing request on (after the status's RetryInfo delay, if any).
    /// Requests after it that were already in flight may have been queued too; resending
    /// them is safe because their event ids collapse duplicates downstream.
    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        // One SERVER span for the whole stream; each request's PRODUCER span is its child.
        let span = pipeline::trace::rpc_server_span(
            <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
            "PublishStream",
            request.metadata().as_ref(),
        );
        let mut store = Arc::new(self.authenticate(&request)?);
        let authorization = request.metadata().get("authorization").cloned();
        let stores = self.stores.clone();
        let mut generation = stores.generation();
        let ingest = self.ingest.clone();
        let mut failed = false;
        let responses = request
            .into_inner()
            .map(move |item| {
                let ingest = ingest.clone();
                let checked = if stores.generation() == generation {
                    Ok(store.clone())
                } else {
                    generation = stores.generation();
                    stores
                        .authenticate(authorization.as_ref().map(|v| v.as_bytes()))
                        .map(|s| {
                            store = Arc::new(s);
                            store.clone()
                        })
                };
                async move {
                    let store: Arc<Store> = checked.map_err(ApiError::from)?;
                    Ok(ingest.publish(&store, item?).await?)
                }
                .instrument(span.clone())
            })
            .buffered(self.stream_max_in_flight)
            .take_while(move |result: &Result<PublishResponse, Status>| {
                let go_on = !failed;
                failed |= result.is_err();
                futures::future::ready(go_on)
            });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// The tasks that watch Redis, aborted when `run` returns or is dropped, so that a stopped
/// gateway (a test's, say) leaves nothing polling Redis.
struct Watchers {
    /// Pings Redis every second and sets the health status.
    health_watch: tokio::task::JoinHandle<()>,
    /// Samples backlog and memory for [`Backpressure`].
    sampler: tokio::task::JoinHandle<()>,
    /// Reloads the stores file on SIGHUP and on change.
    stores_reload: tokio::task::JoinHandle<()>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.health_watch.abort();
        self.sampler.abort();
        self.stores_reload.abort();
    }
}

/// The TLS identity, when both halves are configured.
fn tls_config(settings: &Settings) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => anyhow::bail!("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together"),
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading tls {what} {}", path.display()))
    };
    let identity = Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}

/// Runs the gateway on `listener` until `shutdown` completes, then lets in-flight calls
/// finish within the grace period.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stores = Arc::new(LiveStores::load(&settings.stores_file)?);
    if stores.current().is_empty() {
        tracing::warn!(file = %settings.stores_file.display(), "stores file lists no store: every call will be refused");
    }
    // before touching Redis, so that a bad certificate fails startup at once
    let mut builder = Server::builder();
    if let Some(tls) = tls_config(&settings)? {
        builder = builder.tls_config(tls).context("configuring tls")?;
        tracing::info!("serving tls");
    }
    let queue = Queue::connect(&settings.redis).context("configuring redis")?;
    if !queue.wait_connected(Duration::from_secs(3)).await {
        tracing::warn!("redis is not reachable yet; answering UNAVAILABLE until it is");
    }
    let quotas = Arc::new(Quotas::new(&stores.current()));
    let backpressure = Backpressure::new(settings.backpressure(), settings.redis.shards().len());
    let ingest = Ingest::new(
        queue.clone(),
        settings.limits(),
        settings.max_events_per_request,
        quotas.clone(),
        backpressure.clone(),
    );
    let api = IngestApi::new(
        ingest,
        stores.clone(),
        usize::from(settings.stream_max_in_flight),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    let set_health = move |status: ServingStatus| {
        let health = health.clone();
        async move {
            health.set_service_status("", status).await;
            health
                .set_service_status(
                    <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
        }
    };
    let watch_health = set_health.clone();
    let watchers = Watchers {
        health_watch: tokio::spawn(queue.clone().watch(Duration::from_secs(1), move |up| {
            watch_health(if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            })
        })),
        sampler: tokio::spawn(backpressure.run(queue.client().clone(), queue.shards().clone())),
        stores_reload: tokio::spawn(
            stores.watch(settings.stores_reload_interval, move |s| quotas.update(s)),
        ),
    };

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let ingest_service = IngestServiceServer::new(api)
        .max_decoding_message_size(settings.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd);

    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = builder
        .layer(tower::util::MapResponseLayer::new(
            resource_exhausted_for_oversize::<tonic::body::Body>,
        ))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(256))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(ingest_service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop_rx.changed().await;
            },
        );
    tracing::info!(%addr, "gateway listening");
    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => return Ok(result??),
        () = shutdown => {}
    }
    tracing::info!(grace = ?settings.shutdown_grace, "draining in-flight calls");
    // NOT_SERVING tells load balancers to send new calls elsewhere while these drain; the
    // watch is stopped first so that it cannot flip the status back
    watchers.health_watch.abort();
    set_health(ServingStatus::NotServing).await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(settings.shutdown_grace, server).await {
        Ok(result) => Ok(result??),
        Err(_) => {
            tracing::warn!("grace period over; exiting with calls in flight");
            Ok(())
        }
    }
}

/// tonic answers a message over the decoding limit with OUT_OF_RANGE; the gRPC status code
/// guide prescribes RESOURCE_EXHAUSTED for a message larger than the configured limit (as
/// tonic already answers when the limit is hit while decompressing). Such errors come
/// before any handler runs, as trailers-only responses, so the status is in the headers.
fn resource_exhausted_for_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// A status code as a metric label: a fixed, small set of values.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::InvalidArgument => "invalid_argument",
        C::Unauthenticated => "unauthenticated",
        C::ResourceExhausted => "resource_exhausted",
        C::Unavailable => "unavailable",
        C::Internal => "internal",
        C::Cancelled => "cancelled",
        C::DeadlineExceeded => "deadline_exceeded",
        _ => "other",
    }
}
