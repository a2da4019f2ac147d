//! The tower layer in front of every service: what a request may cost is settled here, from
//! its headers and its wire bytes, before tonic decodes anything.
//!
//! - An ingest call is authenticated from its `authorization` header; an unknown or missing
//!   token is answered at once, so a stranger's request costs its headers and nothing else
//!   (no body read, no Redis, no span with the caller's trace context). The [`Store`] travels
//!   to the handler as a request extension.
//! - Reflection is served to anyone, to authenticated stores only, or not at all
//!   ([`Reflection`]).
//! - An ingest call's body is read by [`FrameBody`], one gRPC message at a time: the bytes
//!   received are charged to the global [`Budget`] as they arrive, a compressed message is
//!   inflated here with the size limit as a hard stop, its events are counted on the wire
//!   ([`crate::wire`]) and refused above the limit, and what it will cost once decoded is
//!   charged before tonic sees it (as an uncompressed message). The charge is held
//!   ([`Held`]) until the handler has answered that message.

use std::{
    collections::VecDeque,
    future::Future,
    io::Read,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::future::{Either, Ready};
use http_body::Frame;
use pipeline::proto::ingest::Event;
use tonic::{Status, body::Body};

use crate::{
    auth::{LiveStores, Store},
    budget::{Budget, Charge},
    error::{ApiError, code_label},
    wire,
};

/// Paths of the ingest service's methods.
const INGEST_PREFIX: &str = "/marketplace.ingest.v1.IngestService/";
/// Paths of both reflection services (v1 and v1alpha).
const REFLECTION_PREFIX: &str = "/grpc.reflection.";

/// Who may use server reflection (`GATEWAY_REFLECTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reflection {
    /// Anyone who can connect: convenient on a private network.
    Public,
    /// Callers with a store token (grpcurl sends `-H` headers with reflection requests too).
    Authenticated,
    /// Not served.
    Off,
}

/// What the edge judges requests by.
pub struct EdgeConfig {
    /// The stores file in force; reloaded underneath us.
    pub stores: Arc<LiveStores>,
    pub reflection: Reflection,
    pub budget: Arc<Budget>,
    pub max_events: usize,
    pub max_message_bytes: usize,
    /// How long one message may take to arrive once its first byte has.
    pub message_timeout: Duration,
}

/// What a message of `len` bytes holding `events` events costs until it is answered: the
/// message itself (passed to tonic), tonic's copy that prost decodes, the decoded request
/// (one `Event` struct per event, plus its strings, at most the message's bytes) and the
/// encoded stream entry (at most about the message again). An estimate, but one that grows
/// with what an attacker controls: both the bytes and the number of events.
pub fn message_cost(len: usize, events: usize) -> usize {
    4 * len + events * std::mem::size_of::<Event>()
}

impl EdgeConfig {
    /// The most one message may cost: a budget smaller than this refuses the largest
    /// requests forever.
    pub fn largest_message_cost(&self) -> usize {
        message_cost(self.max_message_bytes, self.max_events)
    }

    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Store, ApiError> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        Ok(self.stores.authenticate(header)?)
    }

    /// Lets `request` through, adjusted, or says why not.
    fn admit(self: &Arc<Self>, request: &mut http::Request<Body>) -> Result<(), ApiError> {
        let path = request.uri().path();
        if path.starts_with(INGEST_PREFIX) {
            let store = self.authenticate(request.headers())?;
            let encoding = Encoding::of(request.headers());
            let held = Arc::new(Held {
                budget: self.budget.clone(),
                charges: Mutex::default(),
            });
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = Body::new(FrameBody {
                inner: body,
                encoding,
                config: self.clone(),
                held: held.clone(),
                buf: BytesMut::new(),
                receiving: self.budget.charge(),
                body: None,
                deadline: None,
                done: false,
            });
            request.extensions_mut().insert(store);
            request.extensions_mut().insert(held);
        } else if path.starts_with(REFLECTION_PREFIX)
            && self.reflection == Reflection::Authenticated
        {
            self.authenticate(request.headers())?;
        }
        Ok(())
    }
}

