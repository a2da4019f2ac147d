//! Debugging with grpcurl works: the real grpcurl binary lists the service through
//! reflection, publishes JSON that lands in ClickHouse, and renders BadRequest details.

use std::{process::Command, time::Duration};

use crate::helpers::*;

const TOKEN: &str = "grpcurl-test-token";

fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed by scripts/install.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stores() -> String {
    format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
        gateway::auth::token_sha256(TOKEN)
    )
}

fn event_json(event_id: &str, extra: &str) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(event_time_base())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        r#"{{"events":[{{"eventId":"{event_id}","occurredAt":"{at}","storeId":"eu-1","region":"REGION_EUROPE",
           "commerce":{{"type":"COMMERCE_EVENT_TYPE_PURCHASE","productId":"5","categoryId":"7","categoryCode":"electronics.smartphone",
           "brand":"acme","sellerId":"3","price":{{"currencyCode":"EUR","units":"12","nanos":500000000}},"quantity":2,"userId":"9","sessionId":"s-1"}}}}]{extra}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_publishes_and_renders_bad_request() {
    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let stream = testkit::unique_name("grpcurl");
    let database = testkit::unique_name("grpcurl");
    let gateway = start_gateway(&redis.url(), &stream, &stores(), &[]).await;
    let addr = gateway.addr.to_string();

    // reflection is for stores by default (GATEWAY_REFLECTION=authenticated)
    let auth = format!("authorization: Bearer {TOKEN}");
    let (ok, _, _) = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(!ok, "reflection answered a caller without a token");
    let (ok, listed, err) = grpcurl(&["-plaintext", "-H", &auth, &addr, "list"]);
    assert!(ok, "grpcurl list failed: {err}");
    assert!(
        listed
            .lines()
            .any(|l| l == "marketplace.ingest.v1.IngestService"),
        "{listed}"
    );
    assert!(
        listed.lines().any(|l| l == "grpc.health.v1.Health"),
        "{listed}"
    );

    let id = "5f0c7a52-58a4-4b4e-9d7a-0c7e3c1f2a9b";
    let body = event_json(id, "");
    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        &body,
        &addr,
        "marketplace.ingest.v1.IngestService/Publish",
    ]);
    assert!(ok, "publish failed: {err}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["accepted"], 1, "{out}");

    let settings = consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let client = clickhouse(&ch.url(), &database);
    let query = || async {
        client
            .query("SELECT count() FROM commerce_events WHERE event_id = toUUID(?) AND type = 'purchase' AND toString(price) = '12.500000000' AND quantity = 2")
            .bind(id)
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    consume_until(&mut worker, Duration::from_secs(30), || async {
        query().await == 1
    })
    .await
    .unwrap();

    // An invalid event with all_or_nothing: INVALID_ARGUMENT, and grpcurl renders the
    // BadRequest field path because reflection also serves google.rpc descriptors.
    let body = event_json("not-a-uuid", r#","allOrNothing":true"#);
    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        &body,
        &addr,
        "marketplace.ingest.v1.IngestService/Publish",
    ]);
    assert!(!ok, "an invalid event must fail: {out}");
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(
        err.contains("google.rpc.BadRequest"),
        "details are rendered by type: {err}"
    );
    assert!(
        err.contains("events[0].event_id"),
        "the field path is rendered: {err}"
    );

    // Health over grpcurl.
    // Health itself needs no token, but grpcurl learns its schema through reflection, which
    // by default answers authenticated stores only (GATEWAY_REFLECTION=authenticated).
    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("SERVING"), "{out}");
    gateway.shutdown().await.unwrap();
}
