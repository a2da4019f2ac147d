//! One publish request, from decoded protobuf to a queued batch and a response.
//!
//! This is the only place that decides what is accepted. It is split in two so that the
//! CPU work can be benchmarked and fuzzed without Redis:
//! - [`prepare`] is pure: validation splits the decoded events (views of the request's
//!   bytes, `wire::DecodedRequest`), and one `QueuedBatch` is written holding the accepted events' bytes as the store sent them (not encoded again)
//!   and the raw bytes of the first [`Bounds::max_rejected_kept`] rejected ones (the rest
//!   are counted), and the response is built;
//! - [`Ingest::publish`] decodes the request's events, admits the request (size,
//!   backpressure, quota), prepares it and appends the entry to Redis, returning the response only after Redis confirmed it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use pipeline::{
    entry::encode_batches,
    proto::{
        ingest::{FieldViolation, PublishResponse, Rejection},
        queue::{QueuedBatch, RejectedEvent},
    },
    validate::{self, Context, Limits, Sender, Violation},
};
use prost::Message;

use crate::{
    auth::{Role, Store},
    backpressure::Backpressure,
    error::ApiError,
    queue::Queue,
    quota::Quotas,
    wire::{DecodedRequest, EventBytes, RawRequest},
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
    /// The encoded `QueuedBatch`es: the batch fields of the request's stream entries, one
    /// unless its events take more than `pipeline::entry::MAX_BATCH_BYTES`.
    pub entries: Vec<Bytes>,
    /// The answer to send once `entries` are queued, and only then.
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
        req: RawRequest,
    ) -> Result<PublishResponse, ApiError> {
        self.publish_within(store, req, |_| Ok(())).await
    }

    /// [`Ingest::publish`], asking `hold` for the bytes that the prepared entry and response
    /// hold while Redis writes (the edge's budget); refused when it says no.
    pub async fn publish_within(
        &self,
        store: &Store,
        req: RawRequest,
        hold: impl FnOnce(usize) -> Result<(), ApiError>,
    ) -> Result<PublishResponse, ApiError> {
        // The events first, as views of the message: an undecodable request is refused
        // before anything else, as when the codec decoded the events (the edge bounded
        // their number and charged their decoded cost before tonic read the message).
        let decoded = req.decode_events()?;
        // Size next: a malformed request is answered as such even under overload, and the
        // quota below must not be asked about an unbounded number of events.
        check_size(decoded.events.len(), self.bounds.max_events)?;
        check_event_sizes(&decoded.bytes, decoded.events.len())?;
        // Overload next: it takes nothing, whereas the quota check spends the store's
        // allowance, which a request refused for overload should not cost.
        let shard = self.queue.shards().of_store(&store.id);
        self.backpressure.check(shard)?;
        // The byte quota meters the message: its events are queued as they were sent, so
        // what the entry holds of them is at most the message, unknown fields and repeated
        // fields included, which re-encoding the decoded events would not count.
        self.quotas
            .check(store, decoded.events.len(), || req.message_len())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let Prepared { entries, response } =
            prepare(store, decoded, &self.limits, self.bounds, now)?;
        // decoded, the response takes about three times its encoded size (a String and a
        // struct per violation)
        hold(entries.iter().map(Bytes::len).sum::<usize>() + 3 * response.encoded_len())?;
        self.queue.append(shard, entries, None).await?;
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
fn check_size(count: usize, max_events: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::EmptyRequest);
    }
    if count > max_events {
        return Err(ApiError::TooManyEvents {
            count,
            max: max_events,
        });
    }
    Ok(())
}

