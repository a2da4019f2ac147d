//! What several services of the pipeline share, each concern in one module.
//!
//! # Layout
//! - [`entry`]: the Redis stream entry envelope (its fields, the trace context, the
//!   dead-letter entry), written by the gateway, read by the consumer; no other module
//!   names a field.
//! - [`validate`]: the event rules, a table of named checks; the gateway applies them to
//!   requests, the consumer to entries from producers it cannot trust. Accepted events
//!   come back as [`validate::Accepted`], which only the rules can make.
//! - [`view`]: events decoded without allocating, text fields borrowed from the bytes,
//!   decoding exactly what prost decodes; the shape the rules and rows read.
//! - [`schema`]: ClickHouse migrations, recorded in `schema_migrations`.
//! - [`shard`]: the stream's shard keys and the rule that picks a store's shard.
//! - [`rows`]: the ClickHouse row types and the conversion from accepted events.
//! - [`native`]: those rows as ClickHouse Native columns and blocks.
//! - [`retry`]: what to do after a Redis or ClickHouse error (retry, split and
//!   dead-letter, or keep and wait for an operator), each rule with its reason, and the
//!   backoff.
//! - [`config`]: command-line/environment argument groups shared by the binaries.
//! - [`telemetry`]: logging, tracing and metrics initialisation, in one place.
//! - [`trace`]: W3C trace context across gRPC headers and stream entries, and the span
//!   constructors following the RPC, messaging and database conventions.
//! - [`shutdown`]: the SIGTERM/SIGINT future every service runs until.
//! - [`region`]: the mapping between regions in protobuf, ClickHouse and configuration.
//! - [`demo`]: the demo fleet's token derivation and the secret the repository publishes.

pub mod config;
pub mod demo;
pub mod entry;
pub mod native;
pub mod region;
pub mod retry;
pub mod rows;
pub mod schema;
pub mod shard;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
pub mod validate;
pub mod view;

pub use marketplace_proto as proto;
