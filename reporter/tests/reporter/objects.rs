//! What lands in S3: the documented keys, a manifest whose checksums match the objects,
//! and identical bytes when a run is repeated on unchanged data.

use std::collections::BTreeSet;

use reporter::{
    manifest::Manifest,
    run::{RunOptions, Sellers, run_with},
};
use sha2::{Digest, Sha256};

use crate::fixture::{self, DAY};

/// The CSV tables of the marketplace report.
const MARKETPLACE_TABLES: &[&str] = &[
    "stability",
    "stability_by_target",
    "stability_by_store",
    "vantage_matrix",
    "incidents",
    "region_changes",
    "funnel",
    "revenue",
    "totals",
    "changes",
    "data_quality",
    "plan",
];
/// The CSV tables of a seller report.
const SELLER_TABLES: &[&str] = &["revenue", "totals", "changes", "plan"];

fn expected_keys(sellers: &[u64]) -> BTreeSet<String> {
    let rankings: Vec<String> = ["top", "bottom"]
        .iter()
        .flat_map(|d| {
            ["products", "categories", "brands"]
                .iter()
                .flat_map(move |e| {
                    ["revenue", "views", "conversion"]
                        .iter()
                        .map(move |m| format!("{d}_{e}_by_{m}"))
                })
        })
        .collect();
    let mut keys = BTreeSet::new();
    let mut add = |prefix: String, tables: &[&str]| {
        keys.insert(format!("{prefix}/report.json"));
        keys.insert(format!("{prefix}/report.html"));
        for t in tables
            .iter()
            .map(|t| t.to_string())
            .chain(rankings.iter().cloned())
        {
            keys.insert(format!("{prefix}/{t}.csv"));
        }
    };
    add(format!("reports/{DAY}/marketplace"), MARKETPLACE_TABLES);
    for s in sellers {
        add(format!("reports/{DAY}/sellers/{s}"), SELLER_TABLES);
    }
    keys.insert(format!("reports/{DAY}/manifest.json"));
    keys
}

#[tokio::test]
async fn objects_have_the_documented_keys_and_the_manifest_checksums_match() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    let written = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap();
    assert_eq!(
        written.seller_ids,
        [2, 1],
        "the two largest sellers by revenue"
    );
    let keys = fixture::keys(&bucket);
    assert_eq!(keys, expected_keys(&[1, 2]));
    assert_eq!(written.keys.iter().cloned().collect::<BTreeSet<_>>(), keys);
    assert_eq!(
        written.keys.last().unwrap(),
        &format!("reports/{DAY}/manifest.json"),
        "manifest last"
    );

    let s3 = testkit::shared_s3();
    let manifest: Manifest = serde_json::from_slice(
        &s3.get_object(&bucket, &format!("reports/{DAY}/manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let listed: BTreeSet<String> = manifest.objects.iter().map(|o| o.key.clone()).collect();
    let mut others = keys.clone();
    others.remove(&format!("reports/{DAY}/manifest.json"));
    assert_eq!(listed, others, "the manifest lists every other object");
    for entry in &manifest.objects {
        let body = s3.get_object(&bucket, &entry.key).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            entry.sha256,
            "{}",
            entry.key
        );
        assert_eq!(body.len() as u64, entry.bytes, "{}", entry.key);
    }
    assert_eq!(manifest.watermark, written.report.watermark);
    assert!(manifest.generated_at.ends_with('Z'));

    let json: serde_json::Value = serde_json::from_slice(
        &s3.get_object(&bucket, &format!("reports/{DAY}/marketplace/report.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["schema_version"], reporter::report::SCHEMA_VERSION);
    let seller: serde_json::Value = serde_json::from_slice(
        &s3.get_object(&bucket, &format!("reports/{DAY}/sellers/2/report.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seller["seller_id"], 2);
    let csv = s3
        .get_object(&bucket, &format!("reports/{DAY}/marketplace/stability.csv"))
        .unwrap();
    let mut reader = csv::Reader::from_reader(&csv[..]);
    assert_eq!(&reader.headers().unwrap()[0], "region");
    assert_eq!(reader.records().count(), 3);
}

#[tokio::test]
async fn rerun_with_unchanged_data_rewrites_identical_bytes() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    let s3 = testkit::shared_s3();
    // The manifest's generated_at is the wall clock, and its rows are the rows the run
    // counted, copies included, which a merge of copies lowers: every other byte is the same.
    let rows = std::cell::Cell::new(Vec::new());
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        fixture::keys(&bucket)
            .into_iter()
            .map(|k| {
                let mut body = s3.get_object(&bucket, &k).unwrap();
                if k.ends_with("manifest.json") {
                    let mut m: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    m["generated_at"] = serde_json::Value::Null;
                    let mut seen = rows.take();
                    seen.push(m["rows"].take().as_u64().expect("the rows the run counted"));
                    rows.set(seen);
                    body = serde_json::to_vec(&m).unwrap();
                }
                (k, body)
            })
            .collect()
    };
    run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap();
    let first = snapshot();
    // a background merge between the runs must not change a figure either
    client
        .query("OPTIMIZE TABLE commerce_events FINAL")
        .execute()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap();
    let second = snapshot();
    assert_eq!(first.len(), second.len());
    for ((key, a), (_, b)) in first.iter().zip(&second) {
        assert!(a == b, "{key} differs between runs");
    }
    let rows = rows.take();
    assert!(
        rows.len() == 2 && rows[1] <= rows[0],
        "the merge can only lower the rows counted: {rows:?}"
    );
}

#[tokio::test]
async fn explicit_sellers_replace_the_largest() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    let options = RunOptions {
        sellers: Sellers::Ids(vec![3]),
        ..RunOptions::default()
    };
    let written = run_with(&client, &store, DAY, &options).await.unwrap();
    assert_eq!(written.seller_ids, [3]);
    assert_eq!(fixture::keys(&bucket), expected_keys(&[3]));
}
