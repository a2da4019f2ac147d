//! Every way a call can fail, and the one function that maps them to gRPC statuses with
//! `google.rpc` error details, following the gRPC status code guide.

use pipeline::validate::Violation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{auth::AuthError, backpressure::Overload, queue::QueueError, quota::QuotaError};

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
    /// The store is over its `max_events_per_second`.
    #[error("{0}")]
    Quota(#[from] QuotaError),
    /// The consumer is too far behind or Redis is nearly full; nothing was written.
    #[error("{0}")]
    Overloaded(#[from] Overload),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

impl ApiError {
    /// The `reason` label of `gateway_requests_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::EmptyRequest | ApiError::TooManyEvents { .. } => "request_size",
            ApiError::InvalidEvents { .. } => "invalid_events",
            ApiError::Quota(_) => "quota",
            ApiError::Overloaded(Overload::Backlog { .. }) => "backlog",
            ApiError::Overloaded(Overload::Memory { .. }) => "redis_memory",
            ApiError::Queue(QueueError::Unavailable(_)) => "redis_unavailable",
            ApiError::Queue(QueueError::OutOfMemory(_)) => "redis_out_of_memory",
            ApiError::Queue(QueueError::Refused(_)) => "redis_refused",
        }
    }
}

/// How long a client should wait before retrying after Redis trouble.
const QUEUE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        // counted here because every failed call passes through this one conversion
        metrics::counter!("gateway_requests_refused_total", "reason" => err.reason()).increment(1);
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
            ApiError::Quota(QuotaError::Exceeded {
                store,
                limit,
                retry_after,
            }) => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(
                    format!("store:{store}"),
                    format!("at most {limit} events per second"),
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            // no RetryInfo: the same request fails the same way however long the client waits
            ApiError::Quota(QuotaError::BatchAboveQuota {
                store,
                limit,
                events,
            }) => {
                let mut details = ErrorDetails::with_quota_failure_violation(
                    format!("store:{store}"),
                    format!("at most {limit} events per second"),
                );
                details.add_bad_request_violation(
                    "events",
                    format!("{events} events exceed the store's quota of {limit} per second; split the batch"),
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::Overloaded(_) => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(QUEUE_RETRY_DELAY)),
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

    #[test]
    fn quota_and_overload_say_when_and_why() {
        let status = Status::from(ApiError::from(QuotaError::Exceeded {
            store: "eu-1".into(),
            limit: 10,
            retry_after: std::time::Duration::from_millis(250),
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            details.quota_failure().unwrap().violations[0].subject,
            "store:eu-1"
        );

        let status = Status::from(ApiError::from(QuotaError::BatchAboveQuota {
            store: "eu-1".into(),
            limit: 10,
            events: 11,
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.get_error_details().retry_info().is_none());

        let status = Status::from(ApiError::from(Overload::Backlog { backlog: 6, max: 5 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.get_error_details().retry_info().is_some());
    }
}
