//! Which errors are worth retrying, decided in one tested place, and the backoff between
//! attempts. Every caller (the gateway's Redis writer, the consumer's loads) asks here.
//!
//! Each rule has its reason beside it, as vector's ClickHouse sink does: a newcomer who
//! wonders why an error splits a batch or keeps it finds the answer next to the code.

use std::time::Duration;

/// What to do after an error. The classes are the decisions the services make, not the
/// kinds of error the clients report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The server is down, slow, overloaded or moving: the same request may succeed after
    /// a backoff. Nothing is wrong with the data or with us.
    Retriable,
    /// The server is full (Redis at `maxmemory` with `noeviction`): retrying helps only
    /// after the consumers have caught up, so a writer tells its client to slow down
    /// rather than that the server is gone. Redis still serves reads and the commands that
    /// free memory (`XACK`, `XTRIM`, `HDEL`, `XREADGROUP`), so the consumer skips its own
    /// bookkeeping writes (attempt counts, dead-letter copies) and keeps loading,
    /// acknowledging and trimming: that is what empties Redis.
    Full,
    /// The data is refused, and the same bytes fail the same way every time: split the
    /// batch until the refused entries are found and dead-letter them, so the rest flows.
    BadData,
    /// No entry is to blame, yet retrying fails until someone acts: the schema is missing,
    /// the credentials are wrong, a command is refused. Keep the data and retry with
    /// backoff; dead-lettering would throw away every entry for an operator's mistake.
    NeedsOperator,
}

/// A ClickHouse error code, what it decides, and why.
struct Rule {
    code: u32,
    class: Class,
    reason: &'static str,
}

/// ClickHouse error codes that are not [`Class::Retriable`], each with the reason. Codes
/// not listed (memory limits, too many parts, shutting down, ...) are retriable: waiting
/// helps them.
const CLICKHOUSE_RULES: &[Rule] = &[
    Rule {
        code: 6,
        class: Class::BadData,
        reason: "CANNOT_PARSE_TEXT: a value does not parse as its column type",
    },
    Rule {
        code: 16,
        class: Class::BadData,
        reason: "NO_SUCH_COLUMN_IN_TABLE: the row does not match the table",
    },
    Rule {
        code: 27,
        class: Class::BadData,
        reason: "CANNOT_PARSE_INPUT_ASSERTION_FAILED: malformed input data",
    },
    Rule {
        code: 33,
        class: Class::BadData,
        reason: "CANNOT_READ_ALL_DATA: RowBinary shorter than the schema expects",
    },
    Rule {
        code: 36,
        class: Class::BadData,
        reason: "BAD_ARGUMENTS: a value is out of what the function or column accepts",
    },
    Rule {
        code: 41,
        class: Class::BadData,
        reason: "CANNOT_PARSE_DATETIME: a time value does not parse",
    },
    Rule {
        code: 53,
        class: Class::BadData,
        reason: "TYPE_MISMATCH: a value has the wrong type for its column",
    },
    Rule {
        code: 60,
        class: Class::NeedsOperator,
        reason: "UNKNOWN_TABLE: the schema is missing; every entry would fail, a human must migrate",
    },
    Rule {
        code: 62,
        class: Class::BadData,
        reason: "SYNTAX_ERROR: the statement is fixed, so the data made it unparsable",
    },
    Rule {
        code: 69,
        class: Class::BadData,
        reason: "ARGUMENT_OUT_OF_BOUND: a value is out of range",
    },
    Rule {
        code: 70,
        class: Class::BadData,
        reason: "CANNOT_CONVERT_TYPE: a value does not fit its column",
    },
    Rule {
        code: 72,
        class: Class::BadData,
        reason: "CANNOT_PARSE_NUMBER: a number does not parse",
    },
    Rule {
        code: 81,
        class: Class::NeedsOperator,
        reason: "UNKNOWN_DATABASE: the schema is missing; every entry would fail, a human must migrate",
    },
    Rule {
        code: 117,
        class: Class::BadData,
        reason: "INCORRECT_DATA: the inserted data is invalid",
    },
    Rule {
        code: 130,
        class: Class::BadData,
        reason: "CANNOT_READ_ARRAY_FROM_TEXT: an array value does not parse",
    },
];

