//! The reporter library's error: why a report run or a check of the due days failed.
//! `reporter serve` logs it and retries the day with backoff; `reporter run` exits with it.

use crate::{build::BuildError, fetch::QueryError, store::StoreError};

/// Why a run (or finding the days due) failed. Each part names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A ClickHouse query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The rows do not make a report (a revenue that is not a decimal, an overflow).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An S3 download or upload failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `CLICKHOUSE_URL` names no server.
    #[error("no ClickHouse URL is set (CLICKHOUSE_URL)")]
    NoClickHouse,
    /// A manifest in S3 is not one this reporter can read.
    #[error("reading the manifest of {date}: {source}")]
    Manifest {
        date: String,
        source: serde_json::Error,
    },
}
