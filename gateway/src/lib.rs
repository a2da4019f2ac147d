//! The ingest gateway: store backends call `marketplace.ingest.v1.IngestService` over gRPC;
//! the gateway authenticates the store, validates every event and queues the request's
//! events as one Redis stream entry, answering only after Redis confirmed the write.
//!
//! # Layout
//! - [`config`]: the typed settings, from flags and environment.
//! - [`preflight`]: refuses unsafe exposure (no TLS, published demo tokens) at startup.
//! - [`auth`]: the stores file (several tokens per store, reloaded on SIGHUP and change) and
//!   bearer-token authentication.
//! - [`stores_admin`]: `gateway stores add|rotate|revoke|list`, editing the stores file.
//! - [`edge`]: the tower layer in front of every service: authentication from headers,
//!   reflection policy, and ingest bodies read message by message within the [`budget`],
//!   their events counted on the [`wire`] before anything is decoded.
//! - [`listener`]: accepted connections, at most `GATEWAY_MAX_CONNECTIONS`.
//! - [`idle`]: connections without a call for `GATEWAY_IDLE_TIMEOUT` are closed.
//! - [`ingest`]: one request from decoded protobuf to a queued batch and a response;
//!   the only place that decides what is accepted.
//! - [`quota`]: per-store `max_events_per_second` and `max_bytes_per_second`, one rate
//!   limiter per store.
//! - [`backpressure`]: refuses writes while the consumer is too far behind or Redis is
//!   nearly full, from a sample taken every 500 ms.
//! - [`queue`]: the Redis stream writer and the Redis health watch.
//! - [`error`]: every failure of a call, its stable `ErrorInfo` reason, and the one mapping
//!   to a gRPC status.
//! - [`server`]: the tonic server: ingest, health and reflection behind the edge;
//!   `Gateway::build`, then `run_until_stopped`.
//! - [`background`]: the server on a task of the current runtime, for embedding and tests.

pub mod auth;
pub mod background;
pub mod backpressure;
pub mod budget;
pub mod config;
pub mod edge;
pub mod error;
pub mod idle;
pub mod ingest;
pub mod listener;
pub mod preflight;
pub mod queue;
pub mod quota;
pub mod server;
pub mod stores_admin;
pub mod wire;

pub use background::Background;
pub use config::Settings;
pub use server::{Gateway, ServerError, run};
