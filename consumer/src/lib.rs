//! The consumer: reads stream entries through a Redis consumer group, validates them in
//! batches, bulk-inserts them into ClickHouse, and acknowledges them only after ClickHouse
//! confirmed the insert.
//!
//! # Layout
//! - [`config`]: the typed settings, from flags and environment.
//! - [`source`]: the Redis side: consumer group, reading (own pending entries first),
//!   acknowledging.
//! - [`batch`]: entries accumulated until a flush is due, by rows, bytes or age.
//! - [`sink`]: the ClickHouse side: entries to rows, one insert per table per flush.
//! - [`worker`]: [`worker::Worker::step`], one read-or-flush step, and the trivial loop.

pub mod batch;
pub mod config;
pub mod sink;
pub mod source;
pub mod worker;

pub use config::Settings;
pub use worker::{Outcome, Worker};
