//! A fresh stream and database per test on the shared servers, entries written with XADD
//! exactly as the gateway writes them, and the consumer driven step by step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use fred::interfaces::{ClientLike, StreamsInterface};
use pipeline::{
    entry::{Fields, encode_batch},
    proto::{
        ingest::{CommerceEvent, CommerceEventType, Event, Money, Region, event::Payload},
        queue::QueuedBatch,
    },
};

/// One test's stream key and database, on the given Redis and ClickHouse.
pub struct Env {
    pub redis_url: String,
    pub clickhouse_url: String,
    pub stream: String,
    pub database: String,
    pub redis: fred::clients::Client,
}

impl Env {
    /// A fresh stream and database on the shared servers.
    pub async fn shared() -> Env {
        Env::on(
            &testkit::shared_redis().url(),
            &testkit::shared_clickhouse().url(),
        )
        .await
    }

    /// A fresh stream and database on the given servers.
    pub async fn on(redis_url: &str, clickhouse_url: &str) -> Env {
        let redis = fred::clients::Client::new(
            fred::types::config::Config::from_url(redis_url).unwrap(),
            None,
            None,
            None,
        );
        redis.init().await.unwrap();
        Env {
            redis_url: redis_url.to_owned(),
            clickhouse_url: clickhouse_url.to_owned(),
            stream: testkit::unique_name("events"),
            database: testkit::unique_name("consumer"),
            redis,
        }
    }

    /// Consumer settings for this stream and database, as consumer `name`, with extra flags.
    pub fn settings(&self, name: &str, extra: &[&str]) -> consumer::Settings {
        let mut args = vec![
            "consumer",
            "--redis-url",
            &self.redis_url,
            "--stream-key",
            &self.stream,
            "--clickhouse-url",
            &self.clickhouse_url,
            "--clickhouse-database",
            &self.database,
            "--consumer-name",
            name,
            "--batch-age",
            "200ms",
        ];
        args.extend_from_slice(extra);
        consumer::Settings::try_parse_from(args).unwrap()
    }

    /// Has consumer `name` die `times` times while loading what it reads: each time it
    /// reads, begins a load against a ClickHouse that never answers, and is dropped
    /// mid-load, like a consumer killed by the entry it loads. Returns the settings of that
    /// dying consumer, for more of the same.
    pub async fn die_loading(&self, name: &str, times: usize) -> consumer::Settings {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut dying = self.settings(name, &[]);
        dying.clickhouse.clickhouse_url = format!("http://{}", listener.local_addr().unwrap());
        // Accepts connections and never answers; lives as long as the test binary.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        for attempt in 1..=times {
            let mut worker = consumer::Worker::open(&dying).await.unwrap();
            assert!(matches!(
                worker.step().await.unwrap(),
                consumer::Outcome::Read(_)
            ));
            let flush = tokio::time::timeout(Duration::from_millis(300), worker.flush()).await;
            assert!(flush.is_err(), "attempt {attempt}: the load hangs");
            drop(worker); // dies mid-load
        }
        dying
    }

    /// Writes one entry holding `ids` as valid purchases; returns the entry id.
    pub async fn publish(&self, ids: &[String]) -> String {
        self.publish_batch(&queued_batch(ids)).await
    }

    /// Writes one entry holding `batch`, as the gateway does; returns the entry id.
    pub async fn publish_batch(&self, batch: &QueuedBatch) -> String {
        self.xadd(&Fields::new(encode_batch(batch), None)).await
    }

    /// Writes `entries` entries of `per_entry` fresh events each; returns the event ids.
    pub async fn publish_many(&self, entries: usize, per_entry: usize) -> Vec<String> {
        let mut all = Vec::new();
        for _ in 0..entries {
            let ids = event_ids(per_entry);
            self.publish(&ids).await;
            all.extend(ids);
        }
        all
    }

    /// Writes an entry with exactly these fields.
    pub async fn xadd(&self, fields: &Fields) -> String {
        self.redis
            .xadd(&self.stream, false, None, "*", fields.pairs())
            .await
            .unwrap()
    }

    /// A client bound to this test's database.
    pub fn clickhouse(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_database(&self.database)
            .with_validation(false)
    }

    /// A `SELECT count() ...` in this test's database.
    pub async fn count(&self, sql: &str) -> u64 {
        self.clickhouse().query(sql).fetch_one().await.unwrap()
    }

    /// Rows in `commerce_events`, duplicates included.
    pub async fn rows(&self) -> u64 {
        self.count("SELECT count() FROM commerce_events").await
    }

    /// Entries of the stream.
    pub async fn xlen(&self) -> u64 {
        self.redis.xlen(&self.stream).await.unwrap()
    }

    /// Entries read but not acknowledged by `group`.
    pub async fn pending(&self, group: &str) -> u64 {
        let summary: fred::types::Value =
            self.redis.xpending(&self.stream, group, ()).await.unwrap();
        summary.into_array()[0].as_u64().unwrap()
    }

    /// The dead letters of the stream (`<stream>:dead`), as an operator lists them.
    pub async fn dead_letters(&self) -> Vec<consumer::dead_letter::DeadLetter> {
        consumer::dead_letter::DeadLetters::connect(&self.settings("c1", &[]).redis)
            .await
            .unwrap()
            .list()
            .await
            .unwrap()
    }
}

