//! [`Client`]: delivers one [`Batch`] at a time for one store, over `PublishStream` or
//! unary `Publish`, retrying per [`crate::retry`] with the identical bytes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use pipeline::proto::ingest::PublishResponse;
use rand::Rng as _;
use tonic::{
    Code, Request, Status, Streaming,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::Channel,
};

use crate::{
    batch::Batch,
    config::SendOptions,
    error::{ConfigError, Rejected, SendError},
    metrics,
    retry::{Verdict, classify},
    wire::EncodedClient,
};

/// What the gateway said about a delivered batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Events durably queued.
    pub accepted: u32,
    /// Events refused, with why; the others of the batch were queued.
    pub rejected: Vec<Rejected>,
    /// Attempts it took, the first included.
    pub attempts: u32,
}

/// An open `PublishStream` call: requests go in by `requests`, one answer per request
/// comes back in order.
struct OpenStream {
    requests: tokio::sync::mpsc::Sender<Bytes>,
    responses: Streaming<PublishResponse>,
    next_sequence: u64,
}

/// Sends batches for one store. Cheap to create: clients made from one channel share its
/// connection. One batch at a time per client; use several for concurrency.
pub struct Client {
    rpc: EncodedClient,
    authorization: AsciiMetadataValue,
    options: SendOptions,
    /// The open stream, dropped on any error so that the retry opens a fresh one.
    stream: Option<OpenStream>,
    /// Set when streaming is off or the gateway turned out not to implement it; shared by
    /// the clients made with [`Client::with_token`], so the fallback is learnt (and
    /// logged) once.
    unary_only: Arc<AtomicBool>,
}

impl Client {
    /// A client for the store whose token is `token`.
    pub fn new(channel: Channel, token: &str, options: SendOptions) -> Result<Client, ConfigError> {
        let authorization = bearer(token)?;
        Ok(Client {
            rpc: EncodedClient::new(channel, options.compression.encoding()),
            authorization,
            unary_only: Arc::new(AtomicBool::new(!options.streaming)),
            options,
            stream: None,
        })
    }

    /// A client for the same store over another connection (another gateway, say), with
    /// the same options.
    pub fn on_channel(&self, channel: Channel) -> Client {
        Client {
            rpc: EncodedClient::new(channel, self.options.compression.encoding()),
            authorization: self.authorization.clone(),
            options: self.options.clone(),
            stream: None,
            unary_only: self.unary_only.clone(),
        }
    }

    /// A client for another store on the same connection, with the same options.
    pub fn with_token(&self, token: &str) -> Result<Client, ConfigError> {
        Ok(Client {
            rpc: self.rpc.clone(),
            authorization: bearer(token)?,
            options: self.options.clone(),
            stream: None,
            unary_only: self.unary_only.clone(),
        })
    }

    /// Delivers `batch`, retrying retriable failures with the same bytes until the policy
    /// gives up. Per-event rejections are in the [`Ack`]; a refusal of the whole batch is
    /// an error.
    pub async fn send(&mut self, batch: &Batch) -> Result<Ack, SendError> {
        let events = batch.len() as u64;
        metrics::sent(events);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let status = match self.send_once(batch).await {
                Ok(response) => {
                    let ack = Ack {
                        accepted: response.accepted,
                        rejected: response.rejected.into_iter().map(Rejected::from).collect(),
                        attempts,
                    };
                    metrics::acknowledged(u64::from(ack.accepted), ack.rejected.len() as u64);
                    return Ok(ack);
                }
                Err(status) => status,
            };
            let after = match classify(&status) {
                Verdict::Retry { after } if self.options.retry.may_retry(attempts) => after,
                Verdict::Retry { .. } => {
                    metrics::failed(events);
                    return Err(SendError::GaveUp {
                        attempts,
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Verdict::Final => {
                    metrics::failed(events);
                    return Err(SendError::refused(&status));
                }
            };
            let wait = self
                .options
                .retry
                .delay(attempts - 1, after, rand::rng().random());
            tracing::debug!(code = ?status.code(), message = status.message(), ?wait, attempts, "retrying batch");
            metrics::retried(events);
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: the gateway's answer or the status of the failure.
    pub async fn send_once(&mut self, batch: &Batch) -> Result<PublishResponse, Status> {
        if !self.unary_only.load(Ordering::Relaxed) {
            match self.send_streamed(batch).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    if !self.unary_only.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            message = status.message(),
                            "gateway does not implement PublishStream: falling back to unary Publish"
                        );
                    }
                }
                answered => return answered,
            }
        }
        let mut request = Request::new(batch.encoded().clone());
        self.decorate(request.metadata_mut());
        request.set_timeout(self.options.timeout);
        within(self.options.timeout, self.rpc.publish(request)).await
    }

    /// Sends over the open stream (opening one if needed) and waits for this batch's answer.
    async fn send_streamed(&mut self, batch: &Batch) -> Result<PublishResponse, Status> {
        let mut open = match self.stream.take() {
            Some(open) => {
                open.requests
                    .send(batch.with_sequence(open.next_sequence))
                    .await
                    .map_err(|_| Status::unavailable("request stream closed"))?;
                open
            }
            None => self.open_stream(batch.with_sequence(1)).await?,
        };
        let sequence = open.next_sequence;
        match within(self.options.timeout, open.responses.message()).await? {
            Some(response) if response.sequence == sequence => {
                open.next_sequence += 1;
                self.stream = Some(open);
                Ok(response)
            }
            Some(response) => Err(Status::internal(format!(
                "stream answered sequence {} to request {sequence}",
                response.sequence
            ))),
            None => Err(Status::unavailable("gateway closed the stream")),
        }
    }

    /// Opens a stream whose first request is `first`.
    async fn open_stream(&mut self, first: Bytes) -> Result<OpenStream, Status> {
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        // queued before the call, so a server that waits for the first message before
        // sending its headers cannot deadlock the call
        requests
            .send(first)
            .await
            .map_err(|_| Status::internal("request channel closed"))?;
        let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        self.decorate(request.metadata_mut());
        let responses = within(self.options.timeout, self.rpc.publish_stream(request))
            .await?
            .into_inner();
        Ok(OpenStream {
            requests,
            responses,
            next_sequence: 1,
        })
    }

    /// The token, and the current trace context as `traceparent` so the gateway's spans
    /// join the caller's trace.
    fn decorate(&self, metadata: &mut MetadataMap) {
        metadata.insert("authorization", self.authorization.clone());
        let mut headers = http::HeaderMap::new();
        pipeline::trace::inject_current_into_headers(&mut headers);
        if let Some(value) = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            metadata.insert("traceparent", value);
        }
    }
}

fn bearer(token: &str) -> Result<AsciiMetadataValue, ConfigError> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| ConfigError::Token)
}

/// `call`, or DEADLINE_EXCEEDED after `timeout`.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no answer within {timeout:?}")))?
}
