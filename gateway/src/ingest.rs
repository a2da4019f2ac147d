//! One publish request, from decoded protobuf to a queued batch and a response.
//!
//! This is the only place that decides what is accepted. It is split in two so that the
//! CPU work can be benchmarked and fuzzed without Redis:
//! - [`prepare`] is pure: validation splits the events, accepted ones are moved (not
//!   copied) into one `QueuedBatch` together with the raw bytes of the first
//!   [`Bounds::max_rejected_kept`] rejected ones (the rest are counted), the batch is
//!   encoded, and the response is built;
//! - [`Ingest::publish`] admits the request (size, backpressure, quota), prepares it and
//!   appends the entry to Redis, returning the response only after Redis confirmed it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use pipeline::{
    entry::encode_batch,
    proto::{
        ingest::{Event, FieldViolation, PublishRequest, PublishResponse, Rejection},
        queue::{QueuedBatch, RejectedEvent},
    },
    validate::{self, Context, Limits, Sender},
};
use prost::Message;

use crate::{
    auth::{Role, Store},
    backpressure::Backpressure,
    error::ApiError,
    queue::Queue,
    quota::Quotas,
};

/// How much one request may hold and put into the queue.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Events in one request (`GATEWAY_MAX_EVENTS`).
    pub max_events: usize,
    /// Rejected events of one request whose raw bytes are queued (for `rejected_events`);
    /// the rest are counted only (`GATEWAY_MAX_REJECTED_KEPT`). Bounds what a request of
    /// invalid events adds to the queue: without it, 10,000 invalid events become 10,000
    /// raw copies plus their violation texts, several times the request.
    pub max_rejected_kept: usize,
}

/// The default of [`Bounds::max_rejected_kept`]: enough to see what is wrong with a
/// store's events, few enough that they cost the queue at most about one request.
pub const DEFAULT_MAX_REJECTED_KEPT: usize = 100;

/// Turns requests into queued entries.
#[derive(Clone)]
pub struct Ingest {
    queue: Queue,
    limits: Limits,
    bounds: Bounds,
    quotas: Arc<Quotas>,
    backpressure: Backpressure,
}

/// A request ready to be queued: what [`prepare`] computed without touching Redis.
#[derive(Debug)]
pub struct Prepared {
    /// The encoded `QueuedBatch`: the stream entry's batch field.
    pub entry: Bytes,
    /// The answer to send once `entry` is queued, and only then.
    pub response: PublishResponse,
}

impl Ingest {
    pub fn new(
        queue: Queue,
        limits: Limits,
        bounds: Bounds,
        quotas: Arc<Quotas>,
        backpressure: Backpressure,
    ) -> Ingest {
        Ingest {
            queue,
            limits,
            bounds,
            quotas,
            backpressure,
        }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Validates and queues one request from an authenticated store.
    pub async fn publish(
        &self,
        store: &Store,
        req: PublishRequest,
    ) -> Result<PublishResponse, ApiError> {
        self.publish_within(store, req, |_| Ok(())).await
    }

    /// [`Ingest::publish`], asking `hold` for the bytes that the prepared entry and response
    /// hold while Redis writes (the edge's budget); refused when it says no.
    pub async fn publish_within(
        &self,
        store: &Store,
        req: PublishRequest,
        hold: impl FnOnce(usize) -> Result<(), ApiError>,
    ) -> Result<PublishResponse, ApiError> {
        // Size first: a malformed request is answered as such even under overload, and the
        // quota below must not be asked about an unbounded number of events.
        check_size(&req.events, self.bounds.max_events)?;
        // Overload next: it takes nothing, whereas the quota check spends the store's
        // allowance, which a request refused for overload should not cost.
        let shard = self.queue.shards().of_store(&store.id);
        self.backpressure.check(shard)?;
        // the byte quota meters the events as they will be queued; only stores with a byte
        // quota pay for measuring them
        self.quotas
            .check(store, req.events.len(), || req.encoded_len())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let Prepared { entry, response } = prepare(store, req, &self.limits, self.bounds, now)?;
        // decoded, the response takes about three times its encoded size (a String and a
        // struct per violation)
        hold(entry.len() + 3 * response.encoded_len())?;
        self.queue.append(shard, entry, None).await?;
        metrics::counter!("gateway_events_accepted_total", "region" => store.region.as_str())
            .increment(u64::from(response.accepted));
        metrics::counter!("gateway_events_rejected_total", "region" => store.region.as_str())
            .increment(response.rejected.len() as u64);
        let not_kept = response
            .rejected
            .len()
            .saturating_sub(self.bounds.max_rejected_kept);
        metrics::counter!("gateway_rejected_events_not_kept_total", "region" => store.region.as_str())
            .increment(not_kept as u64);
        Ok(response)
    }
}

/// Refuses empty requests and requests above `max_events`.
fn check_size(events: &[Event], max_events: usize) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::EmptyRequest);
    }
    if events.len() > max_events {
        return Err(ApiError::TooManyEvents {
            count: events.len(),
            max: max_events,
        });
    }
    Ok(())
}

