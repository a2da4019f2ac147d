//! What the archiver's tests share: the services, a published day, a loaded database, an
//! archiver driven step by step.

use std::time::{Duration, Instant};

use archiver::{Outcome, Worker, store::ArchiveStore};
use clap::Parser;

/// Names of one test's stream, database and bucket on the given servers.
pub struct Env {
    pub stream: String,
    pub database: String,
    pub bucket: String,
    pub redis_url: String,
    pub clickhouse_url: String,
    pub s3_endpoint: String,
}

impl Env {
    /// A fresh stream, database and bucket on the shared servers.
    pub fn shared() -> Env {
        Env::on(testkit::shared_s3())
    }

    /// A fresh stream and database on the shared Redis and ClickHouse, and a bucket on `s3`.
    pub fn on(s3: &testkit::S3) -> Env {
        let bucket = testkit::unique_bucket();
        s3.create_bucket(&bucket).unwrap();
        Env {
            stream: testkit::unique_name("events"),
            database: testkit::unique_name("archive"),
            bucket,
            redis_url: testkit::shared_redis().url(),
            clickhouse_url: testkit::shared_clickhouse().url(),
            s3_endpoint: s3.endpoint(),
        }
    }

    /// The archiver's flags for this environment, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        self.args_as("a1", extra)
    }

    /// The flags of the archiver named `name` in the group, then `extra`.
    pub fn args_as(&self, name: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "archiver",
            "--redis-url",
            &self.redis_url,
            "--stream-key",
            &self.stream,
            "--clickhouse-url",
            &self.clickhouse_url,
            "--clickhouse-database",
            &self.database,
            "--archive-bucket",
            &self.bucket,
            "--archiver-name",
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn settings(&self, extra: &[&str]) -> archiver::Settings {
        archiver::Settings::try_parse_from(self.args(extra)).unwrap()
    }

    /// The lake's store, with static credentials (SeaweedFS accepts any).
    pub async fn store(&self) -> ArchiveStore {
        let config = aws_config(&self.s3_endpoint).await;
        ArchiveStore::new(&config, &self.settings(&[]).s3.bucket())
            .await
            .unwrap()
    }

    pub async fn worker(&self, extra: &[&str]) -> Worker {
        self.worker_as("a1", extra).await
    }

    /// The worker of the archiver named `name`.
    pub async fn worker_as(&self, name: &str, extra: &[&str]) -> Worker {
        let settings = archiver::Settings::try_parse_from(self.args_as(name, extra)).unwrap();
        Worker::open_shard(&settings, self.store().await, 0, Default::default())
            .await
            .unwrap()
    }

    /// The worker of shard `index` of archiver `a1` (`extra` sets `--stream-shards`),
    /// sharing `manifests` with the process's other shard workers as `worker::run` does.
    pub async fn shard_worker(
        &self,
        index: usize,
        extra: &[&str],
        manifests: std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Worker {
        let settings = archiver::Settings::try_parse_from(self.args_as("a1", extra)).unwrap();
        Worker::open_shard(&settings, self.store().await, index, manifests)
            .await
            .unwrap()
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        e2e::clickhouse(&self.clickhouse_url, &self.database)
    }

    /// The environment the archiver binary reads its S3 settings from.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.s3_endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Entries of the stream the archiver group has not acknowledged or not read.
    pub fn archiver_backlog(&self) -> u64 {
        self.backlog("archiver")
    }

    /// Entries of the stream `group` has not acknowledged or not read.
    pub fn backlog(&self, group: &str) -> u64 {
        let info = testkit::shared_redis()
            .cli(&["XINFO", "GROUPS", &self.stream])
            .unwrap();
        let lines: Vec<&str> = info.lines().collect();
        let Some(start) = lines.iter().position(|l| *l == group) else {
            return u64::MAX;
        };
        let field = |name: &str| {
            lines[start..]
                .windows(2)
                .find(|w| w[0] == name)
                .and_then(|w| w[1].parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        field("pending").saturating_add(field("lag"))
    }

    /// Publishes `total` simulated events (seeded) through a real gateway; returns what the
    /// gateway acknowledged and the events' time base.
    pub async fn publish(
        &self,
        total: u64,
        rate: u64,
        seed: u64,
    ) -> (simulator::truth::Truth, i64) {
        let base = e2e::event_time_base();
        let truth = self.publish_at(total, rate, seed, base, 100, &[]).await;
        assert_eq!(truth.accepted, total, "every simulated event is valid");
        (truth, base)
    }

    /// Publishes `total` simulated events from Unix second `base` on, `batch` per request,
    /// through a gateway started with `gateway_args`; returns what the gateway acknowledged
    /// and refused.
    pub async fn publish_at(
        &self,
        total: u64,
        rate: u64,
        seed: u64,
        base: i64,
        batch: u64,
        gateway_args: &[&str],
    ) -> simulator::truth::Truth {
        let fleet = simulator::fleet::fleet(2, "archive-secret");
        let gateway = e2e::start_gateway(
            &self.redis_url,
            &self.stream,
            &simulator::fleet::stores_file(&fleet),
            gateway_args,
        )
        .await;
        let settings = simulator::Settings::try_parse_from([
            "simulator".to_owned(),
            "run".into(),
            "--gateway".into(),
            gateway.url(),
            "--stores-per-region".into(),
            "2".into(),
            "--token-secret".into(),
            "archive-secret".into(),
            "--total".into(),
            total.to_string(),
            "--batch-size".into(),
            batch.to_string(),
            "--rate".into(),
            rate.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--time-base".into(),
            base.to_string(),
            "--quiet".into(),
        ])
        .unwrap();
        let simulator::config::Command::Run(args) = settings.command else {
            unreachable!()
        };
        let truth = simulator::send::run(&args).await.unwrap();
        gateway.shutdown().await.unwrap();
        truth
    }

    /// A consumer of the stream (group `loader`) into this test's database.
    async fn loader(&self) -> consumer::Worker {
        let settings = e2e::consumer_settings(
            &self.redis_url,
            &self.stream,
            &self.clickhouse_url,
            &self.database,
            // the archiver's group must exist before anything is trimmed
            &["--retain-groups", "archiver"],
        );
        consumer::Worker::connect(&settings).await.unwrap()
    }

    /// Loads the whole stream into ClickHouse with the consumer.
    pub async fn load_all(&self) {
        let mut worker = self.loader().await;
        e2e::consume_until(&mut worker, Duration::from_secs(120), || async {
            self.backlog("loader") == 0
        })
        .await
        .unwrap();
    }

    /// Rows of both event tables, every copy counted.
    pub async fn event_rows(&self) -> u64 {
        self.clickhouse()
            .query("SELECT count() FROM (SELECT event_id FROM commerce_events UNION ALL SELECT event_id FROM probe_results)")
            .fetch_one::<u64>()
            .await
            .unwrap()
    }

    /// Loads the stream into ClickHouse with the consumer until `events` rows are there.
    pub async fn load(&self, events: u64) {
        let mut worker = self.loader().await;
        e2e::consume_until(&mut worker, Duration::from_secs(120), || async {
            self.event_rows().await >= events
        })
        .await
        .unwrap();
    }
}

pub async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "archive",
        ))
        .load()
        .await
}

