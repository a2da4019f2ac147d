//! The tonic server: the ingest API, `grpc.health.v1` and reflection (v1 and v1alpha, the
//! latter for grpcurl 1.8.6) behind [`crate::edge`]. [`Gateway::build`] does everything
//! that can fail at startup; [`Gateway::run_until_stopped`] serves until the shutdown future
//! completes, then drains.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use pipeline::proto::{FILE_DESCRIPTOR_SET, ingest::PublishResponse};
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    body::Body,
    codec::CompressionEncoding,
    transport::{Identity, Server, ServerTlsConfig, server::Router},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{
    layer::util::{Identity as NoLayer, Stack},
    util::MapResponseLayer,
};
use tracing::Instrument;

use crate::{
    auth::{AuthError, LiveStores, Store},
    backpressure::Backpressure,
    budget::Budget,
    codec::ingest_service_server::{IngestService, IngestServiceServer},
    config::Settings,
    edge::{EdgeConfig, EdgeLayer, Held, Reflection},
    error::{self, ApiError},
    idle::TrackLayer,
    ingest::Ingest,
    listener,
    queue::Queue,
    quota::Quotas,
    wire::RawRequest,
};

/// The `IngestService` implementation: [`Ingest`] for the store that [`crate::edge`]
/// authenticated.
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
}

/// The store the edge authenticated; a call that did not pass the edge has none.
fn store_of<T>(request: &Request<T>) -> Result<Store, Status> {
    request
        .extensions()
        .get::<Store>()
        .cloned()
        .ok_or_else(|| ApiError::from(AuthError::Missing).into())
}

/// Takes `bytes` more of the budget for the call's newest message, when the edge charged it.
fn hold(held: &Option<Arc<Held>>, bytes: usize) -> Result<(), ApiError> {
    held.as_ref().map_or(Ok(()), |held| held.grow(bytes))
}

