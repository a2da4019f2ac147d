//! The reporter's settings and subcommands, parsed once from flags with environment fallbacks.

use clap::{Args, Parser, Subcommand};
use pipeline::config::{ClickHouseArgs, TelemetryArgs};
use time::Date;

/// Turns ClickHouse aggregates into reports in S3
#[derive(Parser, Clone, Debug)]
#[command(name = "reporter", version)]
pub struct Settings {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Writes the reports of one day (UTC) and exits
    Run {
        /// The day, YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        date: Date,
    },
}

/// Where reports go. Credentials, region and endpoint come from the standard AWS
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, ...).
#[derive(Args, Clone, Debug)]
pub struct S3Args {
    /// Bucket that receives the reports
    #[arg(long, env = "S3_BUCKET", default_value = "reports")]
    pub s3_bucket: String,
    /// Address buckets by path (`endpoint/bucket/key`), as self-hosted S3 servers need
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,
    /// Create the bucket if it does not exist
    #[arg(long, env = "S3_CREATE_BUCKET", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_create_bucket: bool,
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("{s:?} is not a date as YYYY-MM-DD: {e}"))
}
