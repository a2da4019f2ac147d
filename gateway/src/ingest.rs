//! One publish request, from decoded protobuf to a queued batch and a response.
//!
//! This is the only place that decides what is accepted: validation splits the events,
//! accepted ones are moved (not copied) into one `QueuedBatch` together with the rejected
//! ones' raw bytes, the batch is appended to Redis as one entry, and only then is the
//! response built.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use pipeline::{
    entry::encode_batch,
    proto::{
        ingest::{FieldViolation, PublishRequest, PublishResponse, Rejection},
        queue::{QueuedBatch, RejectedEvent},
    },
    validate::{self, Context, Limits, Sender},
};
use prost::Message;

use crate::{
    auth::Store, backpressure::Backpressure, error::ApiError, queue::Queue, quota::Quotas,
};

/// Turns requests into queued entries.
#[derive(Clone)]
pub struct Ingest {
    queue: Queue,
    limits: Limits,
    max_events: usize,
    quotas: Arc<Quotas>,
    backpressure: Backpressure,
}

impl Ingest {
    pub fn new(
        queue: Queue,
        limits: Limits,
        max_events: usize,
        quotas: Arc<Quotas>,
        backpressure: Backpressure,
    ) -> Ingest {
        Ingest {
            queue,
            limits,
            max_events,
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
        let PublishRequest {
            sequence,
            events,
            all_or_nothing,
        } = req;
        if events.is_empty() {
            return Err(ApiError::EmptyRequest);
        }
        if events.len() > self.max_events {
            return Err(ApiError::TooManyEvents {
                count: events.len(),
                max: self.max_events,
            });
        }
        // Overload first: it takes nothing, whereas the quota check spends the store's
        // allowance, which a request refused for overload should not cost.
        self.backpressure.check()?;
        self.quotas.check(store, events.len())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ctx = Context {
            limits: &self.limits,
            now_unix: now.as_secs() as i64,
            sender: Some(Sender {
                store_id: &store.id,
                region: store.region,
            }),
        };
        let verdict = validate::check_batch(&ctx, &events);
        if all_or_nothing && !verdict.is_clean() {
            return Err(ApiError::InvalidEvents {
                rejected: verdict.rejected.len(),
                violations: verdict.rejected.into_iter().flat_map(|(_, v)| v).collect(),
            });
        }

        let mut accepted = Vec::with_capacity(events.len() - verdict.rejected.len());
        let mut rejected_rows = Vec::with_capacity(verdict.rejected.len());
        let mut rejections = Vec::with_capacity(verdict.rejected.len());
        let mut bad = verdict.rejected.into_iter().peekable();
        for (index, event) in events.into_iter().enumerate() {
            match bad.next_if(|(i, _)| *i == index) {
                None => accepted.push(event),
                Some((_, violations)) => {
                    let reason = validate::reason(&violations);
                    rejected_rows.push(RejectedEvent {
                        raw_event: event.encode_to_vec(),
                        event_id: event.event_id.clone(),
                        reason,
                    });
                    rejections.push(Rejection {
                        index: index as u32,
                        event_id: event.event_id,
                        violations: violations
                            .into_iter()
                            .map(|v| FieldViolation {
                                field: v.field,
                                description: v.description,
                            })
                            .collect(),
                    });
                }
            }
        }

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
        };
        self.queue.append(encode_batch(&batch), None).await?;
        metrics::counter!("gateway_events_accepted_total", "region" => store.region.as_str())
            .increment(accepted_count as u64);
        metrics::counter!("gateway_events_rejected_total", "region" => store.region.as_str())
            .increment(rejections.len() as u64);
        Ok(PublishResponse {
            sequence,
            accepted: accepted_count,
            rejected: rejections,
        })
    }
}
