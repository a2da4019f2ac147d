//! Arbitrary bytes as a `Publish` request body: decoding and [`gateway::ingest::prepare`]
//! must never panic, a prepared request must account for every event it was given, and the
//! entry must decode to exactly the events that were validated and accepted, the kept
//! rejected ones being their bytes as sent.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use gateway::{
    auth::Store,
    ingest::{Bounds, DEFAULT_MAX_REJECTED_KEPT, prepare},
    wire::RawRequest,
};
use libfuzzer_sys::fuzz_target;
use pipeline::{
    entry::decode_batch,
    proto::ingest::{Event, PublishRequest},
    region::Region,
    validate::Limits,
};
use prost::Message;

/// The gateway's default `GATEWAY_MAX_EVENTS`.
const MAX_EVENTS: usize = 10_000;
/// A fixed "now", so that a crash replays the same way on every run.
const NOW: Duration = Duration::from_secs(1_800_000_000);

static STORE: LazyLock<Store> = LazyLock::new(|| Store {
    id: "eu-1".into(),
    region: Region::Europe,
    max_events_per_second: None,
    max_bytes_per_second: None,
    role: gateway::auth::Role::Store,
});

fuzz_target!(|data: &[u8]| {
    // Undecodable bytes are refused by the codec (the request's own fields) or by the
    // handler (its events, as views), as prost refuses them; only what decodes reaches
    // `prepare`.
    let plain = PublishRequest::decode(data);
    let Ok(req) = RawRequest::decode(data.to_vec().into()) else {
        assert!(plain.is_err(), "prost decodes what the codec refused");
        return;
    };
    let Ok(views) = req.decode_events() else {
        assert!(plain.is_err(), "prost decodes what the views refused");
        return;
    };
    let decoded = plain.expect("prost refuses what the views decoded").events;
    let events = decoded.len();
    assert_eq!(views.events.len(), events);
    let bounds = Bounds {
        max_events: MAX_EVENTS,
        max_rejected_kept: DEFAULT_MAX_REJECTED_KEPT,
    };
    let Ok(prepared) = prepare(&STORE, views, &Limits::default(), bounds, NOW) else {
        return;
    };
    // Every event is either queued or rejected with a reason, never lost or doubled.
    let response = &prepared.response;
    assert_eq!(response.accepted as usize + response.rejected.len(), events);
    // the request's entries, each bounded, as one batch
    let mut batch = pipeline::proto::queue::QueuedBatch::default();
    for entry in &prepared.entries {
        assert!(entry.len() <= pipeline::entry::MAX_BATCH_BYTES, "a bounded entry");
        let part = decode_batch(entry).expect("the entry decodes");
        batch.events.extend(part.events);
        batch.rejected.extend(part.rejected);
        batch.rejected_not_kept += part.rejected_not_kept;
    }
    assert_eq!(batch.events.len(), response.accepted as usize);
    // the first rejected events are kept, the rest counted
    assert_eq!(
        batch.rejected.len() + batch.rejected_not_kept as usize,
        response.rejected.len()
    );
    assert!(batch.rejected.len() <= DEFAULT_MAX_REJECTED_KEPT);
    // the queued events decode to exactly the accepted ones, the kept rejected bytes to theirs
    let rejected: Vec<usize> = response.rejected.iter().map(|r| r.index as usize).collect();
    let accepted: Vec<&Event> = (0..events)
        .filter(|i| !rejected.contains(i))
        .map(|i| &decoded[i])
        .collect();
    assert!(batch.events.iter().eq(accepted));
    for (kept, index) in batch.rejected.iter().zip(&rejected) {
        assert_eq!(Event::decode(&kept.raw_event[..]).ok().as_ref(), Some(&decoded[*index]));
    }
});
