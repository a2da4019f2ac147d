//! Per-store event quotas: `max_events_per_second` from the stores file, enforced with one
//! GCRA rate limiter (governor) per store.
//!
//! A store's quota refills continuously at `max_events_per_second` and holds at most one
//! second's worth (burst = rate), so a store may send a full second of events in one request
//! but cannot save up idle seconds for a later flood. One limiter per store, built at load,
//! means stores never contend for one another's state and a store without a limit costs a
//! single failed map lookup.
//!
//! The quotas are per gateway: N gateways behind a load balancer let a store send up to N
//! times its quota (docs/CLIENTS.md says how to size it). When the stores file is reloaded
//! ([`Quotas::update`]) a store whose limit did not change keeps its limiter and its state.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, clock::Clock};

use crate::auth::{Store, Stores};

/// Why a store may not send this request now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The store sent more than its quota recently; it may retry after `retry_after`.
    #[error(
        "store {store:?} exceeded its quota of {limit} events per second; retry in {} ms",
        retry_after.as_millis().max(1)
    )]
    Exceeded {
        store: Arc<str>,
        limit: u32,
        retry_after: Duration,
    },
    /// The request alone holds more events than the store may send in a second, so waiting
    /// cannot help: the batch must be split.
    #[error(
        "store {store:?} may send at most {limit} events per second; a request of {events} events can never pass, split it"
    )]
    BatchAboveQuota {
        store: Arc<str>,
        limit: u32,
        events: usize,
    },
}

type Limiter = Arc<(u32, DefaultDirectRateLimiter)>;

/// The rate limiters of every store that has a quota.
#[derive(Default)]
pub struct Quotas {
    by_store: RwLock<HashMap<Arc<str>, Limiter>>,
}

impl Quotas {
    /// One limiter per store with `max_events_per_second`.
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
                let limit = NonZeroU32::new(store.max_events_per_second?)?;
                let kept = by_store
                    .get(&store.id)
                    .filter(|l| l.0 == limit.get())
                    .cloned();
                let limiter = kept.unwrap_or_else(|| {
                    let quota = Quota::per_second(limit).allow_burst(limit);
                    Arc::new((limit.get(), DefaultDirectRateLimiter::direct(quota)))
                });
                Some((store.id.clone(), limiter))
            })
            .collect();
        *by_store = next;
    }

    /// Takes `events` from the store's quota, or says when to retry. Nothing is taken when
    /// the answer is no, so a refused request does not eat into the next one's quota.
    pub fn check(&self, store: &Store, events: usize) -> Result<(), QuotaError> {
        let Some(found) = self
            .by_store
            .read()
            .expect("quotas lock")
            .get(&store.id)
            .cloned()
        else {
            return Ok(());
        };
        let (limit, limiter) = &*found;
        let too_big = || QuotaError::BatchAboveQuota {
            store: store.id.clone(),
            limit: *limit,
            events,
        };
        let n = u32::try_from(events)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(too_big)?;
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(QuotaError::Exceeded {
                store: store.id.clone(),
                limit: *limit,
                // governor's wait is until the limiter has room for one cell; a request of
                // n events needs n, so this is a lower bound, which is what RetryInfo means
                retry_after: not_until
                    .wait_time_from(limiter.clock().now())
                    .max(Duration::from_millis(1)),
            }),
            Err(_insufficient) => Err(too_big()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token_sha256;

    fn stores() -> Stores {
        Stores::parse(&format!(
            "[[store]]\nid = \"a\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\nmax_events_per_second = 10\n\
             [[store]]\nid = \"b\"\nregion = \"asia\"\ntoken_sha256 = \"{}\"\n",
            token_sha256("ta"),
            token_sha256("tb")
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
        quotas.check(&a, 6).unwrap();
        quotas.check(&a, 4).unwrap();
        match quotas.check(&a, 5) {
            Err(QuotaError::Exceeded {
                limit, retry_after, ..
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
            quotas.check(&b, 10_000).unwrap();
        }
        let a = store(&stores, "ta");
        assert!(matches!(
            quotas.check(&a, 11),
            Err(QuotaError::BatchAboveQuota { events: 11, .. })
        ));
        // the refused batch took nothing
        quotas.check(&a, 10).unwrap();
    }
}
