//! Rebuild: a day dropped from ClickHouse and restored from the lake reports the same bytes.

use std::collections::BTreeMap;

use crate::helpers::*;

/// Every report object of `date` in `bucket`, the manifest without its `generated_at`.
async fn reports(env: &Env, bucket: &str, date: time::Date) -> BTreeMap<String, Vec<u8>> {
    let store = e2e::report_store(&env.s3_endpoint, bucket).await;
    let (_, keys) = reporter::run::run(&env.clickhouse(), &store, date)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for key in keys {
        let mut body = store.get_if_exists(&key).await.unwrap().unwrap().to_vec();
        if key.ends_with("manifest.json") {
            let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            json.as_object_mut().unwrap().remove("generated_at");
            body = serde_json::to_vec(&json).unwrap();
        }
        out.insert(key, body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_restored_from_the_archive_reports_the_same_bytes() {
    let env = Env::shared();
    let (_, base) = env.publish(3000, 0, 11).await;
    let date = e2e::utc_date(base);
    env.load(3000).await;
    let mut worker = env.worker(&[]).await;
    drain(&mut worker).await;
    let store = env.store().await;
    let s3 = testkit::shared_s3();
    let before_bucket = testkit::unique_bucket();
    s3.create_bucket(&before_bucket).unwrap();
    let before = reports(&env, &before_bucket, date).await;
    assert!(before.len() > 3, "{:?}", before.keys());

    // The day is lost: its partitions dropped from both event tables.
    let client = env.clickhouse();
    let month = format!("{}{:02}", date.year(), date.month() as u8);
    for table in ["commerce_events", "probe_results"] {
        client
            .query(&format!("ALTER TABLE {table} DROP PARTITION {month}"))
            .execute()
            .await
            .unwrap();
    }
    let lost = archiver::verify::verify(&store, &client, date)
        .await
        .unwrap();
    assert_eq!(lost.only_in_archive.len(), 3000, "{}", lost.report());
    assert!(!lost.is_clean());

    let restored = archiver::restore::restore(&store, &client, date)
        .await
        .unwrap();
    assert_eq!(restored.commerce + restored.probes, 3000);
    assert_eq!(restored.skipped, 0);
    let v = archiver::verify::verify(&store, &client, date)
        .await
        .unwrap();
    assert!(v.is_clean(), "{}", v.report());
    let again = archiver::restore::restore(&store, &client, date)
        .await
        .unwrap();
    assert_eq!(
        (again.commerce, again.probes, again.skipped),
        (0, 0, 3000),
        "a restore repeats safely"
    );

    let after_bucket = testkit::unique_bucket();
    s3.create_bucket(&after_bucket).unwrap();
    let after = reports(&env, &after_bucket, date).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &before {
        assert!(
            &after[key] == bytes,
            "{key} differs after the rebuild:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&after[key])
        );
    }
}
