//! Which errors are worth retrying, decided in one tested place, and the backoff between
//! attempts.
//!
//! A retriable error may succeed if the same request is sent again later (the server was
//! down, overloaded or timed out). A permanent one fails the same way every time (the data
//! or the query is wrong), so retrying only delays the entries behind it.

use std::time::Duration;

/// What to do after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff.
    Retriable,
    /// Do not retry: the data or the request is bad.
    Permanent,
}

/// ClickHouse error codes that mean "this data or statement is wrong", so retrying the
/// same insert cannot help. Each with the reason.
const CLICKHOUSE_PERMANENT: &[(u32, &str)] = &[
    (
        6,
        "CANNOT_PARSE_TEXT: a value does not parse as its column type",
    ),
    (
        16,
        "NO_SUCH_COLUMN_IN_TABLE: the row does not match the table",
    ),
    (
        27,
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED: malformed input data",
    ),
    (
        33,
        "CANNOT_READ_ALL_DATA: RowBinary shorter than the schema expects",
    ),
    (36, "BAD_ARGUMENTS"),
    (41, "CANNOT_PARSE_DATETIME"),
    (53, "TYPE_MISMATCH"),
    (60, "UNKNOWN_TABLE: schema missing; a human must migrate"),
    (62, "SYNTAX_ERROR"),
    (69, "ARGUMENT_OUT_OF_BOUND"),
    (70, "CANNOT_CONVERT_TYPE"),
    (72, "CANNOT_PARSE_NUMBER"),
    (81, "UNKNOWN_DATABASE: schema missing; a human must migrate"),
    (117, "INCORRECT_DATA: the inserted data is invalid"),
    (130, "CANNOT_READ_ARRAY_FROM_TEXT"),
];

/// Classifies a ClickHouse client error.
///
/// Network failures, timeouts and server-side errors not known to be about the data
/// (memory limits, too many parts, shutting down) are retriable: waiting helps them.
pub fn classify_clickhouse(err: &clickhouse::error::Error) -> Class {
    use clickhouse::error::Error as E;
    match err {
        E::Network(_) | E::TimedOut => Class::Retriable,
        E::BadResponse(text) => match clickhouse_code(text) {
            Some(code) if CLICKHOUSE_PERMANENT.iter().any(|(c, _)| *c == code) => Class::Permanent,
            _ => Class::Retriable,
        },
        // Serialization errors happen on our side before sending: the row cannot be encoded.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => Class::Permanent,
        _ => Class::Retriable,
    }
}

/// The numeric code in a ClickHouse error text such as `Code: 117. DB::Exception: ...`.
pub fn clickhouse_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
}

/// Classifies a Redis client error. Only an explicit error reply about the command or
/// its data is permanent; an OOM reply is retriable (the consumer frees memory by
/// acknowledging and trimming), as are I/O, timeouts and cluster moves.
pub fn classify_redis(err: &fred::error::Error) -> Class {
    use fred::error::ErrorKind as K;
    match err.kind() {
        K::InvalidArgument | K::InvalidCommand | K::Parse | K::Unknown
            if !is_redis_oom(err) && !err.details().starts_with("LOADING") =>
        {
            Class::Permanent
        }
        _ => Class::Retriable,
    }
}

/// Whether Redis refused a write because it reached `maxmemory` with `noeviction`.
pub fn is_redis_oom(err: &fred::error::Error) -> bool {
    err.details().starts_with("OOM") || err.details().contains("maxmemory")
}

/// Capped exponential backoff with full jitter: attempt 0 waits up to `base`, each
/// further attempt doubles the cap, up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), given a uniform sample in 0..1.
    pub fn delay(&self, attempt: u32, unit_sample: f64) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        // Full jitter, but never less than a tenth of the cap, so retries do not spin.
        cap.mul_f64(0.1 + 0.9 * unit_sample.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    #[test]
    fn clickhouse_errors_are_classified_by_code() {
        let bad = E::BadResponse("Code: 117. DB::Exception: Cannot parse input".into());
        assert_eq!(classify_clickhouse(&bad), Class::Permanent);
        let oom = E::BadResponse("Code: 241. DB::Exception: Memory limit exceeded".into());
        assert_eq!(classify_clickhouse(&oom), Class::Retriable);
        let parts = E::BadResponse("Code: 252. DB::Exception: Too many parts".into());
        assert_eq!(classify_clickhouse(&parts), Class::Retriable);
        assert_eq!(classify_clickhouse(&E::TimedOut), Class::Retriable);
        assert_eq!(
            classify_clickhouse(&E::Network("refused".into())),
            Class::Retriable
        );
        assert_eq!(
            classify_clickhouse(&E::Custom("bad row".into())),
            Class::Permanent
        );
        assert_eq!(clickhouse_code("x Code: 60. DB::Exception"), Some(60));
        assert_eq!(clickhouse_code("no code"), None);
    }

    #[test]
    fn redis_errors_are_classified() {
        use fred::error::{Error, ErrorKind};
        let oom = Error::new(
            ErrorKind::Unknown,
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
        assert!(is_redis_oom(&oom));
        assert_eq!(classify_redis(&oom), Class::Retriable);
        let io = Error::new(ErrorKind::IO, "connection reset");
        assert_eq!(classify_redis(&io), Class::Retriable);
        let syntax = Error::new(ErrorKind::InvalidArgument, "ERR syntax error");
        assert_eq!(classify_redis(&syntax), Class::Permanent);
    }

    #[test]
    fn backoff_grows_capped_with_jitter() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(10));
        assert_eq!(b.delay(30, 0.0), Duration::from_secs(1));
        assert!(b.delay(2, 0.5) < b.delay(2, 1.0));
    }
}