/// Classifies a ClickHouse client error.
pub fn classify_clickhouse(err: &clickhouse::error::Error) -> Class {
    use clickhouse::error::Error as E;
    match err {
        // The server is unreachable or slow: it may answer the same insert later.
        E::Network(_) | E::TimedOut => Class::Retriable,
        E::BadResponse(text) => clickhouse_code(text)
            .and_then(|code| CLICKHOUSE_RULES.iter().find(|r| r.code == code))
            .map_or(Class::Retriable, |rule| rule.class),
        // Serialization fails on our side before sending: the row cannot be encoded, and
        // the same row never will be.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => Class::BadData,
        // Anything else the client reports (decompression, a broken response) is about
        // the exchange, not the data: another attempt may go through.
        _ => Class::Retriable,
    }
}

/// Whether a ClickHouse error means the server could not be reached or did not answer in
/// time: nothing says it refused anything, so another replica may take the same request.
/// A replica that lost its ZooKeeper session (`Code: 242 TABLE_IS_READ_ONLY`) or is
/// shutting down answers, but is [`Class::Retriable`] too: [`fails_over`] decides on the
/// class, this only on reachability (migrations skip an unreachable replica, not a refusing
/// one).
pub fn clickhouse_unreachable(err: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error as E;
    matches!(err, E::Network(_) | E::TimedOut)
}

/// Whether a loader with several replica URLs should send its next attempt of a failed
/// insert to the next replica. Every retriable error does: a dead, partitioned, read-only
/// (no ZooKeeper session), overloaded or stopping replica serves the next attempt no
/// better than another, and the other replica deduplicates the identical block if the
/// first did write it (ReplicatedMergeTree keeps the last blocks' ids in ZooKeeper). Bad
/// data fails the same everywhere, and a missing schema needs an operator wherever it is:
/// those stay.
pub fn fails_over(err: &clickhouse::error::Error) -> bool {
    classify_clickhouse(err) == Class::Retriable
}

/// The reason of the rule that classifies ClickHouse error code `code`, if one does.
pub fn clickhouse_rule(code: u32) -> Option<&'static str> {
    CLICKHOUSE_RULES
        .iter()
        .find(|r| r.code == code)
        .map(|r| r.reason)
}

/// The numeric code in a ClickHouse error text such as `Code: 117. DB::Exception: ...`.
pub fn clickhouse_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
}

