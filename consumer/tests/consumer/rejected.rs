//! Events the gateway rejected reach `rejected_events` as bad rows with their raw bytes, and
//! those it only counted (beyond `GATEWAY_MAX_REJECTED_KEPT`) as one row saying how many.

use std::time::Duration;

use pipeline::proto::queue::RejectedEvent;

use crate::helpers::*;

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct Rejected {
    event_id: String,
    reason: String,
    raw: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rejections_load_as_bad_rows_and_the_ones_not_kept_as_one_count() {
    let env = Env::shared().await;
    let mut batch = queued_batch(&event_ids(3));
    batch.rejected = (0..2)
        .map(|i| RejectedEvent {
            raw_event: vec![0x0a, 0x01, b'0' + i],
            event_id: format!("bad-{i}"),
            reason: format!("events[{i}].event_id: must be a UUID"),
        })
        .collect();
    batch.rejected_not_kept = 98;
    env.publish_batch(&batch).await;

    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.rows().await == 3
    })
    .await;
    let rows: Vec<Rejected> = env
        .clickhouse()
        .query(
            "SELECT event_id, reason, raw FROM rejected_events WHERE source = 'gateway' \
             ORDER BY event_id",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].event_id, "");
    assert_eq!(rows[0].reason, consumer::sink::not_kept_reason(98));
    assert!(rows[0].raw.is_empty());
    assert_eq!(
        (rows[1].event_id.as_str(), rows[1].raw.as_slice()),
        ("bad-0", &[0x0a, 0x01, b'0'][..])
    );
    assert_eq!(rows[2].reason, "events[1].event_id: must be a UUID");
}
