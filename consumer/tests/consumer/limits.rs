//! One source of limits: the time window is the gateway's alone. An operator widens it at
//! the gateway, and the events the gateway then accepts load through the real consumer
//! binary, none of them rejected for their time.

use std::time::Duration;

use crate::{
    helpers::{Env, event_ids, loaded, queued_batch},
    store::{self, Gateway},
    supervise::Running,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_widened_gateway_accepts_load_through_the_consumer() {
    let env = Env::shared().await;
    // far past the defaults (7 days old, 5 minutes ahead)
    let gateway = Gateway::start_with(
        &env.redis_url,
        &env.stream,
        &["--max-event-age", "400d", "--max-future-skew", "2d"],
    )
    .await;
    let mut client = store::connect(&gateway.url()).await;
    let day = 86_400;
    let mut sent = 0;
    for (sequence, shift) in [(1, -300 * day), (2, -30 * day), (3, day)] {
        let ids = event_ids(20);
        let mut events = queued_batch(&ids).events;
        for event in &mut events {
            event.occurred_at.as_mut().unwrap().seconds += shift;
        }
        let response = store::publish(&mut client, sequence, events).await.unwrap();
        assert_eq!(response.accepted, 20, "{response:?}");
        sent += 20;
    }

    let _consumer = Running::spawn(&env);
    testkit::eventually(
        Duration::from_secs(60),
        "every accepted event loaded",
        || async { Ok((env.xlen().await > 0 && loaded(&env).await? == sent).then_some(())) },
    )
    .await
    .unwrap();
    assert_eq!(env.count("SELECT count() FROM rejected_events").await, 0);
    assert_eq!(
        env.count("SELECT uniqExact(toDate(occurred_at)) FROM commerce_events")
            .await,
        3
    );
    gateway.shutdown().await.unwrap();
}
