//! `CONSUMER_SORTED_INSERTS`: the sink sends the event tables' rows in the tables' key order,
//! so that ClickHouse writes them without sorting them; without it, ClickHouse sorts them.

use consumer::{batch::RawEntry, sink::Sink};
use pipeline::{
    config::Compression,
    entry::{Fields, encode_batch},
};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_inserts_reach_clickhouse_in_the_tables_order() {
    // entries of random ids, as stores send them: each unsorted, and none after another
    let entries: Vec<RawEntry> = (0..20)
        .map(|i| RawEntry {
            id: format!("{}-0", i + 1),
            fields: Fields::new(encode_batch(&queued_batch(&event_ids(300))), None),
            deliveries: 1,
            attempts: 0,
        })
        .collect();
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
        assert_eq!(load.written.commerce, 6000);
        assert_eq!(env.rows().await, 6000);
        let (parts, already_sorted) = testkit::shared_clickhouse()
            .parts_written(&query_id, "INSERT INTO commerce_events ")
            .unwrap();
        assert_eq!(parts, 1, "one insert, one day");
        assert_eq!(
            already_sorted,
            u64::from(sorted),
            "sorted inserts arrive in the key's order, the others do not"
        );
    }
}
