//! The store fleet simulator: stores in Europe, America and Asia sending commerce events
//! and probes to the gateway, reproducibly from a seed, keeping a ground truth of what
//! the gateway acknowledged.
//!
//! # Layout
//! - [`config`]: the typed settings and subcommands.
//! - [`scenario`]: the scenario TOML: fleet, catalog, funnel rates, probes, incidents.
//! - [`fleet`]: the simulated stores, their regions and tokens.
//! - [`generate`]: the seeded event generator: catalog, sessions walking the funnel, probes.
//! - [`request`]: generated requests written straight from drafts into protobuf bytes.
//! - [`send`]: the gRPC sender: concurrency and pacing; each request delivered by the
//!   `client` crate, which retries per the contract with the same bytes.
//! - [`replay`]: replaying a CSV of the public e-commerce behaviour dataset.
//! - [`truth`]: the ground truth of acknowledged events, as JSON.
//! - [`bench`]: the physical references and the latency probe of `scripts/bench`.

pub mod bench;
pub mod config;
pub mod fleet;
pub mod generate;
pub mod replay;
pub mod request;
pub mod scenario;
pub mod send;
pub mod truth;

pub use config::Settings;