/// The CPU part of a publish: checks the request's size and every event, and encodes the
/// entry and the response, as of `now` (since the Unix epoch).
///
/// Whatever a rejected event echoes (its id, values in violation texts) is cut at
/// [`validate::MAX_ECHO_BYTES`], and only the first `bounds.max_rejected_kept` rejected
/// events are queued with their raw bytes, so the entry holds at most the accepted events,
/// those raw bytes and a bounded text per kept event.
///
/// Pure, and meant to be total: any decoded `PublishRequest` should yield an entry or an
/// [`ApiError`], never a panic (the `publish_request` fuzz target checks that). It repeats the size check
/// that [`Ingest::publish`] makes before admission, so that it is safe on its own.
pub fn prepare(
    store: &Store,
    req: PublishRequest,
    limits: &Limits,
    bounds: Bounds,
    now: Duration,
) -> Result<Prepared, ApiError> {
    let PublishRequest {
        sequence,
        events,
        all_or_nothing,
    } = req;
    check_size(&events, bounds.max_events)?;
    let ctx = Context {
        limits,
        now_unix: now.as_secs() as i64,
        sender: Some(match &store.role {
            Role::Store => Sender::Store {
                store_id: &store.id,
                region: store.region,
            },
            Role::Prober(known) => Sender::Prober {
                prober_id: &store.id,
                region: store.region,
                stores: Some(&**known),
            },
        }),
    };
    let checked = validate::check_batch(&ctx, events);
    if all_or_nothing && !checked.is_clean() {
        return Err(ApiError::InvalidEvents {
            rejected: checked.rejected.len(),
            violations: checked
                .rejected
                .into_iter()
                .flat_map(|r| r.violations)
                .collect(),
        });
    }

    let kept = checked.rejected.len().min(bounds.max_rejected_kept);
    let rejected_not_kept = (checked.rejected.len() - kept) as u32;
    let mut rejected_rows = Vec::with_capacity(kept);
    let mut rejections = Vec::with_capacity(checked.rejected.len());
    for rejected in checked.rejected {
        let event_id = validate::truncated(&rejected.event.event_id).into_owned();
        if rejected_rows.len() < kept {
            rejected_rows.push(RejectedEvent {
                raw_event: rejected.event.encode_to_vec(),
                event_id: event_id.clone(),
                reason: rejected.reason(),
            });
        }
        rejections.push(Rejection {
            index: rejected.index as u32,
            event_id,
            violations: rejected
                .violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: v.field,
                    description: v.description,
                })
                .collect(),
        });
    }
    // Moved, not copied, and in place: `Accepted` is an `Event` underneath.
    let accepted: Vec<Event> = checked
        .accepted
        .into_iter()
        .map(validate::Accepted::into_event)
        .collect();

    let accepted_count = accepted.len() as u32;
    let batch = QueuedBatch {
        store_id: store.id.to_string(),
        region: store.region.to_proto() as i32,
        received_at: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
        events: accepted,
        rejected: rejected_rows,
        rejected_not_kept,
        from_prober: matches!(store.role, Role::Prober(_)),
    };
    Ok(Prepared {
        entry: encode_batch(&batch),
        response: PublishResponse {
            sequence,
            accepted: accepted_count,
            rejected: rejections,
        },
    })
}

#[cfg(test)]
mod tests {
    use pipeline::{
        entry::decode_batch,
        proto::ingest::{ProbeResult, event::Payload},
        region::Region,
    };

    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn store() -> Store {
        Store {
            id: "eu-1".into(),
            region: Region::Europe,
            max_events_per_second: None,
            max_bytes_per_second: None,
            role: crate::auth::Role::Store,
        }
    }

