//! Every way a call can fail, and the one place that maps failures to gRPC: statuses with
//! `google.rpc` error details following the gRPC status code guide, the stable
//! `ErrorInfo.reason` of every refusal, tonic's own oversize answer rewritten, and the status
//! code as a metric label.

use std::{collections::HashMap, time::Duration};

use pipeline::validate::Violation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    auth::AuthError,
    backpressure::Overload,
    budget::Exhausted,
    queue::QueueError,
    quota::{QuotaError, Unit},
};

/// The `ErrorInfo.domain` of every refusal: the API the reasons belong to.
pub const DOMAIN: &str = "marketplace.ingest.v1";

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("events: at least one event is required")]
    EmptyRequest,
    #[error("events: {count} events in one request; at most {max} are allowed")]
    TooManyEvents { count: usize, max: usize },
    /// Events above [`pipeline::validate::MAX_EVENT_BYTES`] as their store encoded them:
    /// the request is refused whole, as one above `GATEWAY_MAX_EVENTS` is, and nothing is
    /// queued. `violations` names each such event.
    #[error("{} event(s) larger than {max} bytes; nothing was queued", .violations.len())]
    EventTooLarge {
        max: usize,
        violations: Vec<Violation>,
    },
    /// A message (as sent, or once decompressed) above `GATEWAY_MAX_MESSAGE_BYTES`; `len`
    /// is `None` when decompression stopped at the limit.
    #[error("message length too large: {}the limit is {max} bytes (the size limit applies after decompression)", .len.map(|l| format!("found {l} bytes, ")).unwrap_or_default())]
    MessageTooLarge { len: Option<usize>, max: usize },
    /// A compressed message that does not decompress.
    #[error("failed to decompress the message: {0}")]
    Undecompressable(String),
    /// A message that is not a valid protobuf `PublishRequest` (prost's message says why).
    #[error("{0}")]
    Undecodable(#[from] prost::DecodeError),
    /// A message that had started to arrive was not complete within the request timeout.
    #[error("the message did not arrive within {} ms; send it at once", .timeout.as_millis())]
    MessageTimeout { timeout: Duration },
    /// `all_or_nothing` was set and at least one event is invalid; nothing was queued.
    #[error("{} invalid event(s) with all_or_nothing set; nothing was queued", .rejected)]
    InvalidEvents {
        rejected: usize,
        violations: Vec<Violation>,
    },
    /// The store is over its `max_events_per_second` or `max_bytes_per_second`.
    #[error("{0}")]
    Quota(#[from] QuotaError),
    /// The gateway holds its budget of request bytes in flight: shed before reading more.
    #[error("{0}")]
    Busy(#[from] Exhausted),
    /// The consumer is too far behind or Redis is nearly full; nothing was written.
    #[error("{0}")]
    Overloaded(#[from] Overload),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

/// The stable `google.rpc.ErrorInfo.reason` of every refusal: clients branch on these, never
/// on messages. Listed in the README's error table; never renamed, only added to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    TokenMissing,
    TokenMalformed,
    TokenUnknown,
    EmptyRequest,
    TooManyEvents,
    EventTooLarge,
    MessageTooLarge,
    MalformedMessage,
    MessageTimeout,
    InvalidEvents,
    StoreQuotaExceeded,
    BatchAboveStoreQuota,
    StoreByteQuotaExceeded,
    BatchAboveStoreByteQuota,
    GatewayBusy,
    BacklogFull,
    RedisMemoryHigh,
    RedisUnavailable,
    RedisOutOfMemory,
    RedisRefused,
    RedisNotReplicated,
}

impl Reason {
    /// Every reason, for the table test.
    pub const ALL: [Reason; 21] = [
        Reason::TokenMissing,
        Reason::TokenMalformed,
        Reason::TokenUnknown,
        Reason::EmptyRequest,
        Reason::TooManyEvents,
        Reason::EventTooLarge,
        Reason::MessageTooLarge,
        Reason::MalformedMessage,
        Reason::MessageTimeout,
        Reason::InvalidEvents,
        Reason::StoreQuotaExceeded,
        Reason::BatchAboveStoreQuota,
        Reason::StoreByteQuotaExceeded,
        Reason::BatchAboveStoreByteQuota,
        Reason::GatewayBusy,
        Reason::BacklogFull,
        Reason::RedisMemoryHigh,
        Reason::RedisUnavailable,
        Reason::RedisOutOfMemory,
        Reason::RedisRefused,
        Reason::RedisNotReplicated,
    ];

    /// The one table: `ErrorInfo.reason`, and the `reason` label of
    /// `gateway_requests_refused_total` (kept from before the reasons existed).
    fn names(self) -> (&'static str, &'static str) {
        use Reason as R;
        match self {
            R::TokenMissing => ("TOKEN_MISSING", "unauthenticated"),
            R::TokenMalformed => ("TOKEN_MALFORMED", "unauthenticated"),
            R::TokenUnknown => ("TOKEN_UNKNOWN", "unauthenticated"),
            R::EmptyRequest => ("EMPTY_REQUEST", "request_size"),
            R::TooManyEvents => ("TOO_MANY_EVENTS", "request_size"),
            R::EventTooLarge => ("EVENT_TOO_LARGE", "request_size"),
            R::MessageTooLarge => ("MESSAGE_TOO_LARGE", "request_size"),
            R::MalformedMessage => ("MALFORMED_MESSAGE", "malformed"),
            R::MessageTimeout => ("MESSAGE_TIMEOUT", "timeout"),
            R::InvalidEvents => ("INVALID_EVENTS", "invalid_events"),
            R::StoreQuotaExceeded => ("STORE_QUOTA_EXCEEDED", "quota"),
            R::BatchAboveStoreQuota => ("BATCH_ABOVE_STORE_QUOTA", "quota"),
            R::StoreByteQuotaExceeded => ("STORE_BYTE_QUOTA_EXCEEDED", "byte_quota"),
            R::BatchAboveStoreByteQuota => ("BATCH_ABOVE_STORE_BYTE_QUOTA", "byte_quota"),
            R::GatewayBusy => ("GATEWAY_BUSY", "in_flight_budget"),
            R::BacklogFull => ("BACKLOG_FULL", "backlog"),
            R::RedisMemoryHigh => ("REDIS_MEMORY_HIGH", "redis_memory"),
            R::RedisUnavailable => ("REDIS_UNAVAILABLE", "redis_unavailable"),
            R::RedisOutOfMemory => ("REDIS_OUT_OF_MEMORY", "redis_out_of_memory"),
            R::RedisRefused => ("REDIS_REFUSED", "redis_refused"),
            R::RedisNotReplicated => ("REDIS_NOT_REPLICATED", "redis_not_replicated"),
        }
    }

    /// The `ErrorInfo.reason`, UPPER_SNAKE_CASE as AIP-193 asks.
    pub fn as_str(self) -> &'static str {
        self.names().0
    }

    /// The `reason` label of `gateway_requests_refused_total`.
    pub fn metric_label(self) -> &'static str {
        self.names().1
    }
}

impl ApiError {
    /// Why, in the stable vocabulary of [`Reason`].
    pub fn reason(&self) -> Reason {
        use Reason as R;
        match self {
            ApiError::Unauthenticated(AuthError::Missing) => R::TokenMissing,
            ApiError::Unauthenticated(AuthError::Malformed) => R::TokenMalformed,
            ApiError::Unauthenticated(AuthError::Unknown) => R::TokenUnknown,
            ApiError::EmptyRequest => R::EmptyRequest,
            ApiError::TooManyEvents { .. } => R::TooManyEvents,
            ApiError::EventTooLarge { .. } => R::EventTooLarge,
            ApiError::MessageTooLarge { .. } => R::MessageTooLarge,
            ApiError::Undecompressable(_) | ApiError::Undecodable(_) => R::MalformedMessage,
            ApiError::MessageTimeout { .. } => R::MessageTimeout,
            ApiError::InvalidEvents { .. } => R::InvalidEvents,
            ApiError::Quota(QuotaError::Exceeded { unit, .. }) => match unit {
                Unit::Events => R::StoreQuotaExceeded,
                Unit::Bytes => R::StoreByteQuotaExceeded,
            },
            ApiError::Quota(QuotaError::BatchAboveQuota { unit, .. }) => match unit {
                Unit::Events => R::BatchAboveStoreQuota,
                Unit::Bytes => R::BatchAboveStoreByteQuota,
            },
            ApiError::Busy(_) => R::GatewayBusy,
            ApiError::Overloaded(Overload::Backlog { .. }) => R::BacklogFull,
            ApiError::Overloaded(Overload::Memory { .. }) => R::RedisMemoryHigh,
            ApiError::Queue(QueueError::Unavailable(_)) => R::RedisUnavailable,
            ApiError::Queue(QueueError::OutOfMemory(_)) => R::RedisOutOfMemory,
            ApiError::Queue(QueueError::Refused(_)) => R::RedisRefused,
            ApiError::Queue(QueueError::NotReplicated { .. }) => R::RedisNotReplicated,
        }
    }

    /// `ErrorInfo.metadata`: the figures a client needs to act without parsing the message.
    fn metadata(&self) -> HashMap<String, String> {
        let pairs: Vec<(&str, String)> = match self {
            ApiError::TooManyEvents { count, max } => {
                vec![("events", count.to_string()), ("limit", max.to_string())]
            }
            ApiError::MessageTooLarge { max, .. } => vec![("limit", max.to_string())],
            ApiError::EventTooLarge { max, violations } => vec![
                ("events", violations.len().to_string()),
                ("limit", max.to_string()),
            ],
            ApiError::MessageTimeout { timeout } => {
                vec![("timeout_ms", timeout.as_millis().to_string())]
            }
            ApiError::InvalidEvents { rejected, .. } => vec![("rejected", rejected.to_string())],
            ApiError::Quota(
                QuotaError::Exceeded { store, limit, .. }
                | QuotaError::BatchAboveQuota { store, limit, .. },
            ) => vec![("store", store.to_string()), ("limit", limit.to_string())],
            ApiError::Busy(Exhausted { limit }) => vec![("limit", limit.to_string())],
            ApiError::Overloaded(Overload::Backlog { backlog, max }) => {
                vec![("backlog", backlog.to_string()), ("limit", max.to_string())]
            }
            ApiError::Queue(QueueError::NotReplicated { wanted, confirmed }) => vec![
                ("replicas", wanted.to_string()),
                ("confirmed", confirmed.to_string()),
            ],
            _ => vec![],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// How long a client should wait before retrying after Redis trouble.
const QUEUE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a client should wait when the gateway sheds load: requests in flight finish in
/// milliseconds, so a short wait usually finds room.
const BUSY_RETRY_DELAY: Duration = Duration::from_millis(250);

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let reason = err.reason();
        // counted here because every failed call passes through this one conversion
        metrics::counter!("gateway_requests_refused_total", "reason" => reason.metric_label())
            .increment(1);
        let mut message = err.to_string();
        let metadata = err.metadata();
        let mut details = ErrorDetails::new();
        let code = match err {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::EmptyRequest => {
                details.add_bad_request_violation("events", "at least one event is required");
                Code::InvalidArgument
            }
            ApiError::TooManyEvents { max, .. } => {
                details.add_bad_request_violation(
                    "events",
                    format!("at most {max} events per request; split the batch"),
                );
                Code::InvalidArgument
            }
            ApiError::MessageTooLarge { .. } => Code::ResourceExhausted,
            // INTERNAL, as tonic answers undecodable messages (the status code guide's
            // choice for parse errors); undecompressable ones alike
            ApiError::Undecompressable(_) | ApiError::Undecodable(_) => Code::Internal,
            ApiError::MessageTimeout { .. } => Code::DeadlineExceeded,
            ApiError::InvalidEvents { violations, .. }
            | ApiError::EventTooLarge { violations, .. } => {
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Code::InvalidArgument
            }
            ApiError::Quota(QuotaError::Exceeded {
                store,
                unit,
                limit,
                retry_after,
            }) => {
                details.set_retry_info(Some(retry_after));
                details.add_quota_failure_violation(
                    format!("store:{store}"),
                    format!("at most {limit} {unit} per second"),
                );
                Code::ResourceExhausted
            }
            // no RetryInfo: the same request fails the same way however long the client waits
            ApiError::Quota(QuotaError::BatchAboveQuota {
                store,
                unit,
                limit,
                amount,
            }) => {
                details.add_quota_failure_violation(
                    format!("store:{store}"),
                    format!("at most {limit} {unit} per second"),
                );
                details.add_bad_request_violation(
                    "events",
                    format!("{amount} {unit} exceed the store's quota of {limit} per second; split the batch"),
                );
                Code::ResourceExhausted
            }
            ApiError::Busy(_) => {
                details.set_retry_info(Some(BUSY_RETRY_DELAY));
                Code::ResourceExhausted
            }
            ApiError::Overloaded(_) => {
                details.set_retry_info(Some(QUEUE_RETRY_DELAY));
                Code::ResourceExhausted
            }
            ApiError::Queue(QueueError::Unavailable(_)) => {
                details.set_retry_info(Some(QUEUE_RETRY_DELAY));
                Code::Unavailable
            }
            ApiError::Queue(QueueError::OutOfMemory(_)) => {
                message = "the event queue is full; retry later".to_owned();
                details.set_retry_info(Some(QUEUE_RETRY_DELAY));
                Code::ResourceExhausted
            }
            ApiError::Queue(QueueError::Refused(_)) => Code::Internal,
            // Never OK: the entry may die with the primary. UNAVAILABLE, because a retry
            // (the same events, counted once) succeeds once a replica is back or promoted.
            ApiError::Queue(QueueError::NotReplicated { .. }) => {
                message = "the event queue could not replicate the batch in time; retry \
                           later"
                    .to_owned();
                details.set_retry_info(Some(QUEUE_RETRY_DELAY));
                Code::Unavailable
            }
        };
        details.set_error_info(reason.as_str(), DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

/// tonic answers a message over the decoding limit with OUT_OF_RANGE; the gRPC status code
/// guide prescribes RESOURCE_EXHAUSTED for a message larger than the configured limit (as
/// tonic already answers when the limit is hit while decompressing). The edge refuses
/// oversized ingest messages itself; this covers the other services (health, reflection).
/// Such errors come before any handler runs, as trailers-only responses, so the status is
/// in the headers.
pub fn resource_exhausted_for_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// A status code as a metric label: a fixed, small set of values.
pub fn code_label(code: Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::InvalidArgument => "invalid_argument",
        C::Unauthenticated => "unauthenticated",
        C::ResourceExhausted => "resource_exhausted",
        C::Unavailable => "unavailable",
        C::Internal => "internal",
        C::Cancelled => "cancelled",
        C::DeadlineExceeded => "deadline_exceeded",
        _ => "other",
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
            code(ApiError::MessageTooLarge { len: None, max: 1 }),
            Code::ResourceExhausted
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
    fn every_refusal_carries_error_info_with_a_stable_reason() {
        let status = Status::from(ApiError::TooManyEvents { count: 5, max: 2 });
        let info = status.get_error_details().error_info().unwrap().clone();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("TOO_MANY_EVENTS", DOMAIN)
        );
        assert_eq!(info.metadata["limit"], "2");
        let status = Status::from(ApiError::from(QuotaError::Exceeded {
            store: "eu-1".into(),
            unit: Unit::Events,
            limit: 10,
            retry_after: Duration::from_millis(5),
        }));
        let info = status.get_error_details().error_info().unwrap().clone();
        assert_eq!(info.reason, "STORE_QUOTA_EXCEEDED");
        assert_eq!(
            (
                info.metadata["store"].as_str(),
                info.metadata["limit"].as_str()
            ),
            ("eu-1", "10")
        );
        // reasons are distinct and shaped as AIP-193 asks
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        );
    }

    #[test]
    fn busy_and_queue_trouble_say_when_to_retry() {
        let status = Status::from(ApiError::from(Exhausted { limit: 64 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.get_error_details().retry_info().unwrap().retry_delay,
            Some(BUSY_RETRY_DELAY)
        );
        let status = Status::from(ApiError::Queue(QueueError::OutOfMemory("OOM".into())));
        assert!(status.get_error_details().retry_info().is_some());
    }

    #[test]
    fn events_too_large_name_each_event_and_the_limit() {
        let status = Status::from(ApiError::EventTooLarge {
            max: 65_536,
            violations: vec![Violation {
                field: "events[3]".into(),
                description: "takes 70000 bytes as encoded; an event may take at most 65536".into(),
            }],
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "EVENT_TOO_LARGE");
        assert_eq!(
            (
                info.metadata["events"].as_str(),
                info.metadata["limit"].as_str()
            ),
            ("1", "65536")
        );
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "events[3]"
        );
        assert!(
            details.retry_info().is_none(),
            "final: the same request fails again"
        );
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
    }

    #[test]
    fn quota_and_overload_say_when_and_why() {
        let status = Status::from(ApiError::from(QuotaError::Exceeded {
            store: "eu-1".into(),
            unit: Unit::Events,
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
            unit: Unit::Events,
            limit: 10,
            amount: 11,
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.get_error_details().retry_info().is_none());

        let status = Status::from(ApiError::from(QuotaError::Exceeded {
            store: "eu-1".into(),
            unit: Unit::Bytes,
            limit: 1000,
            retry_after: Duration::from_millis(20),
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().unwrap().reason,
            "STORE_BYTE_QUOTA_EXCEEDED"
        );
        assert!(details.retry_info().is_some());
        assert_eq!(
            details.quota_failure().unwrap().violations[0].description,
            "at most 1000 bytes per second"
        );

        let status = Status::from(ApiError::from(Overload::Backlog { backlog: 6, max: 5 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.get_error_details().retry_info().is_some());
    }
}
