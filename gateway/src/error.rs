//! Every way a call can fail, and the one function that maps them to gRPC statuses with
//! `google.rpc` error details, following the gRPC status code guide.

use pipeline::validate::Violation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{auth::AuthError, queue::QueueError};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("events: at least one event is required")]
    EmptyRequest,
    #[error("events: {count} events in one request; at most {max} are allowed")]
    TooManyEvents { count: usize, max: usize },
    /// `all_or_nothing` was set and at least one event is invalid; nothing was queued.
    #[error("{} invalid event(s) with all_or_nothing set; nothing was queued", .rejected)]
    InvalidEvents {
        rejected: usize,
        violations: Vec<Violation>,
    },
    #[error("{0}")]
    Queue(#[from] QueueError),
}

/// How long a client should wait before retrying after Redis trouble.
const QUEUE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let message = err.to_string();
        match err {
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::EmptyRequest => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(
                    "events",
                    "at least one event is required",
                ),
            ),
            ApiError::TooManyEvents { max, .. } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(
                    "events",
                    format!("at most {max} events per request; split the batch"),
                ),
            ),
            ApiError::InvalidEvents { violations, .. } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                ),
            ),
            ApiError::Queue(QueueError::Unavailable(_)) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(QUEUE_RETRY_DELAY)),
            ),
            ApiError::Queue(QueueError::OutOfMemory(_)) => Status::with_error_details(
                Code::ResourceExhausted,
                "the event queue is full; retry later".to_owned(),
                ErrorDetails::with_retry_info(Some(QUEUE_RETRY_DELAY)),
            ),
            ApiError::Queue(QueueError::Refused(_)) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_guide() {
        let code = |e: ApiError| Status::from(e).code();
        assert_eq!(code(AuthError::Missing.into()), Code::Unauthenticated);
        assert_eq!(code(ApiError::EmptyRequest), Code::InvalidArgument);
        assert_eq!(
            code(ApiError::TooManyEvents { count: 2, max: 1 }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(QueueError::Unavailable("x".into()).into()),
            Code::Unavailable
        );
        assert_eq!(
            code(QueueError::OutOfMemory("OOM".into()).into()),
            Code::ResourceExhausted
        );
        assert_eq!(code(QueueError::Refused("x".into()).into()), Code::Internal);
    }

    #[test]
    fn invalid_events_carry_bad_request_details() {
        let status = Status::from(ApiError::InvalidEvents {
            rejected: 1,
            violations: vec![Violation {
                field: "events[0].event_id".into(),
                description: "is required".into(),
            }],
        });
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "events[0].event_id");
        let status = Status::from(ApiError::Queue(QueueError::OutOfMemory("OOM".into())));
        assert!(status.get_error_details().retry_info().is_some());
    }
}
