//! The contract's retry rules, in one tested place: which statuses are worth sending the
//! same batch again, and how long to wait first.
//!
//! | status | retried | wait |
//! |---|---|---|
//! | `UNAVAILABLE` | yes | RetryInfo if present, else backoff |
//! | `RESOURCE_EXHAUSTED` with RetryInfo | yes | at least RetryInfo |
//! | `RESOURCE_EXHAUSTED` without RetryInfo | no: the batch itself is too big for the limit | |
//! | `DEADLINE_EXCEEDED` | yes: the batch may or may not be queued; ids collapse duplicates | backoff |
//! | the connection failed mid-call (made by the client's HTTP/2 stack, not sent by the gateway) | yes: as `DEADLINE_EXCEEDED` | backoff |
//! | anything else | no | |

use std::time::Duration;

pub use pipeline::retry::Backoff;
use tonic::{Code, Status};

use crate::error::retry_delay;

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the identical batch again, waiting at least `after` if the gateway said so.
    Retry { after: Option<Duration> },
    /// Do not send this batch again.
    Final,
}

/// Classifies a failed attempt by its status and `google.rpc.RetryInfo`.
pub fn classify(status: &Status) -> Verdict {
    let hint = retry_delay(status);
    if is_transport_failure(status) {
        // the gateway died or the connection broke mid-call: the batch may be queued or
        // not, and its ids make a second copy collapse downstream
        return Verdict::Retry { after: hint };
    }
    match status.code() {
        // the gateway or its queue is down; nothing was queued
        Code::Unavailable => Verdict::Retry { after: hint },
        // over quota or overloaded: the gateway says when to come back. Without RetryInfo
        // the request can never fit (a batch above the quota, a message above the limit).
        Code::ResourceExhausted if hint.is_some() => Verdict::Retry { after: hint },
        // the answer was lost; the events may be queued already, and their ids make a
        // second copy collapse downstream
        Code::DeadlineExceeded => Verdict::Retry { after: hint },
        _ => Verdict::Final,
    }
}

/// Whether `status` was made by the client's own HTTP/2 stack because the connection failed
/// during the call, rather than sent by the gateway. tonic reports a connection reset or
/// closed under a call (a gateway killed mid-request, say) as `UNKNOWN` "h2 protocol error:
/// error reading a body from connection" (or `INTERNAL` for some HTTP/2 reasons), with the
/// transport's error as the status's source; a status the gateway sent never has a source.
pub fn is_transport_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<h2::Error>() || err.is::<std::io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// How often and how patiently a batch is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Exponential backoff with full jitter between attempts; `pipeline::retry::Backoff`,
    /// the one formula of the codebase.
    pub backoff: Backoff,
    /// Attempts per batch, the first included; `None` retries until the batch is
    /// delivered or refused for good (what a spooling publisher wants).
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::default(),
            max_attempts: Some(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 for the first retry): the jittered backoff, but
    /// never shorter than the gateway's RetryInfo.
    pub fn delay(&self, retry: u32, hint: Option<Duration>, unit_sample: f64) -> Duration {
        let backoff = self.backoff.delay(retry, unit_sample);
        hint.map_or(backoff, |hint| hint.max(backoff))
    }

    /// Whether attempt number `attempts` (1-based, just failed) may be followed by another.
    pub fn may_retry(&self, attempts: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts < max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn with_retry_info(code: Code, delay: Option<Duration>) -> Status {
        Status::with_error_details(code, "x", ErrorDetails::with_retry_info(delay))
    }

    #[test]
    fn the_contract_decides_what_is_retried() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(
            classify(&Status::unavailable("down")),
            Verdict::Retry { after: None }
        );
        assert_eq!(
            classify(&with_retry_info(Code::Unavailable, second)),
            Verdict::Retry { after: second }
        );
        assert_eq!(
            classify(&with_retry_info(Code::ResourceExhausted, second)),
            Verdict::Retry { after: second }
        );
        assert_eq!(
            classify(&Status::resource_exhausted("batch above quota")),
            Verdict::Final
        );
        assert_eq!(
            classify(&Status::deadline_exceeded("slow")),
            Verdict::Retry { after: None }
        );
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Internal,
            Code::Aborted,
            Code::Unimplemented,
        ] {
            assert_eq!(
                classify(&Status::new(code, "x")),
                Verdict::Final,
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_connection_that_failed_mid_call_is_retried_and_a_gateway_status_is_not() {
        // a stream reset under the call: tonic's status with the HTTP/2 error as its source
        let reset = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        let status = Status::from_error(Box::new(reset));
        assert!(
            matches!(status.code(), Code::Unknown | Code::Internal),
            "{status:?}"
        );
        assert!(is_transport_failure(&status), "{status:?}");
        assert_eq!(classify(&status), Verdict::Retry { after: None });
        // a gateway killed under a call: hyper's body error over the connection's I/O error
        #[derive(Debug, thiserror::Error)]
        #[error("error reading a body from connection")]
        struct Body(#[source] std::io::Error);
        let wrapped = Status::from_error(Box::new(Body(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ))));
        assert_eq!(classify(&wrapped), Verdict::Retry { after: None });
        // the same code with the same words, sent by a server, stays final
        let sent = Status::new(Code::Unknown, "h2 protocol error: error reading a body");
        assert!(!is_transport_failure(&sent));
        assert_eq!(classify(&sent), Verdict::Final);
    }

    #[test]
    fn retry_info_is_a_floor_under_the_backoff() {
        let policy = RetryPolicy::default();
        let hint = Some(Duration::from_millis(700));
        assert_eq!(policy.delay(0, hint, 1.0), Duration::from_millis(700));
        assert_eq!(policy.delay(0, None, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(6, hint, 1.0), Duration::from_millis(6400));
        assert!(policy.may_retry(9) && !policy.may_retry(10));
        let forever = RetryPolicy {
            max_attempts: None,
            ..policy
        };
        assert!(forever.may_retry(u32::MAX));
    }
}
