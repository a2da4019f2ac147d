//! The reporter: turns a day of ClickHouse data into reports in S3.
//!
//! # Layout
//! - [`config`]: the typed settings and subcommands, from flags and environment.
//! - [`queries`]: every SQL statement the reporter runs, in one place, so a test can run
//!   them on ClickHouse 18.16 and on a current engine.
//! - [`rollup`]: builds the per-day commerce rollups the report reads, from one deduplicated
//!   read of a day, and rebuilds a day whose rows changed.
//! - [`fetch`]: runs the queries of one day; with [`rollup`], the only modules that talk to
//!   ClickHouse.
//! - [`money`]: exact decimal revenue and conversion into the reporting currency.
//! - [`commerce`]: products, categories and totals summed from the rows; rankings, changes.
//! - [`incidents`]: minutes that missed the SLO, merged into windows.
//! - [`plan`]: the development plan's rules and their thresholds.
//! - [`build`]: assembles the marketplace and seller reports (pure).
//! - [`report`]: the report models, serialised deterministically.
//! - [`tables`], [`html`]: the reports as tables (CSV) and as a self-contained HTML page.
//! - [`objects`]: the S3 key layout; [`manifest`]: the checksummed list of a day's objects.
//! - [`store`]: S3 uploads through aws-sdk-s3, with standard retries.
//! - [`error`]: why a run failed, as one enum over the stages' errors.
//! - [`run`]: one report run; [`schedule`]: the daily `serve` loop.

pub mod build;
pub mod commerce;
pub mod config;
pub mod error;
pub mod fetch;
pub mod html;
pub mod incidents;
pub mod manifest;
pub mod money;
pub mod objects;
pub mod plan;
pub mod queries;
pub mod report;
pub mod rollup;
pub mod run;
pub mod schedule;
pub mod store;
pub mod tables;
pub mod uptime;

pub use config::Settings;
pub use error::Error;
