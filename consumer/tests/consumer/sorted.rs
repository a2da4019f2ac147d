//! `CONSUMER_SORTED_INSERTS`, on by default: the sink sends the event tables' rows in the
//! tables' key order, so that ClickHouse writes them without sorting them; turned off,
//! ClickHouse sorts them. Both load the same rows.

use consumer::{batch::RawEntry, sink::Sink};
use pipeline::{
    config::Compression,
    entry::{Fields, encode_batch},
    proto::ingest::event::Payload,
};

use crate::helpers::*;

/// Entries of random ids, as stores send them (each unsorted, none after another), every
/// event's values its own, and every seventh event one the consumer's rules reject (its id
/// is not a UUID), so that accepted events are not at the indices of the batch's events.
fn entries() -> Vec<RawEntry> {
    (0..20)
        .map(|k| {
            let mut batch = queued_batch(&event_ids(300));
            for (i, event) in batch.events.iter_mut().enumerate() {
                if i % 7 == 3 {
                    event.event_id = format!("not-a-uuid-{k}-{i}");
                }
                if let Some(Payload::Commerce(c)) = &mut event.payload {
                    c.product_id = 1 + i as u64;
                    c.user_id = 1 + k * 1000 + i as u64;
                    c.session_id = format!("session-{k}-{}", "x".repeat(i % 50));
                }
            }
            RawEntry {
                id: format!("{}-0", k + 1),
                fields: Fields::new(encode_batch(&batch), None),
                deliveries: 1,
                attempts: 0,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_inserts_reach_clickhouse_in_the_tables_order() {
    let entries = entries();
    let rejected_per_entry = (0..300).filter(|i| i % 7 == 3).count() as u64;
    let accepted = 20 * (300 - rejected_per_entry);
    let mut contents = Vec::new();
    for sorted in [true, false] {
        let env = Env::shared().await;
        // creates the tables
        consumer::Worker::connect(&env.settings("c1", &[]))
            .await
            .unwrap();
        let query_id = testkit::unique_name("sorted");
        let client = env
            .clickhouse()
            .with_setting("log_queries", "1")
            .with_setting("query_id", &query_id);
        let sink = Sink::new(vec![client.clone()], Compression::None).with_sorted_inserts(sorted);
        let load = sink.write(&entries, 3, &Default::default()).await.unwrap();
        assert_eq!(load.written.commerce as u64, accepted);
        assert_eq!(load.written.rejected as u64, 20 * rejected_per_entry);
        assert_eq!(env.rows().await, accepted);
        let (parts, already_sorted) = testkit::shared_clickhouse()
            .parts_written(&query_id, "INSERT INTO commerce_events ")
            .unwrap();
        assert_eq!(parts, 1, "one insert, one day");
        assert_eq!(
            already_sorted,
            u64::from(sorted),
            "sorted inserts arrive in the key's order, the others do not"
        );
        let text = env
            .clickhouse()
            .query("SELECT * FROM commerce_events ORDER BY event_id")
            .fetch_bytes("TabSeparated")
            .unwrap()
            .collect()
            .await
            .unwrap();
        contents.push(text);
    }
    assert!(
        contents[0] == contents[1],
        "sorted and unsorted inserts load the same rows"
    );
}