/// Refuses a request holding an event above [`validate::MAX_EVENT_BYTES`] as its store
/// encoded it, naming each: every event and every kept rejected event's raw bytes then fit
/// one stream entry (`pipeline::entry::MAX_BATCH_BYTES`).
fn check_event_sizes(bytes: &EventBytes<'_>, count: usize) -> Result<(), ApiError> {
    let max = validate::MAX_EVENT_BYTES;
    if bytes.largest() <= max {
        return Ok(());
    }
    let violations: Vec<Violation> = (0..count)
        .filter_map(|index| {
            let len = bytes.get(index).len();
            (len > max).then(|| Violation {
                field: format!("events[{index}]"),
                description: format!(
                    "takes {len} bytes as encoded; an event may take at most {max}"
                ),
            })
        })
        .collect();
    Err(ApiError::EventTooLarge { max, violations })
}

/// The CPU part of a publish: checks the request's size and every event, and encodes the
/// entries and the response, as of `now` (since the Unix epoch).
///
/// Whatever a rejected event echoes (its id, values in violation texts) is cut at
/// [`validate::MAX_ECHO_BYTES`], and only the first `bounds.max_rejected_kept` rejected
/// events are queued with their raw bytes, so the entry holds at most the accepted events,
/// those raw bytes and a bounded text per kept event.
///
/// Accepted events are queued as the bytes they were decoded from, rejected ones kept as
/// theirs: the consumer decodes from those bytes exactly the events validated here (see
/// [`RawRequest::decode_events`]), whatever odd encoding they came in.
///
/// Pure, and meant to be total: any decoded request should yield an entry or an
/// [`ApiError`], never a panic (the `publish_request` fuzz target checks that). It repeats the size
/// checks that [`Ingest::publish`] makes before admission, so that it is safe on its own.
pub fn prepare(
    store: &Store,
    req: DecodedRequest<'_>,
    limits: &Limits,
    bounds: Bounds,
    now: Duration,
) -> Result<Prepared, ApiError> {
    let DecodedRequest {
        sequence,
        all_or_nothing,
        events,
        bytes,
    } = req;
    check_size(events.len(), bounds.max_events)?;
    let count = events.len();
    check_event_sizes(&bytes, count)?;
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

    // The accepted events' bytes, in request order: every index but the rejected ones. The
    // views are done with once validated.
    let mut rejected_indices = checked.rejected.iter().map(|r| r.index).peekable();
    let accepted: Vec<&[u8]> = (0..count)
        .filter(|&index| rejected_indices.next_if_eq(&index).is_none())
        .map(|index| bytes.get(index))
        .collect();
    drop(checked.accepted);

    let kept = checked.rejected.len().min(bounds.max_rejected_kept);
    let rejected_not_kept = (checked.rejected.len() - kept) as u32;
    let mut rejected_rows = Vec::with_capacity(kept);
    let mut rejections = Vec::with_capacity(checked.rejected.len());
    for rejected in checked.rejected {
        let event_id = validate::truncated(rejected.event.event_id).into_owned();
        if rejected_rows.len() < kept {
            rejected_rows.push(RejectedEvent {
                raw_event: bytes.get(rejected.index).to_vec(),
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
    let accepted_count = accepted.len() as u32;
    let batch = QueuedBatch {
        store_id: store.id.to_string(),
        region: store.region.to_proto() as i32,
        received_at: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
        events: Vec::new(),
        rejected: rejected_rows,
        rejected_not_kept,
        from_prober: matches!(store.role, Role::Prober(_)),
    };
    Ok(Prepared {
        entries: encode_batches(batch, &accepted),
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
        proto::ingest::{Event, ProbeResult, PublishRequest, event::Payload},
        region::Region,
    };

    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    /// The one entry of a request that fits one.
    fn only(prepared: &Prepared) -> &Bytes {
        assert_eq!(prepared.entries.len(), 1, "one entry");
        &prepared.entries[0]
    }

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

    fn request(events: Vec<Event>, all_or_nothing: bool) -> RawRequest {
        RawRequest::from_request(&PublishRequest {
            sequence: 7,
            events,
            all_or_nothing,
        })
    }

    /// `req` prepared by the default store, limits and bounds, as the handler does.
    fn prepared(req: &RawRequest) -> Prepared {
        prepare(
            &store(),
            req.decode_events().unwrap(),
            &Limits::default(),
            bounds(10),
            NOW,
        )
        .unwrap()
    }

    /// A request of events given as their bytes, each behind the key of field 2 and a
    /// length in `pad` extra bytes (a varint may be longer than it needs to be).
    fn request_of_bytes(events: &[Vec<u8>], pad: usize) -> RawRequest {
        let mut message = vec![0x08, 0x07]; // sequence = 7
        for event in events {
            message.push(0x12);
            message.extend(long_varint(event.len() as u64, pad));
            message.extend(event);
        }
        RawRequest::decode(message.into()).expect("a valid request")
    }

    /// `value` as a varint padded to `pad` more bytes than it needs, as protobuf allows.
    fn long_varint(value: u64, pad: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        prost::encoding::encode_varint(value, &mut bytes);
        if pad > 0 {
            *bytes.last_mut().unwrap() |= 0x80;
            bytes.extend(std::iter::repeat_n(0x80, pad - 1));
            bytes.push(0x00);
        }
        bytes
    }

    /// Whether `needle` occurs in `haystack` as it is.
    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Events that decode to valid events but are not what prost would write for them.
    fn odd_but_valid_events() -> Vec<Vec<u8>> {
        let id = |i: u8| format!("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a1{i}");
        // unknown fields of every wire type inside the event: varint (99), bytes (100),
        // fixed64 (101), fixed32 (102), and a group (103) holding a field
        let mut unknown = probe(&id(0)).encode_to_vec();
        unknown.extend([0x98, 0x06, 0x2a]);
        unknown.extend([0xa2, 0x06, 0x03, b'a', b'b', b'c']);
        unknown.extend([0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
        unknown.extend([0xb5, 0x06, 1, 2, 3, 4]);
        unknown.extend([0xbb, 0x06, 0x08, 0x01, 0xbc, 0x06]);
        // event_id twice, the last one winning; the first one is invalid
        let mut twice = Event::encode_to_vec(&Event {
            event_id: "NOT-A-UUID".into(),
            ..Event::default()
        });
        twice.extend(probe(&id(1)).encode_to_vec());
        // occurred_at twice: the messages merge, seconds from the first, nanos from the second
        let mut merged = Event {
            occurred_at: None,
            ..probe(&id(2))
        }
        .encode_to_vec();
        let mut seconds = vec![0x08];
        seconds.extend(long_varint(NOW.as_secs() - 60, 0));
        merged.push(0x12);
        merged.extend(long_varint(seconds.len() as u64, 0));
        merged.extend(&seconds);
        merged.extend([0x12, 0x02, 0x10, 0x05]);
        // a string's length and the region in varints longer than needed
        let mut long = vec![0x0a];
        long.extend(long_varint(36, 3));
        long.extend(id(3).as_bytes());
        let rest = Event {
            event_id: String::new(),
            region: 0,
            ..probe(&id(3))
        };
        long.extend(rest.encode_to_vec());
        long.push(0x20);
        long.extend(long_varint(Region::Europe.to_proto() as u64, 4));
        vec![unknown, twice, merged, long]
    }

    #[test]
    fn odd_but_valid_events_are_queued_as_sent_and_decode_to_what_was_validated() {
        let events = odd_but_valid_events();
        let req = request_of_bytes(&events, 2);
        let validated = PublishRequest::decode(&req.message()[..]).unwrap().events;
        // decoding the request as tonic did before gives the same events
        assert_eq!(validated[2].occurred_at.unwrap().nanos, 5);
        assert_eq!(
            validated[1].event_id,
            "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a11"
        );
        let prepared = prepared(&req);
        assert_eq!(prepared.response.accepted, 4, "{:?}", prepared.response);

        let batch = decode_batch(only(&prepared)).unwrap();
        assert_eq!(batch.events, validated);
        for event in &events {
            assert!(contains(only(&prepared), event), "queued as sent");
        }
        // none of them is what prost writes for the decoded event
        for (event, decoded) in events.iter().zip(&validated) {
            assert_ne!(event, &decoded.encode_to_vec());
        }
    }

    #[test]
    fn a_rejected_event_is_kept_as_the_bytes_it_came_in() {
        let good = probe("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10").encode_to_vec();
        let mut bad = probe("not-a-uuid").encode_to_vec();
        bad.extend([0x98, 0x06, 0x2a]); // an unknown field, which encoding would drop
        let prepared = prepare(
            &store(),
            request_of_bytes(&[good.clone(), bad.clone()], 1)
                .decode_events()
                .unwrap(),
            &Limits::default(),
            bounds(10),
            NOW,
        )
        .unwrap();
        let batch = decode_batch(only(&prepared)).unwrap();
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(batch.rejected[0].raw_event, bad);
        assert_eq!(batch.events, [Event::decode(&good[..]).unwrap()]);
    }

    #[test]
    fn canonical_requests_are_queued_byte_for_byte_as_prost_encodes_them() {
        let id = |i: u8| format!("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a1{i}");
        let events = vec![probe(&id(0)), probe("bad"), probe(&id(1)), probe(&id(2))];
        let prepared = prepare(
            &store(),
            request(events.clone(), false).decode_events().unwrap(),
            &Limits::default(),
            bounds(10),
            NOW,
        )
        .unwrap();
        // what encoding the decoded events gives, as the gateway did before
        let batch = decode_batch(only(&prepared)).unwrap();
        let before = QueuedBatch {
            events: vec![events[0].clone(), events[2].clone(), events[3].clone()],
            ..batch.clone()
        };
        assert_eq!(batch, before);
        assert_eq!(*only(&prepared), pipeline::entry::encode_batch(&before));
    }

    /// An event whose only content beside a valid probe is unknown groups nested `depth`
    /// deep: prost refuses nesting at its recursion limit, and must refuse or accept it in
    /// the request exactly as the consumer will in the entry.
    #[test]
    fn nested_unknown_groups_are_refused_or_queued_exactly_as_the_consumer_decodes_them() {
        let mut outcomes = Vec::new();
        for depth in 95..=100 {
            let mut event = probe("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10").encode_to_vec();
            event.extend([0x9bu8, 0x06].repeat(depth));
            event.extend([0x9cu8, 0x06].repeat(depth));
            let mut message = vec![0x12];
            message.extend(long_varint(event.len() as u64, 0));
            message.extend(&event);
            let plain = PublishRequest::decode(&message[..]);
            let raw = RawRequest::decode(message.into()).expect("the request's own fields");
            let decoded = raw.decode_events();
            assert_eq!(decoded.is_ok(), plain.is_ok(), "depth {depth}");
            let Ok(decoded) = decoded else {
                outcomes.push(false);
                continue;
            };
            let prepared = prepare(&store(), decoded, &Limits::default(), bounds(10), NOW).unwrap();
            assert_eq!(prepared.response.accepted, 1);
            let batch = decode_batch(only(&prepared)).expect("the consumer decodes the entry");
            assert_eq!(batch.events, plain.unwrap().events);
            outcomes.push(true);
        }
        // the limit lies within the range: both outcomes were seen
        assert!(
            outcomes.contains(&true) && outcomes.contains(&false),
            "{outcomes:?}"
        );
    }

    #[test]
    fn prepare_queues_accepted_events_and_rejected_bytes_in_one_entry() {
        let good = probe("0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10");
        let bad = probe("not-a-uuid");
        let req = request(vec![good.clone(), bad.clone()], false);
        let prepared = prepared(&req);

        assert_eq!(prepared.response.sequence, 7);
        assert_eq!(prepared.response.accepted, 1);
        assert_eq!(prepared.response.rejected.len(), 1);
        assert_eq!(prepared.response.rejected[0].index, 1);
        assert_eq!(prepared.response.rejected[0].event_id, "not-a-uuid");

        let batch = decode_batch(only(&prepared)).unwrap();
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
            prepare(
                &store(),
                request(vec![], false).decode_events().unwrap(),
                &limits,
                bounds(10),
                NOW
            ),
            Err(ApiError::EmptyRequest)
        ));
        assert!(matches!(
            prepare(
                &store(),
                request(vec![probe(id); 3], false).decode_events().unwrap(),
                &limits,
                bounds(2),
                NOW
            ),
            Err(ApiError::TooManyEvents { count: 3, max: 2 })
        ));
        let req = request(vec![probe(id), probe("x")], true);
        assert!(matches!(
            prepare(
                &store(),
                req.decode_events().unwrap(),
                &limits,
                bounds(10),
                NOW
            ),
            Err(ApiError::InvalidEvents { rejected: 1, .. })
        ));
    }

    #[test]
    fn prepare_keeps_the_first_rejected_events_and_counts_the_rest() {
        let huge = "\u{1}".repeat(60_000);
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
            request(events, false).decode_events().unwrap(),
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
        let batch = decode_batch(only(&prepared)).unwrap();
        assert_eq!((batch.rejected.len(), batch.rejected_not_kept), (2, 3));
        assert_eq!(batch.rejected[1].event_id, response.rejected[1].event_id);
        assert!(batch.rejected.iter().all(|r| r.reason.len() < 1024));
        assert!(
            only(&prepared).len() < sent / 2,
            "{} of {sent}",
            only(&prepared).len()
        );
    }

    /// A probe of id `i` whose target takes `len` bytes: valid or not, it is `len` and a
    /// few more bytes as encoded.
    fn probe_of(i: usize, len: usize) -> Event {
        let mut event = probe(&format!("0b7f2b8e-6a47-4d3a-9d51-{i:012}"));
        if let Some(Payload::Probe(p)) = &mut event.payload {
            p.target = "t".repeat(len);
        }
        event
    }

    #[test]
    fn a_request_holding_an_event_above_the_event_limit_is_refused_whole_naming_it() {
        let max = validate::MAX_EVENT_BYTES;
        let fits = probe_of(0, max - 200);
        let over = probe_of(1, max);
        assert!(fits.encoded_len() <= max && over.encoded_len() > max);
        let req = request(vec![fits.clone(), over.clone(), fits, over.clone()], false);
        let err = prepare(
            &store(),
            req.decode_events().unwrap(),
            &Limits::default(),
            bounds(10),
            NOW,
        )
        .unwrap_err();
        let ApiError::EventTooLarge {
            max: limit,
            violations,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(limit, max);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["events[1]", "events[3]"]);
        assert_eq!(
            violations[0].description,
            format!(
                "takes {} bytes as encoded; an event may take at most 65536",
                over.encoded_len()
            )
        );
        // at the limit is fine, and then the rules speak (the target is too long)
        let at = probe_of(2, max - 200);
        let prepared = prepared(&request(vec![at], false));
        assert_eq!(prepared.response.rejected.len(), 1);
    }

    #[test]
    fn a_request_larger_than_an_entry_is_queued_as_several_bounded_entries() {
        let events: Vec<Event> = (0..10_000).map(|i| probe_of(i, 120)).collect();
        let req = request(events.clone(), false);
        let prepared = prepare(
            &store(),
            req.decode_events().unwrap(),
            &Limits::default(),
            bounds(10_000),
            NOW,
        )
        .unwrap();
        assert_eq!(prepared.response.accepted, 10_000);
        assert!(prepared.entries.len() > 1, "{}", prepared.entries.len());
        let mut queued = Vec::new();
        for entry in &prepared.entries {
            assert!(entry.len() <= pipeline::entry::MAX_BATCH_BYTES);
            let batch = decode_batch(entry).unwrap();
            assert_eq!(batch.store_id, "eu-1");
            queued.extend(batch.events);
        }
        assert_eq!(queued, events, "every event once, in order");
    }
}
