//! Graceful shutdown: requests in flight finish; every OK answer has its events in the stream
//! and no refused request has any.

use std::{collections::HashSet, time::Duration};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_every_acknowledged_request_is_queued_and_no_refused_one() {
    let gateway = spawn_gateway(&testkit::shared_redis().url(), &[]).await;
    let channel = gateway.channel().await;
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let mut client =
                pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(
                    channel.clone(),
                );
            tokio::spawn(async move {
                // (event ids, acknowledged) of every request sent, until the first refusal
                let mut sent = vec![];
                loop {
                    let events = eu_events(3);
                    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
                    let result = client.publish(authed(EU_TOKEN, request(0, events))).await;
                    let ok = result.is_ok();
                    sent.push((ids, ok));
                    if !ok {
                        return sent;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (redis_url, stream_key) = (gateway.redis_url.clone(), gateway.stream_key.clone());
    gateway.shutdown().await.unwrap();

    let mut sent = vec![];
    for sender in senders {
        let mut requests = tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .expect("senders see the gateway go away")
            .unwrap();
        sent.append(&mut requests);
    }
    let queued: HashSet<String> = stream_batches(&redis_url, &stream_key)
        .await
        .into_iter()
        .flat_map(|b| b.events.into_iter().map(|e| e.event_id))
        .collect();
    let acknowledged = sent.iter().filter(|(_, ok)| *ok).count();
    assert!(acknowledged > 0, "nothing was acknowledged before shutdown");
    for (ids, ok) in &sent {
        for id in ids {
            assert_eq!(
                queued.contains(id),
                *ok,
                "event {id}: acknowledged {ok} but queued {}",
                queued.contains(id)
            );
        }
    }
    assert_eq!(queued.len(), acknowledged * 3);
}
