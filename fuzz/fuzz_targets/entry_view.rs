//! Arbitrary bytes as a stream entry's batch: the consumer's borrowed decoding
//! (`Fields::decode_view`) must accept exactly what prost's `QueuedBatch::decode` accepts,
//! hold the same values, and refuse the rest with prost's own error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::{entry::Fields, proto::ingest::Event, view::EventView};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let fields = Fields::new(data.to_vec().into(), None);
    match (fields.decode_view(), fields.decode()) {
        (Ok(view), Ok(batch)) => {
            let events: Vec<EventView<'_>> = batch.events.iter().map(EventView::from).collect();
            assert_eq!(view.events, events);
            assert_eq!(view.store_id, batch.store_id);
            assert_eq!(view.region, batch.region);
            assert_eq!(view.received_at, batch.received_at);
            assert_eq!(view.rejected, batch.rejected);
            assert_eq!(view.rejected_not_kept, batch.rejected_not_kept);
            assert_eq!(view.from_prober, batch.from_prober);
            for (encoded, event) in view.encoded_events.iter().zip(&batch.events) {
                assert_eq!(Event::decode(*encoded).as_ref(), Ok(event));
            }
        }
        (Err(view), Err(prost)) => assert_eq!(view, prost),
        (view, prost) => panic!("view {view:?} but prost {prost:?}"),
    }
});
