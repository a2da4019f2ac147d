//! The shared S3 client against a real S3 (SeaweedFS): what it does with a missing key, a
//! bucket created twice, a listing longer than a page, an upload or a stored object that is not
//! what its digest says, and S3 down.

use bytes::Bytes;
use s3store::{Bucket, Store, StoreError};
use sha2::{Digest, Sha256};

async fn open(s3: &testkit::S3, name: &str, create: bool) -> Store {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(s3.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "s3store",
        ))
        .load()
        .await;
    let bucket = Bucket {
        name: name.to_owned(),
        force_path_style: true,
        create,
    };
    Store::new(&shared, &bucket).await.unwrap()
}

fn sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_downloads_listings_and_missing_keys_on_a_real_s3() {
    let s3 = testkit::shared_s3();
    let name = testkit::unique_bucket();
    // created by the first, found by the second: two processes starting at once both succeed
    let store = open(s3, &name, true).await;
    let again = open(s3, &name, true).await;
    assert_eq!(again.bucket(), name);

    let body = Bytes::from_static(b"{\"a\":1}");
    store
        .put_verified(
            "d/x.json",
            body.clone(),
            &sha256(&body),
            "application/json",
            &[("rows", "1".into())],
        )
        .await
        .unwrap();
    assert_eq!(store.get("d/x.json").await.unwrap(), body);
    assert_eq!(store.metadata("d/x.json").await.unwrap()["rows"], "1");
    assert!(store.exists("d/x.json").await.unwrap());

    // a missing key: None where asked for maybe, an error naming it where it must exist
    assert_eq!(store.get_if_exists("d/none").await.unwrap(), None);
    assert!(!store.exists("d/none").await.unwrap());
    let err = store.get("d/none").await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("s3://{name}/d/none")),
        "{err}"
    );
    assert!(matches!(
        store.metadata("d/none").await,
        Err(StoreError::Missing { .. })
    ));

    // a body that is not what its digest says is refused by the store, and nothing is stored
    let err = store
        .put_verified(
            "d/y",
            Bytes::from_static(b"y"),
            &sha256(b"z"),
            "text/plain",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::S3 { message, .. } if message.contains("BadDigest")),
        "{err}"
    );
    assert!(!store.exists("d/y").await.unwrap());

    // an object uploaded with its digest is checked by the digest and length the store keeps
    store
        .verify("d/x.json", &sha256(&body), body.len() as u64)
        .await
        .unwrap();
    let err = store
        .verify("d/x.json", &sha256(b"other"), body.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
    let err = store
        .verify("d/x.json", &sha256(&body), body.len() as u64 + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
    // one uploaded without a digest is read back: the same verdicts
    store
        .put("d/plain", Bytes::from_static(b"y"), "text/plain", &[])
        .await
        .unwrap();
    store.verify("d/plain", &sha256(b"y"), 1).await.unwrap();
    let err = store.verify("d/plain", &sha256(b"z"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
    let err = store.verify("d/none", &sha256(b"y"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");

    // a listing of more than one page (1000 keys), in key order; keys with odd characters
    for i in 0..1005 {
        store
            .put(&format!("many/{i:04}"), Vec::new(), "text/plain", &[])
            .await
            .unwrap();
    }
    store
        .put(
            "many/date=2026-01-01/hour=xx/a b+c.parquet",
            Vec::new(),
            "text/plain",
            &[],
        )
        .await
        .unwrap();
    let listed = store.list("many/").await.unwrap();
    assert_eq!(listed.len(), 1006);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    assert!(
        listed
            .iter()
            .any(|l| l.key == "many/date=2026-01-01/hour=xx/a b+c.parquet")
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_is_an_error_naming_the_object_not_a_hang() {
    let mut s3 = testkit::S3::start().unwrap();
    let name = testkit::unique_bucket();
    s3.create_bucket(&name).unwrap();
    let store = open(&s3, &name, false).await;
    s3.stop().unwrap();
    let err = store.get_if_exists("k").await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("downloading s3://{name}/k")),
        "{err}"
    );
    let err = store
        .put("k", Vec::new(), "text/plain", &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("uploading s3://{name}/k")),
        "{err}"
    );
    let err = store.list("p/").await.unwrap_err();
    assert!(err.to_string().contains("listing"), "{err}");
    s3.restart().unwrap();
    store.put("k", Vec::new(), "text/plain", &[]).await.unwrap();
}
