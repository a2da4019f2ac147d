//! The consumer library's error: the failures that end a worker, as a type the loop
//! matches on. Everything a worker survives (a failed read, claim, trim or insert) is an
//! [`crate::Outcome`] or a warning instead, never an error.

/// Why a worker stops. The process exits and its supervisor restarts it; what the worker
/// had read stays pending in the consumer group and is delivered again, so ending is
/// always safe, never lossy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ClickHouse schema could not be applied: loading into a missing or older schema
    /// would fail every insert.
    #[error("migrating clickhouse")]
    Migrate(#[source] pipeline::schema::MigrationError),
    /// Redis was not reachable at start, or refused the consumer group.
    #[error("connecting to redis")]
    Connect(#[source] fred::error::Error),
    /// Copying refused entries to `<stream>:dead` failed for another reason than a full
    /// Redis (then their `rejected_events` rows are their record, and they are
    /// acknowledged). Acknowledging them anyway would lose the copy an operator replays.
    #[error("dead-lettering entries")]
    DeadLetter(#[source] fred::error::Error),
    /// `XACK` failed after the rows were confirmed: a restart reads the entries again, and
    /// the ReplacingMergeTree tables make that load a no-op for results.
    #[error("acknowledging entries")]
    Ack(#[source] fred::error::Error),
}

impl Error {
    /// Whether the worker stops on this error, decided per variant so that a new variant
    /// must decide too. Each reason is on the variant.
    pub fn ends_worker(&self) -> bool {
        match self {
            Error::Migrate(_) | Error::Connect(_) | Error::DeadLetter(_) | Error::Ack(_) => true,
        }
    }
}
