//! The reporter: turns a day of ClickHouse data into reports in S3.
//!
//! # Layout
//! - [`config`]: the typed settings and subcommands, from flags and environment.
//! - [`queries`]: every SQL statement the reporter runs, in one place, so a test can run
//!   them on ClickHouse 18.16 and on a current engine.
//! - [`report`]: the report model, built from query results, serialised deterministically.
//! - [`store`]: S3 uploads through aws-sdk-s3.
//! - [`run`]: one report run: query, build, upload.

pub mod config;
pub mod queries;
pub mod report;
pub mod run;
pub mod store;

pub use config::Settings;
