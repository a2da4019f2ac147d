//! Per-store quotas: `max_events_per_second` and `max_bytes_per_second` from the stores
//! file, enforced with one GCRA (generic cell rate algorithm) limiter per store that meters
//! both at once.
//!
//! A store's quota refills continuously at its rate and holds at most one second's worth
//! (burst = rate), so a store may send a full second of events (or bytes) in one request but
//! cannot save up idle seconds for a later flood. The bytes are those of the request's
//! events as queued (re-encoded, unknown fields gone): what the store costs Redis and
//! ClickHouse, whatever compression it used on the wire.
//!
//! Both dimensions are judged under one lock and taken only when both have room, so a
//! request refused for its bytes does not spend the store's events (and vice versa).
//! governor, which the event quota used before, meters one dimension and cannot give back
//! what it took, hence the few lines of GCRA here. One limiter per store, built at load,
//! means stores never contend for one another's state and a store without a limit costs a
//! single failed map lookup.
//!
//! The quotas are per gateway: N gateways behind a load balancer let a store send up to N
//! times its quota (docs/CLIENTS.md says how to size it). When the stores file is reloaded
//! ([`Quotas::update`]) a store whose limits did not change keeps its limiter and its state.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use crate::auth::{Store, Stores};

/// What a quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Events,
    Bytes,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Events => "events",
            Unit::Bytes => "bytes",
        })
    }
}

/// Why a store may not send this request now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The store sent more than its quota recently; it may retry after `retry_after`.
    #[error(
        "store {store:?} exceeded its quota of {limit} {unit} per second; retry in {} ms",
        retry_after.as_millis().max(1)
    )]
    Exceeded {
        store: Arc<str>,
        unit: Unit,
        limit: u64,
        retry_after: Duration,
    },
    /// The request alone holds more than the store may send in a second, so waiting cannot
    /// help: the batch must be split.
    #[error(
        "store {store:?} may send at most {limit} {unit} per second; a request of {amount} {unit} can never pass, split it"
    )]
    BatchAboveQuota {
        store: Arc<str>,
        unit: Unit,
        limit: u64,
        amount: u64,
    },
}

/// The limits of one store, as the stores file sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    events: Option<u64>,
    bytes: Option<u64>,
}

/// One store's limiter: for each dimension, the GCRA's theoretical arrival time, as
/// nanoseconds after `origin`.
struct Limiter {
    limits: Limits,
    origin: Instant,
    tat: Mutex<[u64; 2]>,
}

/// One second, the burst window: a store may send a second's quota at once.
const WINDOW_NS: u64 = 1_000_000_000;

impl Limiter {
    fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            origin: Instant::now(),
            tat: Mutex::new([0; 2]),
        }
    }

    /// Takes `events` and `bytes` at `now`, both or neither.
    fn check(
        &self,
        store: &Arc<str>,
        events: u64,
        bytes: impl FnOnce() -> u64,
        now: Instant,
    ) -> Result<(), QuotaError> {
        let bytes = self.limits.bytes.map_or(0, |_| bytes());
        let asked = [
            (Unit::Events, self.limits.events, events),
            (Unit::Bytes, self.limits.bytes, bytes),
        ];
        let now = now.saturating_duration_since(self.origin).as_nanos() as u64;
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *tat;
        let mut refused: Option<QuotaError> = None;
        for (i, (unit, limit, amount)) in asked.into_iter().enumerate() {
            let Some(limit) = limit else { continue };
            // GCRA: each cell moves the arrival time on by 1/limit s; a request fits while
            // that stays within one second of now
            let cost =
                u64::try_from(u128::from(amount) * u128::from(WINDOW_NS) / u128::from(limit))
                    .unwrap_or(u64::MAX);
            if cost > WINDOW_NS {
                return Err(QuotaError::BatchAboveQuota {
                    store: store.clone(),
                    unit,
                    limit,
                    amount,
                });
            }
            next[i] = tat[i].max(now) + cost;
            let over = next[i].saturating_sub(now + WINDOW_NS);
            let longer = match &refused {
                Some(QuotaError::Exceeded { retry_after, .. }) => {
                    Duration::from_nanos(over) > *retry_after
                }
                _ => true,
            };
            if over > 0 && longer {
                refused = Some(QuotaError::Exceeded {
                    store: store.clone(),
                    unit,
                    limit,
                    // exact: the request fits once the arrival time is a second away
                    retry_after: Duration::from_nanos(over).max(Duration::from_millis(1)),
                });
            }
        }
        match refused {
            Some(refusal) => Err(refusal),
            None => {
                *tat = next;
                Ok(())
            }
        }
    }
}

/// The rate limiters of every store that has a quota.
#[derive(Default)]
pub struct Quotas {
    by_store: RwLock<HashMap<Arc<str>, Arc<Limiter>>>,
}

impl Quotas {
    /// One limiter per store with `max_events_per_second` or `max_bytes_per_second`.
    pub fn new(stores: &Stores) -> Quotas {
        let quotas = Quotas::default();
        quotas.update(stores);
        quotas
    }

