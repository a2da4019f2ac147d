//! The store fleet simulator: stores in Europe, America and Asia sending commerce events
//! and probes to the gateway, reproducibly from a seed, keeping a ground truth of what
//! the gateway acknowledged.
//!
//! # Layout
//! - [`config`]: the typed settings and subcommands.
//! - [`fleet`]: the simulated stores, their regions, currencies and tokens.
//! - [`generate`]: the seeded event generator: catalog, funnel, probes.
//! - [`send`]: the gRPC sender: concurrency, pacing, retries with the same event ids.
//! - [`truth`]: the ground truth of acknowledged events, as JSON.

pub mod config;
pub mod fleet;
pub mod generate;
pub mod send;
pub mod truth;

pub use config::Settings;
