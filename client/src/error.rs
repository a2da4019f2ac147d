//! What can go wrong, as values a caller can branch on: per-event rejections with their
//! field paths, refusals of a whole batch, and why `publish` did not take an event.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// One rule an event broke, e.g. `events[3].commerce.price.units`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the request, as the gateway names it.
    pub field: String,
    /// What is wrong and what is allowed.
    pub description: String,
}

/// An event the gateway did not accept, while it accepted the others of its batch.
/// Sending it again fails the same way: fix the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch it was sent in.
    pub index: usize,
    /// Its id as sent.
    pub event_id: String,
    /// Every rule it broke.
    pub violations: Vec<Violation>,
}

impl From<pipeline::proto::ingest::Rejection> for Rejected {
    fn from(r: pipeline::proto::ingest::Rejection) -> Rejected {
        Rejected {
            index: r.index as usize,
            event_id: r.event_id,
            violations: r
                .violations
                .into_iter()
                .map(|v| Violation {
                    field: v.field,
                    description: v.description,
                })
                .collect(),
        }
    }
}

/// Why a batch was not delivered.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The gateway refused the whole batch with a status that retrying cannot change
    /// (see [`crate::retry::classify`]).
    #[error("refused with {code:?}: {message}")]
    Refused {
        code: Code,
        message: String,
        /// `google.rpc.ErrorInfo.reason`, when the gateway sent one: branch on this.
        reason: Option<String>,
        /// `google.rpc.BadRequest` field violations, when the gateway sent them.
        violations: Vec<Violation>,
    },
    /// Every attempt allowed by [`crate::RetryPolicy::max_attempts`] failed with a
    /// retriable status.
    #[error("gave up after {attempts} attempts, the last with {code:?}: {message}")]
    GaveUp {
        attempts: u32,
        code: Code,
        message: String,
    },
}

impl SendError {
    /// A final refusal, with the details the status carries.
    pub fn refused(status: &Status) -> SendError {
        let details = status.get_error_details();
        SendError::Refused {
            code: status.code(),
            message: status.message().to_owned(),
            reason: details.error_info().map(|info| info.reason.clone()),
            violations: details
                .bad_request()
                .map(|bad| {
                    bad.field_violations
                        .iter()
                        .map(|v| Violation {
                            field: v.field.clone(),
                            description: v.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The status code of the last attempt.
    pub fn code(&self) -> Code {
        match self {
            SendError::Refused { code, .. } | SendError::GaveUp { code, .. } => *code,
        }
    }
}

/// Why [`crate::Publisher::publish`] did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The in-memory buffer is full and [`crate::WhenFull::Error`] is configured.
    #[error("publisher buffer is full ({max_bytes} bytes); slow down or retry later")]
    BufferFull { max_bytes: usize },
    /// The on-disk spool is at its size limit: nothing more is taken until the gateway
    /// acknowledges what is spooled.
    #[error("spool is full ({max_bytes} bytes); the gateway has not acknowledged older events")]
    SpoolFull { max_bytes: u64 },
    /// One event is larger than a whole batch may be, or than the gateway takes an event
    /// (`pipeline::validate::MAX_EVENT_BYTES`, 64 KiB as encoded): sent, it would make the
    /// gateway refuse its whole batch (`EVENT_TOO_LARGE`).
    #[error("event {event_id:?} takes {bytes} bytes; at most {max_bytes} are allowed")]
    EventTooLarge {
        event_id: String,
        bytes: usize,
        max_bytes: usize,
    },
    /// Writing the spool failed.
    #[error("writing the spool: {0}")]
    Spool(#[from] std::io::Error),
    /// `close` was called.
    #[error("publisher is closed")]
    Closed,
}

/// Why a [`crate::Publisher`] or [`crate::Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("gateway endpoint {0:?} is not a valid uri")]
    Endpoint(String),
    #[error("store token is not valid in gRPC metadata (printable ASCII only)")]
    Token,
    #[error("tls: {0}")]
    Tls(String),
    #[error("opening spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How long a status asks to wait before a retry (`google.rpc.RetryInfo`), if at all.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
}
