//! The tonic server: the ingest API, `grpc.health.v1` and reflection (v1 and v1alpha, the
//! latter for grpcurl 1.8.6), serving until the shutdown future completes.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::Stream;
use pipeline::proto::{
    FILE_DESCRIPTOR_SET,
    ingest::{
        PublishRequest, PublishResponse,
        ingest_service_server::{IngestService, IngestServiceServer},
    },
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, codec::CompressionEncoding, transport::Server};
use tonic_health::ServingStatus;

use crate::{
    auth::{Store, Stores},
    config::Settings,
    error::ApiError,
    ingest::Ingest,
    queue::Queue,
};

/// The `IngestService` implementation: authentication, then [`Ingest`].
#[derive(Clone)]
pub struct IngestApi {
    ingest: Ingest,
    stores: Arc<Stores>,
}

impl IngestApi {
    pub fn new(ingest: Ingest, stores: Arc<Stores>) -> IngestApi {
        IngestApi { ingest, stores }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<Store, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        Ok(self
            .stores
            .authenticate(header)
            .map_err(ApiError::from)?
            .clone())
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let store = self.authenticate(&request)?;
        let response = self.ingest.publish(&store, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        _request: Request<tonic::Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        Err(Status::unimplemented(
            "PublishStream is not implemented yet; use Publish",
        ))
    }
}

/// Runs the gateway on `listener` until `shutdown` completes, then lets in-flight calls
/// finish within the grace period.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stores = Stores::load(&settings.stores_file)?;
    if stores.is_empty() {
        tracing::warn!(file = %settings.stores_file.display(), "stores file lists no store: every call will be refused");
    }
    let queue = Queue::connect(&settings.redis).context("configuring redis")?;
    if !queue.wait_connected(Duration::from_secs(3)).await {
        tracing::warn!("redis is not reachable yet; answering UNAVAILABLE until it is");
    }
    let ingest = Ingest::new(
        queue.clone(),
        settings.limits(),
        settings.max_events_per_request,
    );
    let api = IngestApi::new(ingest, Arc::new(stores));

    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(queue.watch(Duration::from_secs(1), move |up| {
        let health = health.clone();
        async move {
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            health
                .set_service_status(
                    <IngestServiceServer<IngestApi> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
        }
    }));

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
    let server = Server::builder()
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
    let _ = stop_tx.send(true);
    match tokio::time::timeout(settings.shutdown_grace, server).await {
        Ok(result) => Ok(result??),
        Err(_) => {
            tracing::warn!("grace period over; exiting with calls in flight");
            Ok(())
        }
    }
}