/// Events in `commerce_events` with FINAL; an error until the consumer created the tables.
pub async fn loaded(env: &Env) -> anyhow::Result<u64> {
    Ok(env
        .clickhouse()
        .query("SELECT count() FROM commerce_events FINAL")
        .fetch_one()
        .await?)
}

/// An entry with a batch field that is not protobuf and no format tag, as a broken
/// producer might write it.
pub fn garbage_entry() -> Fields {
    Fields {
        batch: Some(Bytes::from_static(b"garbage")),
        ..Fields::default()
    }
}

/// `n` fresh event ids.
pub fn event_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect()
}

/// A time for test events: recent, and at least 3 minutes after midnight UTC so every
/// event of a test falls on the same day.
pub fn event_time() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let midnight = now - now.rem_euclid(86_400);
    (now - 30).max(midnight + 180)
}

/// What the gateway would queue for a request of valid purchases with these ids.
pub fn queued_batch(ids: &[String]) -> QueuedBatch {
    let at = event_time();
    let ts = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    QueuedBatch {
        store_id: "eu-1".into(),
        region: Region::Europe as i32,
        received_at: ts(at + 1),
        events: ids
            .iter()
            .map(|id| Event {
                event_id: id.clone(),
                occurred_at: ts(at),
                store_id: "eu-1".into(),
                region: Region::Europe as i32,
                payload: Some(Payload::Commerce(CommerceEvent {
                    r#type: CommerceEventType::Purchase as i32,
                    product_id: 5,
                    category_id: 7,
                    category_code: "electronics.smartphone".into(),
                    seller_id: 3,
                    price: Some(Money {
                        currency_code: "EUR".into(),
                        units: 12,
                        nanos: 500_000_000,
                    }),
                    quantity: 2,
                    user_id: 9,
                    session_id: "s-1".into(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..QueuedBatch::default()
    }
}

/// Steps `worker` until it has read `entries` entries into its batch, each step a read: the
/// first read of a consumer asks for one entry (nothing bounds an entry's size before one is
/// seen, `source::entries_within`), the next ones for what fits.
pub async fn read_entries(worker: &mut consumer::Worker, entries: usize) {
    let mut read = 0;
    while read < entries {
        match worker.step().await.unwrap() {
            consumer::Outcome::Read(n) => read += n,
            other => panic!("{read} of {entries} entries read, then {other:?}"),
        }
    }
    assert_eq!(read, entries, "no more than asked for");
}

/// Steps `worker` (flushing whenever it read) until `done`, at most `timeout`.
pub async fn drive<F, Fut>(worker: &mut consumer::Worker, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let outcome = worker.step().await.unwrap();
        if matches!(
            outcome,
            consumer::Outcome::Idle | consumer::Outcome::Flushed(_)
        ) && done().await
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumer did not finish in {timeout:?}, last outcome {outcome:?}"
        );
    }
}
