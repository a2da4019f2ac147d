//! The global budget of memory that requests in flight may hold, shared by every connection:
//! a request that would take it past its size is refused with RESOURCE_EXHAUSTED and
//! RetryInfo instead of being read further (load shedding), so a flood of requests costs
//! refusals, never an out-of-memory kill.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// Bytes that requests in flight hold, and the most they may.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

/// The budget had no room for a request's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway holds its limit of {limit} bytes of requests in flight; retry shortly")]
pub struct Exhausted {
    pub limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently held.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty charge, to grow as bytes arrive.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Takes `bytes`, or nothing when they do not fit.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Result<Charge, Exhausted> {
        let mut charge = self.charge();
        charge.grow(bytes)?;
        Ok(charge)
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
            metrics::gauge!("gateway_in_flight_bytes").set((before - bytes) as f64);
        }
    }
}

/// Bytes taken from a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// Takes `bytes` more, or nothing when they do not fit.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let budget = &self.budget;
        let taken = budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|&after| after <= budget.limit)
            });
        match taken {
            Ok(before) => {
                self.bytes += bytes;
                metrics::gauge!("gateway_in_flight_bytes").set((before + bytes) as f64);
                Ok(())
            }
            Err(_) => {
                metrics::counter!("gateway_requests_shed_total").increment(1);
                Err(Exhausted {
                    limit: budget.limit,
                })
            }
        }
    }

    /// Gives back `bytes` (at most what is held) before the charge is dropped.
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.release(bytes);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_limit_and_are_given_back_when_dropped() {
        let budget = Budget::new(100);
        let a = budget.take(60).unwrap();
        assert_eq!(budget.take(41).unwrap_err(), Exhausted { limit: 100 });
        let mut b = budget.take(40).unwrap();
        assert_eq!(budget.used(), 100);
        b.shrink(30);
        assert_eq!((b.bytes(), budget.used()), (10, 70));
        b.grow(30).unwrap();
        assert!(b.grow(1).is_err(), "a failed grow takes nothing");
        assert_eq!(b.bytes(), 40);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
