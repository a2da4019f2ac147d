//! The consumer: reads stream entries through a Redis consumer group, validates them in
//! batches, bulk-inserts them into ClickHouse, and acknowledges them only after ClickHouse
//! confirmed the insert.
//!
//! # Layout
//! - [`config`]: the typed settings, from flags and environment.
//! - [`admin`]: the operator's subcommands (`dead-letters`, `replay`), printing to a writer.
//! - [`source`]: the Redis side: consumer group, reading (own pending entries first),
//!   taking over entries of dead consumers, acknowledging, trimming.
//! - [`batch`]: entries accumulated until a flush is due, by rows, bytes or age.
//! - [`sink`]: the ClickHouse side: entries to rows, one Native insert per table per flush.
//! - [`isolate`]: splitting a batch ClickHouse refuses until the refused entries are found.
//! - [`dead_letter`]: the `<stream>:dead` stream of entries that cannot be loaded; listing
//!   and replaying them.
//! - [`error`]: the failures that end a worker, as one enum.
//! - [`worker`]: [`worker::Worker::step`], one read-or-flush step, and the trivial loop.

pub mod admin;
pub mod batch;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod isolate;
pub mod sink;
pub mod source;
pub mod worker;

pub use config::Settings;
pub use error::Error;
pub use worker::{Outcome, Worker};
