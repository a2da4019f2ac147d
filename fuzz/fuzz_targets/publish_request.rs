//! Arbitrary bytes as a `Publish` request body: decoding and [`gateway::ingest::prepare`]
//! must never panic, and a prepared request must account for every event it was given.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use gateway::{
    auth::Store,
    ingest::{Bounds, DEFAULT_MAX_REJECTED_KEPT, prepare},
};
use libfuzzer_sys::fuzz_target;
use pipeline::{
    entry::decode_batch, proto::ingest::PublishRequest, region::Region, validate::Limits,
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
    // Undecodable bytes are tonic's to refuse; only what decodes reaches `prepare`.
    let Ok(req) = PublishRequest::decode(data) else {
        return;
    };
    let events = req.events.len();
    let bounds = Bounds {
        max_events: MAX_EVENTS,
        max_rejected_kept: DEFAULT_MAX_REJECTED_KEPT,
    };
    let Ok(prepared) = prepare(&STORE, req, &Limits::default(), bounds, NOW) else {
        return;
    };
    // Every event is either queued or rejected with a reason, never lost or doubled.
    let response = &prepared.response;
    assert_eq!(response.accepted as usize + response.rejected.len(), events);
    let batch = decode_batch(&prepared.entry).expect("the entry decodes");
    assert_eq!(batch.events.len(), response.accepted as usize);
    // the first rejected events are kept, the rest counted
    assert_eq!(
        batch.rejected.len() + batch.rejected_not_kept as usize,
        response.rejected.len()
    );
    assert!(batch.rejected.len() <= DEFAULT_MAX_REJECTED_KEPT);
});
