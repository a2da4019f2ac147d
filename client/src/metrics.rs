//! The client's counters, through the `metrics` facade: they reach whatever recorder the
//! application installs (e.g. `metrics-exporter-prometheus`) and cost nothing without one.
//!
//! | name | counts events |
//! |---|---|
//! | `client_events_sent_total` | handed to the gateway (once per batch, not per attempt) |
//! | `client_events_acknowledged_total` | durably queued by the gateway |
//! | `client_events_rejected_total` | refused one by one (see [`crate::Rejected`]) |
//! | `client_events_retried_total` | sent again after a retriable failure (per retry) |
//! | `client_events_failed_total` | in batches refused for good or given up on |
//! | `client_events_spooled_total` | written to the on-disk spool |
//! | `client_spool_full_total` | `publish` calls refused because the spool was full (calls) |

pub(crate) fn sent(events: u64) {
    ::metrics::counter!("client_events_sent_total").increment(events);
}

pub(crate) fn acknowledged(accepted: u64, rejected: u64) {
    ::metrics::counter!("client_events_acknowledged_total").increment(accepted);
    if rejected > 0 {
        ::metrics::counter!("client_events_rejected_total").increment(rejected);
    }
}

pub(crate) fn retried(events: u64) {
    ::metrics::counter!("client_events_retried_total").increment(events);
}

pub(crate) fn failed(events: u64) {
    ::metrics::counter!("client_events_failed_total").increment(events);
}

pub(crate) fn spooled(events: u64) {
    ::metrics::counter!("client_events_spooled_total").increment(events);
}

pub(crate) fn spool_full() {
    ::metrics::counter!("client_spool_full_total").increment(1);
}