    /// Follows a reloaded stores file: new limiters for new or changed limits, the same
    /// ones (and their state) for unchanged limits, none for stores without a limit.
    pub fn update(&self, stores: &Stores) {
        let mut by_store = self.by_store.write().expect("quotas lock");
        let next = stores
            .iter()
            .filter_map(|store| {
                let limits = Limits {
                    events: store.max_events_per_second.map(u64::from),
                    bytes: store.max_bytes_per_second,
                };
                if limits.events.is_none() && limits.bytes.is_none() {
                    return None;
                }
                let kept = by_store
                    .get(&store.id)
                    .filter(|l| l.limits == limits)
                    .cloned();
                let limiter = kept.unwrap_or_else(|| Arc::new(Limiter::new(limits)));
                Some((store.id.clone(), limiter))
            })
            .collect();
        *by_store = next;
    }

    /// Takes `events`, and the request's bytes (asked of `bytes` only when the store has a
    /// byte quota), from the store's quota, or says when to retry. Nothing is taken when
    /// the answer is no, so a refused request does not eat into the next one's quota.
    pub fn check(
        &self,
        store: &Store,
        events: usize,
        bytes: impl FnOnce() -> usize,
    ) -> Result<(), QuotaError> {
        let Some(limiter) = self
            .by_store
            .read()
            .expect("quotas lock")
            .get(&store.id)
            .cloned()
        else {
            return Ok(());
        };
        limiter.check(&store.id, events as u64, || bytes() as u64, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token_sha256;

    fn stores() -> Stores {
        Stores::parse(&format!(
            "[[store]]\nid = \"a\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\nmax_events_per_second = 10\n\
             [[store]]\nid = \"b\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\n\
             [[store]]\nid = \"c\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\nmax_bytes_per_second = 1000\n",
            token_sha256("ta"),
            token_sha256("tb"),
            token_sha256("tc"),
        ))
        .unwrap()
    }

    fn store(stores: &Stores, token: &str) -> Store {
        stores
            .authenticate(Some(format!("Bearer {token}").as_bytes()))
            .unwrap()
            .clone()
    }

    #[test]
    fn a_store_gets_its_quota_and_then_a_retry_delay() {
        let stores = stores();
        let quotas = Quotas::new(&stores);
        let a = store(&stores, "ta");
        quotas.check(&a, 6, || 0).unwrap();
        quotas.check(&a, 4, || 0).unwrap();
        match quotas.check(&a, 5, || 0) {
            Err(QuotaError::Exceeded {
                unit: Unit::Events,
                limit,
                retry_after,
                ..
            }) => {
                assert_eq!(limit, 10);
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("expected Exceeded, got {other:?}"),
        }
    }

    #[test]
    fn stores_without_a_limit_and_oversized_batches() {
        let stores = stores();
        let quotas = Quotas::new(&stores);
        let b = store(&stores, "tb");
        for _ in 0..100 {
            quotas
                .check(&b, 10_000, || unreachable!("no byte quota"))
                .unwrap();
        }
        let a = store(&stores, "ta");
        assert!(matches!(
            quotas.check(&a, 11, || 0),
            Err(QuotaError::BatchAboveQuota {
                unit: Unit::Events,
                amount: 11,
                ..
            })
        ));
        // the refused batch took nothing
        quotas.check(&a, 10, || 0).unwrap();
    }

    #[test]
    fn bytes_are_metered_and_a_refusal_takes_neither_events_nor_bytes() {
        let stores = stores();
        let quotas = Quotas::new(&stores);
        let c = store(&stores, "tc");
        assert!(matches!(
            quotas.check(&c, 1, || 1001),
            Err(QuotaError::BatchAboveQuota {
                unit: Unit::Bytes,
                limit: 1000,
                amount: 1001,
                ..
            })
        ));
        quotas.check(&c, 1, || 600).unwrap();
        assert!(matches!(
            quotas.check(&c, 1, || 600),
            Err(QuotaError::Exceeded {
                unit: Unit::Bytes,
                limit: 1000,
                ..
            })
        ));
        // the refusal took nothing: 400 bytes are left
        quotas.check(&c, 1, || 400).unwrap();

        // both dimensions: a request over on bytes leaves the events untouched
        let limiter = Limiter::new(Limits {
            events: Some(10),
            bytes: Some(100),
        });
        let id: Arc<str> = "d".into();
        let now = Instant::now();
        assert!(limiter.check(&id, 5, || 101, now).is_err());
        assert!(limiter.check(&id, 5, || 60, now).is_ok());
        match limiter.check(&id, 1, || 60, now) {
            // 20 bytes too many at 100 bytes/s: exactly 200 ms
            Err(QuotaError::Exceeded {
                unit: Unit::Bytes,
                retry_after,
                ..
            }) => assert_eq!(retry_after, Duration::from_millis(200)),
            other => panic!("expected Exceeded, got {other:?}"),
        }
        let now = now + Duration::from_secs(1);
        assert!(limiter.check(&id, 10, || 100, now).is_ok());
        assert!(matches!(
            limiter.check(&id, 1, || 0, now),
            Err(QuotaError::Exceeded {
                unit: Unit::Events,
                ..
            })
        ));
        // a second later both have refilled
        assert!(
            limiter
                .check(&id, 10, || 100, now + Duration::from_secs(1))
                .is_ok()
        );
    }
}