    fn bounds(max_events: usize) -> Bounds {
        Bounds {
            max_events,
            max_rejected_kept: DEFAULT_MAX_REJECTED_KEPT,
        }
    }

    fn probe(event_id: &str) -> Event {
        Event {
            event_id: event_id.into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: NOW.as_secs() as i64 - 60,
                nanos: 0,
            }),
            store_id: "eu-1".into(),
            region: Region::Europe.to_proto() as i32,
            payload: Some(Payload::Probe(ProbeResult {
                target: "checkout".into(),
                up: true,
                status_code: 200,
                response_time_ms: 120,
                network_latency_ms: 30,
                bandwidth_bytes_per_second: 1_000_000,
                cpu_load: 0.5,
                ..ProbeResult::default()
            })),
        }
    }

    fn request(events: Vec<Event>, all_or_nothing: bool) -> PublishRequest {
        PublishRequest {
            sequence: 7,
            events,
            all_or_nothing,
        }
    }

    #[test]
    fn prepare_queues_accepted_events_and_rejected_bytes_in_one_entry() {
        let good = probe("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10");
        let bad = probe("not-a-uuid");
        let req = request(vec![good.clone(), bad.clone()], false);
        let prepared = prepare(&store(), req, &Limits::default(), bounds(10), NOW).unwrap();

        assert_eq!(prepared.response.sequence, 7);
        assert_eq!(prepared.response.accepted, 1);
        assert_eq!(prepared.response.rejected.len(), 1);
        assert_eq!(prepared.response.rejected[0].index, 1);
        assert_eq!(prepared.response.rejected[0].event_id, "not-a-uuid");

        let batch = decode_batch(&prepared.entry).unwrap();
        assert_eq!(batch.store_id, "eu-1");
        assert_eq!(batch.received_at.unwrap().seconds, NOW.as_secs() as i64);
        assert_eq!(batch.events, vec![good]);
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(batch.rejected[0].raw_event, bad.encode_to_vec());
        assert!(batch.rejected[0].reason.starts_with("events[1].event_id: "));
    }

    #[test]
    fn prepare_refuses_bad_sizes_and_invalid_all_or_nothing_requests() {
        let limits = Limits::default();
        let id = "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10";
        assert!(matches!(
            prepare(&store(), request(vec![], false), &limits, bounds(10), NOW),
            Err(ApiError::EmptyRequest)
        ));
        assert!(matches!(
            prepare(
                &store(),
                request(vec![probe(id); 3], false),
                &limits,
                bounds(2),
                NOW
            ),
            Err(ApiError::TooManyEvents { count: 3, max: 2 })
        ));
        let req = request(vec![probe(id), probe("x")], true);
        assert!(matches!(
            prepare(&store(), req, &limits, bounds(10), NOW),
            Err(ApiError::InvalidEvents { rejected: 1, .. })
        ));
    }

    #[test]
    fn prepare_keeps_the_first_rejected_events_and_counts_the_rest() {
        let huge = "\u{1}".repeat(100_000);
        let events: Vec<Event> = (0..5)
            .map(|i| {
                let mut event = probe(&format!("{i}{huge}"));
                if let Some(Payload::Probe(p)) = &mut event.payload {
                    p.status_code = 0;
                }
                event
            })
            .collect();
        let sent: usize = events.iter().map(|e| e.encoded_len()).sum();
        let bounds = Bounds {
            max_events: 10,
            max_rejected_kept: 2,
        };
        let prepared = prepare(
            &store(),
            request(events, false),
            &Limits::default(),
            bounds,
            NOW,
        )
        .unwrap();
        // every rejection is answered, with its id cut
        let response = &prepared.response;
        assert_eq!(response.rejected.len(), 5);
        for (i, r) in response.rejected.iter().enumerate() {
            assert!(r.event_id.len() <= validate::MAX_ECHO_BYTES);
            assert!(r.event_id.starts_with(&i.to_string()) && r.event_id.ends_with('…'));
        }
        // two are queued with their raw bytes and bounded reasons, three only counted
        let batch = decode_batch(&prepared.entry).unwrap();
        assert_eq!((batch.rejected.len(), batch.rejected_not_kept), (2, 3));
        assert_eq!(batch.rejected[1].event_id, response.rejected[1].event_id);
        assert!(batch.rejected.iter().all(|r| r.reason.len() < 1024));
        assert!(
            prepared.entry.len() < sent / 2,
            "{} of {sent}",
            prepared.entry.len()
        );
    }
}
