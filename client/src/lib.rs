//! The store integration client: what a store backend uses to send events to the
//! marketplace gateway, following every rule of the contract in `docs/CLIENTS.md`.
//!
//! # A guide
//!
//! ## Publish events
//!
//! A [`Publisher`] takes events one at a time and sends them in batches: a batch leaves
//! when it holds [`Config::max_batch_events`] events or [`Config::max_batch_bytes`] bytes,
//! or when its first event has waited [`Config::linger`]. Batches are compressed (zstd by
//! default, see [`Compression`]) and sent over `PublishStream`, one acknowledgement per
//! batch, falling back to unary `Publish` on a gateway without streaming.
//!
//! ```no_run
//! use client::{Config, Publisher};
//! use client::proto::{Event, Region, ProbeResult, event::Payload};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::start(Config::new("http://127.0.0.1:50051", "my-store-token"))?;
//! let event = Event {
//!     // the idempotency key: a retry, here or after a restart, reuses it
//!     event_id: "0b8f8a4e-6a43-4a53-9a5e-2f1a3c0f5d11".into(),
//!     occurred_at: Some(std::time::SystemTime::now().into()),
//!     store_id: "eu-1".into(),
//!     region: Region::Europe as i32,
//!     payload: Some(Payload::Probe(ProbeResult { target: "checkout".into(), up: true, ..Default::default() })),
//! };
//! publisher.publish(&event).await?;
//! let stats = publisher.close().await?; // flushes, then stops
//! assert_eq!(stats.acknowledged + stats.rejected + stats.failed, stats.published);
//! # Ok(()) }
//! ```
//!
//! ## Learn what was refused
//!
//! The gateway accepts the valid events of a batch and lists the others, each with the
//! field paths of the rules it broke. [`Publisher::with_outcomes`] hands you every
//! batch's outcome; [`Rejected`] events will fail the same way if sent again, so log or
//! park them.
//!
//! ```no_run
//! use client::{Config, Publisher};
//!
//! # fn run() -> Result<(), client::ConfigError> {
//! let publisher = Publisher::with_outcomes(Config::new("http://127.0.0.1:50051", "token"), |_batch, outcome| {
//!     match outcome {
//!         Ok(ack) => for rejected in &ack.rejected {
//!             for v in &rejected.violations {
//!                 eprintln!("event {} refused: {} {}", rejected.event_id, v.field, v.description);
//!             }
//!         },
//!         // refused as a whole (e.g. UNAUTHENTICATED), or retried until the policy gave up
//!         Err(err) => eprintln!("batch not delivered: {err}"),
//!     }
//! })?;
//! # Ok(()) }
//! ```
//!
//! ## Retries
//!
//! UNAVAILABLE, RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`, DEADLINE_EXCEEDED, and a
//! connection that broke under the call (tonic's own status, [`retry::is_transport_failure`])
//! are retried with exponential backoff and full jitter, never sooner than RetryInfo says;
//! everything else the gateway answers is final ([`retry::classify`]). A retry sends the identical bytes: the
//! same events with the same ids, so a batch queued twice counts once downstream.
//!
//! ```
//! use client::retry::{classify, Verdict};
//! use tonic::Status;
//!
//! assert_eq!(classify(&Status::unavailable("gateway restarting")), Verdict::Retry { after: None });
//! assert_eq!(classify(&Status::invalid_argument("events: at least one event is required")), Verdict::Final);
//! ```
//!
//! ## Bounded memory and backpressure
//!
//! At most [`Config::max_buffered_bytes`] of encoded events wait or are in flight. Past
//! that, `publish` waits for acknowledgements ([`WhenFull::Wait`], the default) or returns
//! [`PublishError::BufferFull`] ([`WhenFull::Error`]) so that you can shed load yourself.
//!
//! ## Survive restarts with a spool
//!
//! With a [`SpoolConfig`], `publish` writes each event to disk before it returns, and the
//! file of a batch is deleted only when the gateway acknowledges it. A publisher started on
//! the same directory sends what is left first. Delivery is at least once; the gateway's
//! event ids collapse the duplicates. The spool is bounded: a full spool returns
//! [`PublishError::SpoolFull`] and counts `client_spool_full_total`. With a spool, let the
//! retries run until close (`max_attempts: None`).
//!
//! ```no_run
//! use client::{Config, Publisher, RetryPolicy, SpoolConfig};
//!
//! # fn run() -> Result<(), client::ConfigError> {
//! let mut config = Config::new("http://127.0.0.1:50051", "token");
//! config.spool = Some(SpoolConfig { dir: "/var/lib/my-store/spool".into(), max_bytes: 256 << 20 });
//! config.send.retry = RetryPolicy { max_attempts: None, ..RetryPolicy::default() };
//! let publisher = Publisher::start(config)?;
//! # Ok(()) }
//! ```
//!
//! ## TLS
//!
//! ```no_run
//! use client::{Config, Tls};
//!
//! # fn run() -> std::io::Result<()> {
//! let mut config = Config::new("https://ingest.example.com:50051", "token");
//! config.tls = Some(Tls { ca_pem: std::fs::read("ca.pem")?, domain: None });
//! # Ok(()) }
//! ```
//!
//! ## Batches you build yourself
//!
//! [`Client`] sends one [`Batch`] with the same retry rules, for callers that batch
//! already (the simulator does):
//!
//! ```no_run
//! use client::{Batch, Client, Config, SendOptions};
//!
//! # async fn run(events: Vec<client::proto::Event>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("http://127.0.0.1:50051", "token");
//! let mut client = Client::new(config.channel()?, &config.token, SendOptions::default())?;
//! let ack = client.send(&Batch::new(&events)).await?;
//! println!("{} queued, {} rejected, {} attempts", ack.accepted, ack.rejected.len(), ack.attempts);
//! # Ok(()) }
//! ```
//!
//! ## Metrics and traces
//!
//! Counters go through the `metrics` facade (see [`mod@metrics`] for the names): install
//! any recorder, e.g. `metrics-exporter-prometheus`. Each request carries the current
//! span's trace context as `traceparent`, so the gateway's spans join your trace.
//!
//! # Layout
//! - [`config`]: every setting, with defaults.
//! - [`publisher`]: batching, the memory bound, flush and close, the workers.
//! - [`client`]: one batch delivered with retries, over a stream or unary.
//! - [`retry`]: which statuses are retried, and how long to wait.
//! - [`batch`]: events encoded once, resent byte for byte.
//! - [`spool`]: the on-disk spool.
//! - [`wire`]: the gRPC calls for encoded requests.
//! - [`error`]: rejections and errors as typed values.
//! - [`mod@metrics`]: the counters.

pub mod batch;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod publisher;
pub mod retry;
mod spool;
pub mod wire;

pub use batch::Batch;
pub use client::{Ack, Client};
pub use config::{Compression, Config, SendOptions, SpoolConfig, Tls, WhenFull};
pub use error::{ConfigError, PublishError, Rejected, SendError, Violation};
pub use publisher::{Publisher, Stats};
pub use retry::RetryPolicy;

/// The contract's message types (`marketplace.ingest.v1`).
pub use pipeline::proto::ingest as proto;