/// Steps `worker` until the stream is read and every segment written; returns the segments.
pub async fn drain(worker: &mut Worker) -> Vec<archiver::worker::Archived> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut archived = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the archiver did not finish");
        let outcome = match worker.step().await.unwrap() {
            Outcome::Idle => worker.archive_now().await.unwrap(),
            other => other,
        };
        match outcome {
            Outcome::Archived(a) => archived.push(a),
            Outcome::Idle => return archived,
            Outcome::Retrying { error, .. } => panic!("writing failed: {error}"),
            Outcome::Read(_) | Outcome::Uploaded(_) => {}
        }
    }
}

/// Writes an entry whose batch is not protobuf, as a broken producer might.
pub async fn xadd_garbage(env: &Env) -> String {
    use fred::interfaces::{ClientLike, StreamsInterface};
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(&env.redis_url).unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    let fields = pipeline::entry::Fields {
        batch: Some(bytes::Bytes::from_static(b"garbage")),
        ..Default::default()
    };
    client
        .xadd(&env.stream, false, None, "*", fields.pairs())
        .await
        .unwrap()
}

/// Every object of the bucket below `prefix` with its SHA-256.
pub async fn objects(store: &ArchiveStore, prefix: &str) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut out = Vec::new();
    for listed in store.list(prefix).await.unwrap() {
        let body = store.get(&listed.key).await.unwrap();
        out.push((listed.key, hex::encode(sha2::Sha256::digest(&body))));
    }
    out
}