/// Classifies a Redis client error.
///
/// The stream's data is opaque bytes to Redis, so no Redis error is [`Class::BadData`]:
/// an error reply is about us, the setup or the server's state.
pub fn classify_redis(err: &fred::error::Error) -> Class {
    use fred::error::ErrorKind as K;
    // `OOM command not allowed when used memory > 'maxmemory'`: the consumers free memory
    // by acknowledging and trimming, so the write succeeds once they caught up.
    if is_redis_oom(err) {
        return Class::Full;
    }
    // `LOADING Redis is loading the dataset in memory`: a restarted server answers as
    // soon as its AOF is read back. `TRYAGAIN`: a cluster slot is being migrated.
    // `MASTERDOWN`: a replica lost its primary for a moment. `READONLY`: a primary demoted
    // by a failover, which the client leaves for the new one. `NOREPLICAS`: fewer replicas
    // than `min-replicas-to-write` are in touch. `MISCONF`: the server's last save failed
    // (its disk is full, say), and it refuses writes until one succeeds. Each is the server's
    // state, not the request's: the same write succeeds once an operator or a failover has
    // mended it, so a store keeps its events and retries (UNAVAILABLE), and is never told
    // to give them up. fred reports them all as `Unknown`, with the server's words.
    const SERVER_STATES: [&str; 6] = [
        "LOADING",
        "TRYAGAIN",
        "MASTERDOWN",
        "READONLY",
        "NOREPLICAS",
        "MISCONF",
    ];
    if SERVER_STATES
        .iter()
        .any(|prefix| err.details().starts_with(prefix))
    {
        return Class::Retriable;
    }
    // fred reports some of its own connection trouble as `Unknown` as well, in a sentence of
    // its own: "Failed to route command." (no connection to the node of the key's slot, on
    // fred's path without replica routing: a cluster node restarting), "Too many failed
    // write attempts." (a command that outlived its one write attempt). CI's cluster test
    // once saw a batch refused for good while a master restarted, and these are the errors
    // of that path the rules took for a refusal. A server's error reply always begins with
    // its code in capitals (`ERR`, `NOPERM`, `MISCONF`): what does not was never refused by
    // Redis, and is gone after a reconnect.
    if err.kind() == &K::Unknown && !is_redis_error_reply(err.details()) {
        return Class::Retriable;
    }
    match err.kind() {
        // The connection broke, the answer was late, the request was dropped with its
        // connection, the cluster moved a slot, the client found no connection to the node
        // of the key's slot (`Routing`: "Failed to route command." while a cluster node
        // restarts; an e2e cluster test saw a batch refused for good with
        // it), or the client's own queue is full: each is gone after a reconnect, a
        // redirect or a wait.
        K::IO | K::Timeout | K::Canceled | K::Cluster | K::Routing | K::Backpressure => {
            Class::Retriable
        }
        // Wrong credentials, ACL refusals, bad URLs or TLS settings, an unknown command or
        // an error reply nobody expected: the same call fails until someone fixes the
        // setup or the code.
        _ => Class::NeedsOperator,
    }
}

