//! The simulator's settings and subcommands, from flags with environment fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Simulates store fleets in Europe, America and Asia sending events to the gateway
#[derive(Parser, Clone, Debug)]
#[command(name = "simulator", version)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Streams events to a gateway
    Run(RunArgs),
    /// Prints the gateway stores file (TOML) for the simulated fleet
    StoresFile(FleetArgs),
}

/// The simulated fleet.
#[derive(Args, Clone, Debug)]
pub struct FleetArgs {
    /// Stores per region
    #[arg(long, env = "SIMULATOR_STORES_PER_REGION", default_value_t = 2)]
    pub stores_per_region: usize,
    /// Secret the store tokens are derived from; the gateway only sees their hashes
    #[arg(
        long,
        env = "SIMULATOR_TOKEN_SECRET",
        default_value = "demo",
        hide_env_values = true
    )]
    pub token_secret: String,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Gateway URL
    #[arg(
        long,
        env = "SIMULATOR_GATEWAY",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Events per second over the whole fleet; 0 for as fast as possible
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// How long to send, in seconds (ignored when --total is set)
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Send exactly this many events, then stop
    #[arg(long)]
    pub total: Option<u64>,
    /// Events per request
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seed of the generator; the same seed gives the same events
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Unix second the events' occurred_at starts from (default: now)
    #[arg(long)]
    pub time_base: Option<i64>,
    /// Write the ground truth JSON here
    #[arg(long)]
    pub truth_out: Option<PathBuf>,
    /// Hide the progress bar
    #[arg(long)]
    pub quiet: bool,
}
