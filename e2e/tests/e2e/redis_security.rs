//! Redis as deployed: the ACL users of deploy/redis/users.acl (rendered by
//! deploy/redis/acl.sh, as compose.yaml does) let the real gateway and consumer do their
//! whole job and nothing more, and `rediss://` really speaks TLS.

use std::{path::Path, time::Duration};

use fred::{
    interfaces::{ClientLike, HashesInterface, KeysInterface, StreamsInterface},
    types::Value,
};
use tonic::{Code, Request, transport::Channel};

use crate::helpers::*;

const ADMIN_PASSWORD: &str = "admin-pw-for-tests";
const GATEWAY_PASSWORD: &str = "gateway-pw-for-tests";
const CONSUMER_PASSWORD: &str = "consumer-pw-for-tests";
/// The stream key users.acl is written for.
const STREAM: &str = "events";

/// Renders the shipped ACL file with the test passwords, through the shipped script.
fn render_acl(dir: &Path) -> std::path::PathBuf {
    let script = testkit::repo_root().join("deploy/redis/acl.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .env("REDIS_PASSWORD", ADMIN_PASSWORD)
        .env("REDIS_GATEWAY_PASSWORD", GATEWAY_PASSWORD)
        .env("REDIS_CONSUMER_PASSWORD", CONSUMER_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "acl.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains(GATEWAY_PASSWORD),
        "only password hashes are written"
    );
    let path = dir.join("users.acl");
    std::fs::write(&path, text).unwrap();
    path
}

/// `redis://user:password@127.0.0.1:PORT` for the server at `url`.
fn login(url: &str, user: &str, password: &str) -> String {
    url.replacen("://", &format!("://{user}:{password}@"), 1)
}

async fn connect(url: &str) -> Result<fred::clients::Client, fred::error::Error> {
    let args = pipeline::config::RedisArgs {
        redis_url: url.to_owned(),
        stream_key: STREAM.to_owned(),
        stream_shards: 1,
        redis_tls_ca_file: None,
    };
    let client = args.client()?;
    client.init().await?;
    Ok(client)
}

/// A simulated store fleet's stores file, and `n` events of its first store, encoded.
fn fleet_request(secret: &str, n: usize) -> (String, simulator::fleet::Store, bytes::Bytes) {
    let fleet = simulator::fleet::fleet(1, secret);
    let mut generator = simulator::generate::Generator::new(7, event_time_base());
    let encoded = simulator::request::Generated::new(&mut generator, &fleet[0], n).encoded;
    (
        simulator::fleet::stores_file(&fleet),
        fleet[0].clone(),
        encoded,
    )
}

/// Publishes `encoded` as `store` through the gateway at `url`.
async fn publish(
    url: &str,
    store: &simulator::fleet::Store,
    encoded: bytes::Bytes,
) -> Result<pipeline::proto::ingest::PublishResponse, tonic::Status> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let message =
        <pipeline::proto::ingest::PublishRequest as prost::Message>::decode(encoded).unwrap();
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", store.token).parse().unwrap(),
    );
    pipeline::proto::ingest::ingest_service_client::IngestServiceClient::new(channel)
        .publish(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Publishes `encoded` as soon as the gateway has reached Redis; the accepted count.
async fn publish_once_up(
    gateway: &Gateway,
    store: &simulator::fleet::Store,
    encoded: &bytes::Bytes,
) -> u32 {
    testkit::eventually(Duration::from_secs(10), "a publish", || {
        let (url, store, encoded) = (gateway.url(), store.clone(), encoded.clone());
        async move { Ok(publish(&url, &store, encoded).await.ok()) }
    })
    .await
    .unwrap()
    .accepted
}

/// Steps a consumer until ClickHouse holds `events` rows.
async fn load(settings: &consumer::Settings, database: &str, events: u64) {
    load_until(settings, database, events, || async { true }).await;
}

/// Loads with a consumer until `events` rows are in and `also` holds: a consumer reads one
/// entry before it knows their size, so the rows of the first entry can be in before a
/// later entry is even read.
async fn load_until<F, Fut>(settings: &consumer::Settings, database: &str, events: u64, mut also: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut worker = consumer::Worker::connect(settings).await.unwrap();
    let client = clickhouse(&testkit::shared_clickhouse().url(), database);
    consume_until(&mut worker, Duration::from_secs(60), || {
        let (client, also) = (&client, also());
        async move {
            client
                .query("SELECT (SELECT count() FROM commerce_events) + (SELECT count() FROM probe_results)")
                .fetch_one::<u64>()
                .await
                .unwrap()
                >= events
                && also.await
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_logs_in_as_its_acl_user_and_can_do_only_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let redis = testkit::Redis::start_with(testkit::RedisOptions {
        acl_file: Some(render_acl(dir.path())),
        ..Default::default()
    })
    .unwrap();
    let admin = connect(&login(&redis.url(), "admin", ADMIN_PASSWORD))
        .await
        .unwrap();
    let nobody = connect(&redis.url()).await;
    assert!(
        nobody.is_err() || nobody.unwrap().ping::<String>(None).await.is_err(),
        "the default user is off: no login, no commands"
    );

    // The real gateway and consumer, each with its own user, do their whole job.
    let (stores, store, encoded) = fleet_request("acl-secret", 50);
    let gateway = start_gateway(
        &login(&redis.url(), "gateway", GATEWAY_PASSWORD),
        STREAM,
        &stores,
        &[],
    )
    .await;
    assert_eq!(publish_once_up(&gateway, &store, &encoded).await, 50);
    // an entry the consumer cannot decode: it dead-letters it, and replay puts it back
    let _: String = admin
        .xadd(
            STREAM,
            false,
            None,
            "*",
            pipeline::entry::Fields::new(bytes::Bytes::from_static(b"not-a-format"), None).pairs(),
        )
        .await
        .unwrap();
    let database = testkit::unique_name("acl");
    let consumer_url = login(&redis.url(), "consumer", CONSUMER_PASSWORD);
    let settings = consumer_settings(
        &consumer_url,
        STREAM,
        &testkit::shared_clickhouse().url(),
        &database,
        &[],
    );
    let dead = consumer::dead_letter::DeadLetters::connect(&settings.redis)
        .await
        .unwrap();
    load_until(&settings, &database, 50, || async {
        !dead.list().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(dead.list().await.unwrap().len(), 1, "dead-lettered");
    assert_eq!(dead.replay(None).await.unwrap().len(), 1, "replayed");
    // The archiver logs in as the consumer: its sealed ranges and `replay-rejected`'s hash
    // of replayed identities (with the XADD the dead-letter replay just made) are allowed.
    let archiver_user = connect(&consumer_url).await.unwrap();
    for key in [
        format!("{STREAM}:archiver:sealed"),
        archiver::replay::replayed_key(STREAM),
    ] {
        let _: Value = archiver_user.hset(&key, ("a", "1-0")).await.unwrap();
        let _: Vec<Option<String>> = archiver_user.hmget(&key, vec!["a"]).await.unwrap();
        let _: Value = archiver_user.hdel(&key, "a").await.unwrap();
    }
    // the gateway's backpressure sampler reads the group the consumer made (every 500 ms)
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway.shutdown().await.unwrap();
    let denied: Vec<Value> = admin
        .custom(
            fred::types::CustomCommand::new_static("ACL", fred::types::ClusterHash::Random, false),
            vec!["LOG"],
        )
        .await
        .unwrap();
    assert!(
        denied.is_empty(),
        "no command of the gateway or the consumer was refused: {denied:?}"
    );

    // What a compromised gateway would try is refused.
    let gateway_user = connect(&login(&redis.url(), "gateway", GATEWAY_PASSWORD))
        .await
        .unwrap();
    let length: u64 = admin.xlen(STREAM).await.unwrap();
    let attempts = [
        ("FLUSHALL", vec![]),
        ("FLUSHDB", vec![]),
        ("XTRIM", vec![STREAM, "MAXLEN", "0"]),
        ("DEL", vec![STREAM]),
        ("XDEL", vec![STREAM, "0-1"]),
        ("XRANGE", vec![STREAM, "-", "+"]),
        ("XGROUP", vec!["DESTROY", STREAM, "loader"]),
        ("CONFIG", vec!["SET", "appendonly", "no"]),
        ("ACL", vec!["SETUSER", "gateway", "+@all"]),
        ("HSET", vec!["events:loader:attempts", "1-0", "9"]),
        ("XADD", vec!["events:dead", "*", "x", "v"]),
        ("XADD", vec!["other-stream", "*", "x", "v"]),
    ];
    for (command, args) in attempts {
        let result: Result<Value, _> = gateway_user
            .custom(
                fred::types::CustomCommand::new(command, fred::types::ClusterHash::Random, false),
                args.clone(),
            )
            .await;
        let err = result.expect_err(&format!("gateway ran {command} {args:?}"));
        assert!(
            err.to_string().contains("NOPERM"),
            "{command} {args:?}: {err}"
        );
    }
    assert_eq!(admin.xlen::<u64, _>(STREAM).await.unwrap(), length);
    assert!(admin.exists::<u64, _>(STREAM).await.unwrap() == 1);
}

/// `rediss://` connects with TLS, verified against REDIS_TLS_CA_FILE; plaintext and an
/// untrusted CA do not reach a TLS-only Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_consumer_reach_a_tls_only_redis_over_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let certs = testkit::tls::certificates(dir.path()).unwrap();
    let redis = testkit::Redis::start_with(testkit::RedisOptions {
        tls: Some(certs.clone()),
        ..Default::default()
    })
    .unwrap();
    assert!(redis.url().starts_with("rediss://"));
    let ca = certs.ca.display().to_string();
    let stream = testkit::unique_name("tls");

    let (stores, store, encoded) = fleet_request("tls-secret", 20);
    let gateway = start_gateway(
        &redis.url(),
        &stream,
        &stores,
        &["--redis-tls-ca-file", &ca],
    )
    .await;
    assert_eq!(publish_once_up(&gateway, &store, &encoded).await, 20);
    let database = testkit::unique_name("tls");
    let settings = consumer_settings(
        &redis.url(),
        &stream,
        &testkit::shared_clickhouse().url(),
        &database,
        &["--redis-tls-ca-file", &ca],
    );
    load(&settings, &database, 20).await;
    gateway.shutdown().await.unwrap();

    // Plaintext to the TLS port: the client never gets an answer, and the gateway refuses
    // to queue (UNAVAILABLE), rather than appearing to work.
    let plain = redis.url().replacen("rediss://", "redis://", 1);
    let refused = tokio::time::timeout(Duration::from_secs(15), async {
        match connect(&plain).await {
            Err(_) => true,
            Ok(client) => client.ping::<String>(None).await.is_err(),
        }
    })
    .await
    .unwrap_or(true);
    assert!(refused, "a plaintext client got answers from the TLS port");
    let plain_gateway = start_gateway(&plain, &stream, &stores, &[]).await;
    let status = publish(&plain_gateway.url(), &store, encoded.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    plain_gateway.shutdown().await.unwrap();

    // A server certificate from a CA the client does not trust: no connection.
    let other_dir = tempfile::tempdir().unwrap();
    let other = testkit::tls::certificates(other_dir.path()).unwrap();
    let untrusted = pipeline::config::RedisArgs {
        redis_url: redis.url(),
        stream_key: stream.clone(),
        stream_shards: 1,
        redis_tls_ca_file: Some(other.ca),
    };
    let client = untrusted.client().unwrap();
    let handshake = tokio::time::timeout(Duration::from_secs(15), client.init()).await;
    assert!(
        !matches!(handshake, Ok(Ok(_))),
        "connected despite an untrusted certificate"
    );
}