/// Whether `details` is an error reply of a Redis server: its first word is the error's
/// code, in capitals (`ERR syntax error`, `NOPERM ...`), as the RESP specification has it.
fn is_redis_error_reply(details: &str) -> bool {
    let code = details.split(' ').next().unwrap_or("");
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
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

    fn ch(text: &str) -> Class {
        classify_clickhouse(&E::BadResponse(text.into()))
    }

    #[test]
    fn clickhouse_data_errors_are_bad_data() {
        assert_eq!(
            ch("Code: 117. DB::Exception: Cannot parse input"),
            Class::BadData
        );
        assert_eq!(
            ch("Code: 6. DB::Exception: Cannot parse string"),
            Class::BadData
        );
        assert_eq!(ch("Code: 53. DB::Exception: Type mismatch"), Class::BadData);
        // serialization fails before sending: the row itself cannot be encoded
        assert_eq!(
            classify_clickhouse(&E::Custom("bad row".into())),
            Class::BadData
        );
    }

    #[test]
    fn a_missing_clickhouse_schema_needs_an_operator() {
        assert_eq!(
            ch("Code: 60. DB::Exception: Table x doesn't exist"),
            Class::NeedsOperator
        );
        assert_eq!(
            ch("Code: 81. DB::Exception: Database x doesn't exist"),
            Class::NeedsOperator
        );
    }

    #[test]
    fn clickhouse_load_and_network_errors_are_retriable() {
        assert_eq!(
            ch("Code: 241. DB::Exception: Memory limit exceeded"),
            Class::Retriable
        );
        assert_eq!(
            ch("Code: 252. DB::Exception: Too many parts"),
            Class::Retriable
        );
        assert_eq!(ch("no code at all"), Class::Retriable);
        assert_eq!(classify_clickhouse(&E::TimedOut), Class::Retriable);
        assert_eq!(
            classify_clickhouse(&E::Network("refused".into())),
            Class::Retriable
        );
    }

    #[test]
    fn every_clickhouse_rule_has_one_code_and_a_reason() {
        for (i, rule) in CLICKHOUSE_RULES.iter().enumerate() {
            assert!(!rule.reason.is_empty(), "code {} has no reason", rule.code);
            assert_ne!(rule.class, Class::Retriable, "unlisted codes are retriable");
            assert!(
                CLICKHOUSE_RULES[i + 1..]
                    .iter()
                    .all(|r| r.code != rule.code),
                "code {} is listed twice",
                rule.code
            );
        }
        assert!(clickhouse_rule(117).unwrap().starts_with("INCORRECT_DATA"));
        assert_eq!(clickhouse_rule(241), None);
        assert_eq!(clickhouse_code("x Code: 60. DB::Exception"), Some(60));
        assert_eq!(clickhouse_code("no code"), None);
    }

    #[test]
    fn an_unreachable_or_read_only_replica_is_failed_over_bad_data_is_not() {
        assert!(clickhouse_unreachable(&E::Network("refused".into())));
        assert!(clickhouse_unreachable(&E::TimedOut));
        let read_only =
            E::BadResponse("Code: 242. DB::Exception: Table is in readonly mode".into());
        assert!(!clickhouse_unreachable(&read_only));
        assert!(fails_over(&read_only));
        assert!(fails_over(&E::Network("connection closed".into())));
        assert!(fails_over(&E::BadResponse(
            "Code: 319. DB::Exception: Unknown status, client must retry".into()
        )));
        assert!(!fails_over(&E::BadResponse(
            "Code: 117. DB::Exception: Cannot parse input".into()
        )));
        assert!(!fails_over(&E::BadResponse(
            "Code: 60. DB::Exception: Table x doesn't exist".into()
        )));
    }

    #[test]
    fn a_full_redis_is_full_not_gone() {
        use fred::error::{Error, ErrorKind};
        let oom = Error::new(
            ErrorKind::Unknown,
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
        assert!(is_redis_oom(&oom));
        assert_eq!(classify_redis(&oom), Class::Full);
    }

    #[test]
    fn redis_connection_trouble_is_retriable() {
        use fred::error::{Error, ErrorKind};
        for kind in [
            ErrorKind::IO,
            ErrorKind::Timeout,
            ErrorKind::Canceled,
            ErrorKind::Cluster,
            ErrorKind::Routing,
            ErrorKind::Backpressure,
        ] {
            let err = Error::new(kind.clone(), "connection reset");
            assert_eq!(classify_redis(&err), Class::Retriable, "{kind:?}");
        }
        let loading = Error::new(
            ErrorKind::Unknown,
            "LOADING Redis is loading the dataset in memory",
        );
        assert_eq!(classify_redis(&loading), Class::Retriable);
        // fred's own words for connection trouble, under both kinds it uses for them
        for (kind, words) in [
            (ErrorKind::Routing, "Failed to route command."),
            (ErrorKind::Unknown, "Failed to route command."),
            (ErrorKind::Unknown, "Too many failed write attempts."),
            (ErrorKind::Unknown, "Missing expected connection."),
        ] {
            let err = Error::new(kind.clone(), words);
            assert_eq!(classify_redis(&err), Class::Retriable, "{kind:?} {words}");
        }
        for reply in [
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "READONLY You can't write against a read only replica.",
            "NOREPLICAS Not enough good replicas to write.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk",
        ] {
            let err = Error::new(ErrorKind::Unknown, reply);
            assert_eq!(classify_redis(&err), Class::Retriable, "{reply}");
        }
    }

    #[test]
    fn refused_redis_commands_need_an_operator() {
        use fred::error::{Error, ErrorKind};
        let syntax = Error::new(ErrorKind::InvalidArgument, "ERR syntax error");
        assert_eq!(classify_redis(&syntax), Class::NeedsOperator);
        let auth = Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair");
        assert_eq!(classify_redis(&auth), Class::NeedsOperator);
        for reply in [
            "NOPERM this user has no permissions",
            "ERR unknown command 'XADD'",
            "ERR",
        ] {
            let err = Error::new(ErrorKind::Unknown, reply);
            assert_eq!(classify_redis(&err), Class::NeedsOperator, "{reply}");
        }
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
