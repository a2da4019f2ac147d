//! The real binary killed with SIGKILL at random moments while entries stream in: after the
//! last restart every event counts exactly once with FINAL and nothing is left pending.
//!
//! `every_acknowledged_event_counts_once_through_crashes` is the long version of that claim,
//! through the gateway and with the servers failing too. Its short form takes well under a
//! minute; the long form (more kills, a 30 s ClickHouse outage) runs with
//! `CHAOS_LONG=1 cargo test -p consumer chaos -- --nocapture`, and `CHAOS_SEED=<n>` replays
//! the timings of an earlier run (the seed is printed).
//!
//! The long form once failed (seed 4860461488774286340): restarts re-read the backlog left by
//! the 30 s outage, Redis counted each re-read as a delivery, and healthy entries reached
//! `CONSUMER_MAX_DELIVERIES`. The consumer now counts only loads interrupted by its death
//! (see docs/DESIGN.md, "Poison entries and crash loops"), and that seed passes.

use std::{
    collections::HashSet,
    ops::Range,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::{ClickHouse, Redis, RedisOptions};
use tokio::sync::watch;

use crate::{
    helpers::*,
    store,
    supervise::{Running, Supervisor, kill_consumers, skipping_flushes},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_loads_every_event_exactly_once() {
    let env = Env::shared().await;
    let producer = async {
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.extend(env.publish_many(1, 10).await);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        ids
    };
    let chaos = async {
        let mut consumer = Running::spawn(&env);
        for _ in 0..5 {
            let wait = rand::rng().random_range(100..700);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            drop(consumer); // SIGKILL: no shutdown, no last flush
            consumer = Running::spawn(&env);
        }
        consumer
    };
    let (sent, _consumer) = tokio::join!(producer, chaos);
    let total = sent.len() as u64;
    testkit::eventually(Duration::from_secs(60), "every event loaded", || async {
        Ok((env.pending("loader").await == 0
            && env.count("SELECT count() FROM commerce_events FINAL").await == total)
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM commerce_events")
            .await,
        total
    );
    let rows = env.rows().await;
    assert!(rows >= total);
    if testkit::test_log_enabled() {
        eprintln!("chaos: {total} events, {rows} rows before merges");
    }
}

/// Events per request, as a store backend would batch them.
const PER_REQUEST: usize = 50;

/// How hard one run shakes the pipeline.
struct Plan {
    /// SIGKILLs of the consumer.
    kills: usize,
    /// Milliseconds between a consumer's start and its kill.
    kill_after_ms: Range<u64>,
    /// Milliseconds of quiet before each server failure.
    quiet_ms: Range<u64>,
    /// How long ClickHouse stays stopped.
    clickhouse_outage: Duration,
    /// How long Redis stays down after its graceful stop.
    redis_restart_outage: Duration,
    /// How long Redis stays down after its SIGKILL: longer than the gateway's 5 s Redis
    /// command timeout, so that requests fail and the store retries them.
    redis_crash_outage: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("CHAOS_LONG").is_some() {
            Plan {
                kills: 100,
                kill_after_ms: 300..2_000,
                quiet_ms: 10_000..20_000,
                clickhouse_outage: Duration::from_secs(30),
                redis_restart_outage: Duration::from_secs(3),
                redis_crash_outage: Duration::from_secs(10),
            }
        } else {
            Plan {
                kills: 20,
                kill_after_ms: 300..1_300,
                quiet_ms: 2_000..4_000,
                clickhouse_outage: Duration::from_secs(3),
                redis_restart_outage: Duration::from_secs(1),
                redis_crash_outage: Duration::from_secs(6),
            }
        }
    }
}

/// When each server was down (from, to), relative to the start of the chaos.
#[derive(Debug, Default)]
struct Failures {
    clickhouse_stopped: (Duration, Duration),
    redis_restarted: (Duration, Duration),
    redis_killed: (Duration, Duration),
}

/// Stops ClickHouse for `plan.clickhouse_outage`, then restarts Redis gracefully, then
/// kills Redis with SIGKILL and starts it again; each after a random quiet time. Returns
/// the servers, running, and when each was down.
async fn break_servers(
    mut redis: Redis,
    mut clickhouse: ClickHouse,
    plan: &Plan,
    rng: &mut ChaCha8Rng,
    start: Instant,
) -> (Redis, ClickHouse, Failures) {
    let mut failures = Failures::default();
    let quiet = |rng: &mut ChaCha8Rng| {
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(plan.quiet_ms.clone()),
        ))
    };

    quiet(rng).await;
    let down = start.elapsed();
    clickhouse = blocking(clickhouse, ClickHouse::stop).await;
    tokio::time::sleep(plan.clickhouse_outage).await;
    clickhouse = blocking(clickhouse, ClickHouse::restart).await;
    failures.clickhouse_stopped = (down, start.elapsed());

    quiet(rng).await;
    let down = start.elapsed();
    redis = blocking(redis, Redis::stop).await;
    tokio::time::sleep(plan.redis_restart_outage).await;
    redis = blocking(redis, Redis::restart).await;
    failures.redis_restarted = (down, start.elapsed());

    quiet(rng).await;
    let down = start.elapsed();
    redis = blocking(redis, Redis::kill).await;
    tokio::time::sleep(plan.redis_crash_outage).await;
    redis = blocking(redis, Redis::restart).await;
    failures.redis_killed = (down, start.elapsed());

    (redis, clickhouse, failures)
}

/// Runs one of testkit's blocking server operations off the async threads.
async fn blocking<T: Send + 'static>(mut server: T, op: fn(&mut T) -> anyhow::Result<()>) -> T {
    tokio::task::spawn_blocking(move || {
        op(&mut server).unwrap();
        server
    })
    .await
    .unwrap()
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Id {
    event_id: String,
}

/// The value after `field` in redis-cli's line-per-item rendering of an `XINFO` reply.
pub(crate) fn info_field(reply: &str, field: &str) -> Option<String> {
    let mut lines = reply.lines();
    lines.find(|l| *l == field)?;
    lines.next().map(str::to_owned)
}

/// Whether the group `loader` has been delivered every entry of the stream and acknowledged
/// all of them.
pub(crate) fn drained(redis: &Redis, stream: &str) -> bool {
    let (Ok(info), Ok(groups)) = (
        redis.cli(&["XINFO", "STREAM", stream]),
        redis.cli(&["XINFO", "GROUPS", stream]),
    ) else {
        return false;
    };
    let last = info_field(&info, "last-generated-id");
    last.is_some()
        && last == info_field(&groups, "last-delivered-id")
        && info_field(&groups, "pending").as_deref() == Some("0")
}

/// Issue #4: while a store publishes through the gateway, the consumer is SIGKILLed at
/// least 20 times, ClickHouse is stopped for a while, Redis is restarted gracefully once and
/// SIGKILLed once (with `appendfsync always`, as a deployment that promises durability
/// runs it). Afterwards every event the gateway answered OK for counts exactly once with
/// FINAL, nothing else is loaded twice, and nothing is dead-lettered or left pending.
///
/// The kills come at random moments (seeded). Every other one is aimed at the window
/// between an insert and its `XACK` by pausing Redis writes first (see `kill_after_insert`),
/// since random timing alone almost never lands in that millisecond; the consumer binary has
/// no hook for it. The summary counts the kills that landed there and the flushes that then
/// skipped already loaded events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_counts_once_through_crashes() {
    let began = Instant::now();
    let plan = Plan::from_env();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut kill_rng = ChaCha8Rng::seed_from_u64(seed);
    let mut server_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let redis = Redis::start_with(RedisOptions {
        appendfsync_always: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let clickhouse = ClickHouse::start().unwrap();
    let env = Env::on(&redis.url(), &clickhouse.url()).await;
    let gateway = store::Gateway::start(&env.redis_url, &env.stream).await;
    let logs = tempfile::tempdir().unwrap();
    let started = began.elapsed();

    let (stop, stopped) = watch::channel(false);
    let chaos_start = Instant::now();
    let mut supervisor = Supervisor {
        env: &env,
        logs: logs.path(),
        starts: 0,
        kills: 0,
        kills_after_insert: 0,
        exits: 0,
    };
    let chaos = async {
        let (consumer, servers) = tokio::join!(
            kill_consumers(
                &mut supervisor,
                plan.kills,
                plan.kill_after_ms.clone(),
                &mut kill_rng
            ),
            break_servers(redis, clickhouse, &plan, &mut server_rng, chaos_start),
        );
        // a last stretch of publishing with everything up
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        (consumer, servers)
    };
    let gateway_url = gateway.url();
    let (published, (mut consumer, (redis, _clickhouse, failures))) = tokio::join!(
        store::publish_until(
            &gateway_url,
            4,
            PER_REQUEST,
            Duration::from_millis(20),
            stopped
        ),
        chaos,
    );
    let chaos_took = chaos_start.elapsed();

    // The last consumer drains the stream; it is restarted only if it exits by itself.
    let drain_start = Instant::now();
    while !drained(&redis, &env.stream) {
        if drain_start.elapsed() > Duration::from_secs(60) {
            let last_log = logs
                .path()
                .join(format!("consumer-{}.log", supervisor.starts - 1));
            let log = std::fs::read_to_string(last_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "the consumer did not drain the stream within 60 s (seed {seed})\n\
                 groups: {:?}\nconsumers: {:?}\npending: {:?}\nlog tail (newest first): {tail:#?}",
                redis.cli(&["XINFO", "GROUPS", &env.stream]),
                redis.cli(&["XINFO", "CONSUMERS", &env.stream, "loader"]),
                redis.cli(&["XPENDING", &env.stream, "loader"]),
            );
        }
        supervisor.restart_if_exited(&mut consumer).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_took = drain_start.elapsed();
    drop(consumer);
    gateway.shutdown().await.unwrap();

    // Report-style counts: FINAL, both tables.
    let commerce = env.count("SELECT count() FROM commerce_events FINAL").await;
    let probes = env.count("SELECT count() FROM probe_results FINAL").await;
    let rows = env.rows().await;
    let loaded: Vec<Id> = env
        .clickhouse()
        .query("SELECT toString(event_id) FROM commerce_events FINAL")
        .fetch_all()
        .await
        .unwrap();
    let skipped: usize = (0..supervisor.starts)
        .map(|n| skipping_flushes(&logs.path().join(format!("consumer-{n}.log"))))
        .sum();
    println!(
        "chaos (seed {seed}): {} requests OK ({} events), {} retried attempts {:?}, {} \
         abandoned; consumer: {} kills ({} while an XACK after an insert waited), {} exits of \
         its own, {} starts, {skipped} flushes skipped already loaded events; {rows} rows \
         before merges, {commerce} with FINAL",
        published.requests_ok,
        published.ok.len(),
        published.retried(),
        published.retries,
        published.abandoned.len() / PER_REQUEST,
        supervisor.kills,
        supervisor.kills_after_insert,
        supervisor.exits,
        supervisor.starts,
    );
    println!(
        "chaos timings: servers up in {started:?}, chaos {chaos_took:?} (clickhouse stopped \
         {:?}, redis restarted {:?}, redis killed {:?}; from, to), drained in {drain_took:?}, \
         total {:?}",
        failures.clickhouse_stopped,
        failures.redis_restarted,
        failures.redis_killed,
        began.elapsed()
    );

    let ok: HashSet<&str> = published.ok.iter().map(String::as_str).collect();
    let abandoned: HashSet<&str> = published.abandoned.iter().map(String::as_str).collect();
    let loaded_ids: HashSet<&str> = loaded.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ok.len(), published.ok.len(), "the store sent fresh ids");
    assert_eq!(
        loaded_ids.len(),
        loaded.len(),
        "an id counts twice with FINAL"
    );
    let missing: Vec<&&str> = ok.difference(&loaded_ids).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing, e.g. {missing:?} (seed {seed})",
        ok.difference(&loaded_ids).count()
    );
    let unknown: Vec<&&str> = loaded_ids
        .iter()
        .filter(|id| !ok.contains(**id) && !abandoned.contains(**id))
        .take(5)
        .collect();
    assert!(unknown.is_empty(), "events nobody sent: {unknown:?}");
    // What a report counts: the acknowledged events, plus any of the abandoned requests that
    // were queued after all, each once.
    let queued_anyway = loaded_ids.len() - ok.len();
    assert_eq!(probes, 0, "the store sent no probes");
    assert_eq!(commerce + probes, (ok.len() + queued_anyway) as u64);

    let dead = consumer::dead_letter::dead_key(&env.stream);
    assert_eq!(
        redis.cli(&["XLEN", &dead]).unwrap(),
        "0",
        "dead letters (seed {seed})"
    );
    let pending = redis.cli(&["XPENDING", &env.stream, "loader"]).unwrap();
    assert_eq!(pending.lines().next(), Some("0"), "pending: {pending}");
    assert_eq!(
        env.count("SELECT count() FROM rejected_events").await,
        0,
        "nothing was refused"
    );
}
