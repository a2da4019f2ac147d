//! What ends an archiver worker or a subcommand, as one enum.

use crate::{columns::ColumnsError, segment::EncodeError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("archive object {key}: {error}")]
    Object { key: String, error: String },
    #[error(transparent)]
    Columns(#[from] ColumnsError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("{key}: the day's objects kept changing over {rounds} rewrites of its manifest")]
    Unsettled { key: String, rounds: usize },
    #[error("nothing is archived for {0}: no manifest and no objects")]
    NoDay(String),
    #[error("the archive is damaged; nothing was replayed:\n{0}")]
    Damaged(String),
}