/// The budget charges of the call's messages, given back as the handler answers them.
fn held_of<T>(request: &Request<T>) -> Option<Arc<Held>> {
    request.extensions().get::<Arc<Held>>().cloned()
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn publish(
        &self,
        request: Request<RawRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let span = pipeline::trace::rpc_server_span(
            <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
            "Publish",
            request.metadata().as_ref(),
        );
        let started = std::time::Instant::now();
        let result = async {
            let store = store_of(&request)?;
            // the message's charge is held until it is answered
            let held = held_of(&request);
            let response = self
                .ingest
                .publish_within(&store, request.into_inner(), |bytes| hold(&held, bytes))
                .await;
            count_for_store(&store, response.as_ref().err());
            Ok(Response::new(response?))
        }
        .instrument(span.clone())
        .await;
        record_outcome(&span, "Publish", started, result.as_ref().err());
        result
    }

    type PublishStreamStream = ResponseStream;

    /// Publishes a stream of requests: each gets exactly one response carrying its
    /// `sequence`, in request order, sent only after its events are queued.
    ///
    /// The store is authenticated at stream start by the edge, and again before the next
    /// request whenever the stores file was reloaded, so a revoked token stops a stream that
    /// is already open (its next request ends the stream with UNAUTHENTICATED). Up to `stream_max_in_flight`
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
        request: Request<tonic::Streaming<RawRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        // One SERVER span per request of the stream, each a child of the stream's
        // `traceparent`: a stream lives for hours, and one span for all of it would be
        // exported only at its end and say nothing about each request.
        let headers = request.metadata().as_ref().clone();
        let mut store = Arc::new(store_of(&request)?);
        let held = held_of(&request);
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
                let held = held.clone();
                let span = pipeline::trace::rpc_server_span(
                    <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
                    "PublishStream",
                    &headers,
                );
                let started = std::time::Instant::now();
                let work = async move {
                    let store: Arc<Store> = checked.map_err(ApiError::from)?;
                    let response = ingest
                        .publish_within(&store, item?, |bytes| hold(&held, bytes))
                        .await;
                    count_for_store(&store, response.as_ref().err());
                    if let Some(held) = held {
                        held.release_oldest();
                    }
                    Ok(response?)
                };
                async move {
                    let result = work.instrument(span.clone()).await;
                    record_outcome(&span, "PublishStream", started, result.as_ref().err());
                    result
                }
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

/// `gateway_store_requests_total{store, outcome}`: each request of an authenticated store,
/// `ok` or the refusal's reason label, so that a store refused for minutes can be told
/// apart from one refused now and then (the `StoreRefused` alert). One series per store and
/// outcome: the stores file bounds the cardinality (strangers are refused before this).
fn count_for_store(store: &Store, failure: Option<&ApiError>) {
    let outcome = failure.map_or("ok", |e| e.reason().metric_label());
    metrics::counter!("gateway_store_requests_total", "store" => store.id.to_string(), "outcome" => outcome)
        .increment(1);
}

/// The outcome of one call (a `PublishStream` request counts as one): its SERVER span's
/// status and `gateway_rpc_duration_seconds{method, code}`.
fn record_outcome(
    span: &tracing::Span,
    method: &'static str,
    started: std::time::Instant,
    failure: Option<&Status>,
) {
    let (code, message) = failure.map_or((tonic::Code::Ok, ""), |s| (s.code(), s.message()));
    pipeline::trace::record_grpc_outcome(span, code as i32, message);
    metrics::histogram!("gateway_rpc_duration_seconds", "method" => method, "code" => error::code_label(code))
        .record(started.elapsed().as_secs_f64());
}

/// The tasks that watch Redis, aborted when the gateway stops or is dropped, so that a stopped
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

/// Why the gateway could not start, or stopped serving: each is reported by `main` and
/// ends the process.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    StoresFile(#[from] crate::auth::StoresFileError),
    #[error(
        "GATEWAY_MAX_IN_FLIGHT_BYTES ({budget}) is below the cost of one largest request ({largest} bytes: GATEWAY_MAX_MESSAGE_BYTES and GATEWAY_MAX_EVENTS), which would be refused forever"
    )]
    BudgetBelowOneRequest { budget: usize, largest: usize },
    #[error("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together")]
    TlsHalf,
    #[error("reading tls {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("configuring tls: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("configuring redis: {0}")]
    Redis(#[source] fred::error::Error),
    /// The reflection services cannot be built from the descriptor set.
    #[error(transparent)]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The listener's address cannot be read.
    #[error(transparent)]
    Listener(#[from] std::io::Error),
    /// The server failed while serving.
    #[error(transparent)]
    Serve(#[from] tonic::transport::Error),
    /// The server's task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The TLS identity, when both halves are configured.
fn tls_config(settings: &Settings) -> Result<Option<ServerTlsConfig>, ServerError> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(ServerError::TlsHalf),
    };
    let read = |path: &std::path::Path, what: &'static str| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let identity = Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}

/// The response mapping of every call: tonic's own oversize answers as RESOURCE_EXHAUSTED.
type Oversize = fn(http::Response<Body>) -> http::Response<Body>;

/// The layers around every service: the idle tracking innermost (so that only calls the edge
/// let through count as use of a connection: a stranger's refused calls do not keep it
/// open), then the edge, the oversize rewrite outside.
type Layers = Stack<TrackLayer, Stack<EdgeLayer, Stack<MapResponseLayer<Oversize>, NoLayer>>>;

/// A gateway ready to serve: settings checked, stores loaded, TLS read, Redis client and
/// watchers started, services and layers assembled.
pub struct Gateway {
    listener: TcpListener,
    router: Router<Layers>,
    health: HealthReporter,
    watchers: Watchers,
    max_connections: usize,
    idle_timeout: Duration,
    shutdown_grace: Duration,
}

impl Gateway {
    /// Everything that can fail at startup, in the order that fails fastest: stores file,
    /// budget, TLS, then Redis (which may be down: the gateway starts NOT_SERVING).
    pub async fn build(listener: TcpListener, settings: Settings) -> Result<Gateway, ServerError> {
        let stores = Arc::new(LiveStores::load(&settings.stores_file)?);
        if stores.current().is_empty() {
            tracing::warn!(file = %settings.stores_file.display(), "stores file lists no store: every call will be refused");
        }
        let edge = Arc::new(EdgeConfig {
            stores: stores.clone(),
            reflection: settings.reflection,
            budget: Budget::new(settings.max_in_flight_bytes),
            max_events: settings.max_events_per_request,
            max_message_bytes: settings.max_message_bytes,
            message_timeout: settings.request_timeout,
        });
        if settings.max_in_flight_bytes < edge.largest_message_cost() {
            return Err(ServerError::BudgetBelowOneRequest {
                budget: settings.max_in_flight_bytes,
                largest: edge.largest_message_cost(),
            });
        }
        // before touching Redis, so that a bad certificate fails startup at once
        let mut builder = Server::builder();
        if let Some(tls) = tls_config(&settings)? {
            builder = builder.tls_config(tls).map_err(ServerError::Tls)?;
            tracing::info!("serving tls");
        }
        let queue =
            Queue::connect(&settings.redis, settings.replication()).map_err(ServerError::Redis)?;
        if !queue.wait_connected(Duration::from_secs(3)).await {
            tracing::warn!("redis is not reachable yet; answering UNAVAILABLE until it is");
        }
        let quotas = Arc::new(Quotas::new(&stores.current()));
        let backpressure =
            Backpressure::new(settings.backpressure(), settings.redis.shards().len());
        let ingest = Ingest::new(
            queue.clone(),
            settings.limits(),
            settings.bounds(),
            quotas.clone(),
            backpressure.clone(),
        );
        let api = IngestApi::new(
            ingest,
            stores.clone(),
            usize::from(settings.stream_max_in_flight),
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        let watch_health = health.clone();
        let watchers = Watchers {
            health_watch: tokio::spawn(queue.clone().watch(Duration::from_secs(1), move |up| {
                let health = watch_health.clone();
                async move {
                    set_health(
                        &health,
                        if up {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        },
                    )
                    .await;
                }
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
        let (reflection_v1, reflection_v1alpha) = match settings.reflection {
            Reflection::Off => (None, None),
            Reflection::Public | Reflection::Authenticated => (
                Some(reflection().build_v1()?),
                Some(reflection().build_v1alpha()?),
            ),
        };
        let ingest_service = IngestServiceServer::new(api)
            .max_decoding_message_size(settings.max_message_bytes)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        // Responses go uncompressed, whatever the client accepts: an acknowledgement is a few
        // bytes, and tonic sets up a compressor per message, which cost a third of the
        // gateway's CPU under load (perf, docs/BENCHMARKS.md) to save nothing.
        let oversize: Oversize = error::resource_exhausted_for_oversize::<Body>;
        let router = builder
            .layer(MapResponseLayer::new(oversize))
            .layer(EdgeLayer(edge))
            .layer(TrackLayer)
            .timeout(settings.request_timeout)
            .concurrency_limit_per_connection(settings.max_requests_per_connection as usize)
            .max_concurrent_streams(Some(settings.max_concurrent_streams))
            .http2_max_header_list_size(Some(settings.max_header_list_bytes))
            .http2_keepalive_interval(Some(settings.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(settings.http2_keepalive_timeout))
            .max_connection_age(settings.max_connection_age)
            .max_connection_age_grace(settings.request_timeout)
            .add_service(health_service)
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(ingest_service);
        Ok(Gateway {
            listener,
            router,
            health,
            watchers,
            max_connections: settings.max_connections as usize,
            idle_timeout: settings.idle_timeout,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight calls finish within the grace
    /// period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Gateway {
            listener,
            router,
            health,
            watchers,
            max_connections,
            idle_timeout,
            shutdown_grace,
        } = self;
        let addr = listener.local_addr()?;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = router.serve_with_incoming_shutdown(
            listener::incoming(listener, max_connections, idle_timeout),
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
        tracing::info!(grace = ?shutdown_grace, "draining in-flight calls");
        // NOT_SERVING tells load balancers to send new calls elsewhere while these drain; the
        // watch is stopped first so that it cannot flip the status back
        watchers.health_watch.abort();
        set_health(&health, ServingStatus::NotServing).await;
        let _ = stop_tx.send(true);
        match tokio::time::timeout(shutdown_grace, server).await {
            Ok(result) => Ok(result??),
            Err(_) => {
                tracing::warn!("grace period over; exiting with calls in flight");
                Ok(())
            }
        }
    }
}

/// Sets the status of the whole server and of the ingest service.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Runs the gateway on `listener` until `shutdown` completes: [`Gateway::build`], then
/// [`Gateway::run_until_stopped`].
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Gateway::build(listener, settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}
