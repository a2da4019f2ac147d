//! `reporter serve` runs until its shutdown future completes, without writing anything
//! before the scheduled time.

use std::time::Duration;

use reporter::{run::RunOptions, schedule::serve};

use crate::fixture;

#[tokio::test]
async fn serve_stops_when_shutdown_completes() {
    let client = fixture::database().await;
    let (bucket, store) = fixture::store().await;
    let at = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5)).time();
    let options = RunOptions::default();
    let run = serve(&client, &store, at, &options, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("serve returns once shutdown completes");
    assert!(
        fixture::keys(&bucket).is_empty(),
        "nothing written before the scheduled time"
    );
}
