//! The archiver: reads every stream entry through a consumer group of its own, so it never
//! delays loading, and writes the events to Parquet in S3 (the lake), partitioned by day,
//! region and hour; verifies a day of the lake against ClickHouse and restores ClickHouse
//! from it.
//!
//! # Layout
//! - [`config`]: the typed settings and subcommands, from flags and environment.
//! - [`layout`]: the key layout of the lake.
//! - [`columns`]: the Parquet columns of each table, typed as in ClickHouse; rows in and out.
//! - [`segment`]: a range of entries → one Parquet object per partition, deterministically.
//! - [`store`]: S3: uploads checked by SHA-256, downloads, listings.
//! - [`manifest`]: the day's manifest of objects, rows, entry ranges and SHA-256.
//! - [`worker`]: [`worker::Worker::step`], read-seal-write-acknowledge, and the loop.
//! - [`read`]: a day of the lake read back and checked.
//! - [`verify`]: `archiver verify`, the lake against ClickHouse.
//! - [`restore`]: `archiver restore`, the lake back into ClickHouse.
//! - [`replay`]: `archiver replay-rejected`, refused events that today's rules accept, back
//!   onto the stream, once.
//! - [`error`]: what ends a worker or a subcommand.

pub mod columns;
pub mod config;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod read;
pub mod replay;
pub mod restore;
pub mod segment;
pub mod store;
pub mod verify;
pub mod worker;

pub use config::Settings;
pub use error::Error;
pub use worker::{Outcome, Worker};