/// The layer that puts [`Edge`] in front of the server's routes.
#[derive(Clone)]
pub struct EdgeLayer(pub Arc<EdgeConfig>);

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            config: self.0.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    config: Arc<EdgeConfig>,
}

impl<S> tower::Service<http::Request<Body>> for Edge<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.config.admit(&mut request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(err) => {
                let status = Status::from(err);
                let method = request.uri().path().rsplit('/').next().unwrap_or_default();
                // the handler records the others; these never reach it
                metrics::histogram!("gateway_rpc_duration_seconds", "method" => method_label(method), "code" => code_label(status.code()))
                    .record(0.0);
                Either::Left(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// A method name as a metric label: a fixed set, whatever path a stranger sends.
fn method_label(method: &str) -> &'static str {
    match method {
        "Publish" => "Publish",
        "PublishStream" => "PublishStream",
        _ => "other",
    }
}

/// The budget's charges of a call's messages, oldest first, each held until the handler
/// has answered its message ([`Held::release_oldest`]) or the call ends.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    charges: Mutex<VecDeque<Charge>>,
}

impl Held {
    fn push(&self, charge: Charge) {
        self.lock().push_back(charge);
    }

    /// Takes `bytes` more for the newest message: what its validation produced (the
    /// encoded entry and the response, with a violation per invalid field) is held while
    /// Redis writes, and can be far larger than the message. Within one PublishStream the
    /// newest message is the closest guess; everything is given back when the call ends.
    pub fn grow(&self, bytes: usize) -> Result<(), ApiError> {
        let mut charges = self.lock();
        match charges.back_mut() {
            Some(charge) => charge.grow(bytes)?,
            None => charges.push_back(self.budget.take(bytes)?),
        }
        Ok(())
    }

    /// Gives back the charge of the oldest message still held: the handler answers a
    /// stream's messages in order.
    pub fn release_oldest(&self) {
        self.lock().pop_front();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Charge>> {
        self.charges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How the messages of a request are compressed (`grpc-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// No encoding, or one the gateway does not accept (tonic refuses the call before
    /// reading its body).
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    fn of(headers: &http::HeaderMap) -> Encoding {
        match headers.get("grpc-encoding").map(|v| v.as_bytes()) {
            Some(b"gzip") => Encoding::Gzip,
            Some(b"zstd") => Encoding::Zstd,
            _ => Encoding::Identity,
        }
    }
}

/// The gRPC message frame header: the compressed flag and a 4-byte big-endian length.
const HEADER: usize = 5;

/// An ingest call's request body, read one message at a time (see the module docs).
struct FrameBody {
    inner: Body,
    encoding: Encoding,
    config: Arc<EdgeConfig>,
    held: Arc<Held>,
    /// Bytes received and not yet passed on: at most the message in progress (and the start
    /// of the next).
    buf: BytesMut,
    /// The budget's share for `buf`.
    receiving: Charge,
    /// The message passed on last, without its header, which went first: tonic reserves
    /// room for the length the header announces when it reads it, so that the message
    /// then lands in that room, instead of tonic growing (reallocating and copying) its
    /// buffer to fit a frame it holds whole.
    body: Option<Bytes>,
    /// When the message in progress must have arrived in full.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set after the end or an error: nothing more is read.
    done: bool,
}

impl FrameBody {
    /// The next whole message of `buf`, inflated, counted and charged, as an uncompressed
    /// frame; `None` while it has not fully arrived.
    fn next_message(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let compressed = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        let max = self.config.max_message_bytes;
        // refused on the announced length: nothing of an oversized message is buffered
        if len > max {
            return Err(ApiError::MessageTooLarge {
                len: Some(len),
                max,
            });
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let frame = self.buf.split_to(HEADER + len).freeze();
        // from here on the frame's bytes are part of the message's cost, taken below
        self.receiving.shrink(HEADER + len);
        let frame = match compressed {
            0 => frame,
            1 => inflate(self.encoding, &frame[HEADER..], max)?,
            flag => {
                return Err(ApiError::Undecompressable(format!(
                    "invalid compressed flag {flag}"
                )));
            }
        };
        let events = wire::count_events(&frame[HEADER..]);
        if events > self.config.max_events {
            return Err(ApiError::TooManyEvents {
                count: events,
                max: self.config.max_events,
            });
        }
        let charge = self
            .config
            .budget
            .take(message_cost(frame.len() - HEADER, events))?;
        self.held.push(charge);
        Ok(Some(frame))
    }

    fn fail(&mut self, err: ApiError) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        self.deadline = None;
        Poll::Ready(Some(Err(Status::from(err))))
    }
}

/// `data` inflated, as an uncompressed frame (header included), refused past `max` bytes
/// without holding more than `max + 1` of them.
fn inflate(encoding: Encoding, data: &[u8], max: usize) -> Result<Bytes, ApiError> {
    let mut out = vec![0u8; HEADER];
    let limit = max as u64 + 1;
    let read = match encoding {
        Encoding::Gzip => flate2::read::GzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        Encoding::Zstd => zstd::stream::read::Decoder::new(data)
            .and_then(|decoder| decoder.take(limit).read_to_end(&mut out)),
        Encoding::Identity => {
            return Err(ApiError::Undecompressable(
                "a compressed message without a supported grpc-encoding".into(),
            ));
        }
    };
    read.map_err(|e| ApiError::Undecompressable(e.to_string()))?;
    let len = out.len() - HEADER;
    if len > max {
        return Err(ApiError::MessageTooLarge { len: None, max });
    }
    out[1..HEADER].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(Bytes::from(out))
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some(body) = this.body.take() {
            return Poll::Ready(Some(Ok(Frame::data(body))));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.next_message() {
                Ok(Some(mut message)) => {
                    this.deadline = None;
                    let body = message.split_off(HEADER);
                    this.body = (!body.is_empty()).then_some(body);
                    return Poll::Ready(Some(Ok(Frame::data(message))));
                }
                Ok(None) => {}
                Err(err) => return this.fail(err),
            }
            if !this.buf.is_empty() {
                let timeout = this.config.message_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return this.fail(ApiError::MessageTimeout { timeout });
                }
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    this.done = true;
                    // a truncated message goes on as it is, for tonic to report
                    if !this.buf.is_empty() {
                        let rest = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    return Poll::Ready(None);
                }
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(exhausted) = this.receiving.grow(data.len()) {
                            return this.fail(exhausted.into());
                        }
                        this.buf.extend_from_slice(&data);
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let message = [0x12u8, 0x00].repeat(1000);
        let frame = inflate(Encoding::Gzip, &gzip(&message), 2000).unwrap();
        assert_eq!(&frame[..HEADER], &[0, 0, 0, 0x07, 0xd0]);
        assert_eq!(&frame[HEADER..], &message[..]);
        let zstd = zstd::encode_all(&message[..], 3).unwrap();
        assert_eq!(inflate(Encoding::Zstd, &zstd, 2000).unwrap(), frame);
        assert!(matches!(
            inflate(Encoding::Gzip, &gzip(&message), 1999),
            Err(ApiError::MessageTooLarge {
                len: None,
                max: 1999
            })
        ));
        assert!(matches!(
            inflate(Encoding::Gzip, b"not gzip", 2000),
            Err(ApiError::Undecompressable(_))
        ));
    }

    #[test]
    fn a_message_costs_its_bytes_and_its_events() {
        assert!(message_cost(2, 1) > 2 * std::mem::size_of::<Event>() / 2);
        assert_eq!(message_cost(0, 0), 0);
        assert!(message_cost(4 << 20, 10_000) > 16 << 20);
    }
}
