//! Redis failover (issue #18): a primary with a replica behind three Sentinels
//! ([`testkit::RedisSentinel`]), the gateway waiting for the replica (`GATEWAY_ACK_REPLICAS=1`)
//! and the real consumer binary, while the primary is SIGKILLed, paused and replaced.
//!
//! `failover_round_trims_nothing_unloaded` makes the replica lag on purpose (its link to the
//! primary cut while the consumer loads, acknowledges and trims on the primary), then kills
//! the primary. `acknowledged_events_survive_primary_kills_and_a_partition` is the chaos
//! test; its long form runs with
//! `CHAOS_LONG=1 cargo test -p consumer --test consumer failover -- --nocapture`.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use fred::interfaces::{HashesInterface, StreamsInterface};
use pipeline::entry::{Fields, encode_batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::RedisSentinel;
use tokio::sync::watch;

use crate::{
    chaos::{self, info_field},
    helpers::*,
    store,
    supervise::Supervisor,
};

/// A reconnecting client for the group, as the services make it (it follows failovers).
async fn follower(env: &Env) -> fred::clients::Client {
    let client = env.settings("test", &[]).redis.client().unwrap();
    fred::interfaces::ClientLike::init(&client).await.unwrap();
    client
}

/// Entries of `per_entry` fresh events each, written through `client`, each retried until
/// Redis confirms it (while the client finds the new primary); returns the event ids.
async fn write(
    client: &fred::clients::Client,
    env: &Env,
    entries: usize,
    per_entry: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    for _ in 0..entries {
        let ids = event_ids(per_entry);
        let fields = Fields::new(encode_batch(&queued_batch(&ids)), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = client
            .xadd::<String, _, _, _, _>(&env.stream, false, None, "*", fields.pairs())
            .await
        {
            assert!(Instant::now() < deadline, "xadd: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all.extend(ids);
    }
    all
}

/// The ids of the entries group `loader` has pending on `node`.
fn pending_ids(node: &testkit::Redis, stream: &str) -> Vec<String> {
    let reply = node
        .cli(&["XPENDING", stream, "loader", "-", "+", "1000"])
        .unwrap();
    // redis-cli prints each row as id, consumer, idle, deliveries on their own lines
    reply
        .lines()
        .filter(|l| l.contains('-') && l.chars().all(|c| c.is_ascii_digit() || c == '-'))
        .map(str::to_owned)
        .collect()
}

/// Steps `worker` until `done`, tolerating the errors a failover causes (a step that fails
/// leaves its entries pending, to be read again).
async fn step_until<F, Fut>(worker: &mut consumer::Worker, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match worker.step().await {
            Ok(consumer::Outcome::Idle | consumer::Outcome::Flushed(_)) if done().await => return,
            Ok(_) => {}
            Err(e) => {
                assert!(!e.ends_worker(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(Instant::now() < deadline, "not done within {timeout:?}");
    }
}

/// The replica lags: its link is cut after the consumer read a batch, so the consumer's
/// loads, acknowledgements and trims of it land on the primary only; then the primary dies
/// and the lagging replica is promoted. There the batch is still pending, and it must still
/// be in the stream: trimming on the new primary (by the bound of the new primary's own
/// group state, see `consumer::source::Source::trim`) must not remove it, or the consumer
/// would find a pending entry without its fields and dead-letter it. Everything is loaded
/// once, nothing is dead-lettered, and no attempt count is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_round_trims_nothing_unloaded() {
    let mut group = RedisSentinel::start().unwrap();
    let env = Env::on(&group.url(), &testkit::shared_clickhouse().url()).await;
    let redis = follower(&env).await;
    let settings = env.settings("c1", &["--claim-idle", "1s", "--read-count", "10"]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();

    // A: loaded and acknowledged everywhere.
    let a = write(&redis, &env, 10, 5).await;
    step_until(&mut worker, Duration::from_secs(30), || async {
        loaded(&env).await.ok() == Some(50)
    })
    .await;
    let old = group.primary().unwrap();
    let replica = group.node(1 - old);
    // B: read (delivered to c1), and the replica knows it.
    let b = write(&redis, &env, 10, 5).await;
    assert_eq!(
        worker.step().await.unwrap(),
        consumer::Outcome::Read(10),
        "B read into the batch"
    );
    testkit::eventually(
        Duration::from_secs(10),
        "the replica sees B pending",
        || async {
            let groups = replica.cli(&["XINFO", "GROUPS", &env.stream])?;
            Ok((info_field(&groups, "pending").as_deref() == Some("10")).then_some(()))
        },
    )
    .await
    .unwrap();

    // The link cut: the replica cannot log in to the primary any more.
    replica
        .cli(&["CONFIG", "SET", "masteruser", "nobody"])
        .unwrap();
    replica
        .cli(&["CONFIG", "SET", "masterauth", "nothing"])
        .unwrap();
    replica.cli(&["CLIENT", "KILL", "TYPE", "master"]).unwrap();
    // B loaded, acknowledged and trimmed on the primary only (trimming is due after 1 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        worker.flush().await.unwrap(),
        consumer::Outcome::Flushed(_)
    ));
    assert_eq!(loaded(&env).await.unwrap(), 100);
    let on_primary = group.node(old).cli(&["XLEN", &env.stream]).unwrap();
    assert_eq!(on_primary, "1", "the primary trimmed below B's last entry");
    let lagging = pending_ids(replica, &env.stream);
    assert_eq!(
        lagging.len(),
        10,
        "the replica lags: it never saw B acknowledged or trimmed"
    );

    // The primary dies; the lagging replica, back in touch with the sentinels' view, is
    // promoted.
    group.kill_primary().unwrap();
    let replica = group.node(1 - old);
    replica.cli(&["CONFIG", "SET", "masteruser", ""]).unwrap();
    replica.cli(&["CONFIG", "SET", "masterauth", ""]).unwrap();
    let new =
        tokio::task::block_in_place(|| group.wait_failover(old, Duration::from_secs(30))).unwrap();
    assert_eq!(new, 1 - old);

    // C: written to the new primary; the consumer follows without being restarted, loads C,
    // trims, and takes B over from its own stale pending list after the claim idle time.
    let c = write(&redis, &env, 10, 5).await;
    // Trimming on the new primary (due after every flush that comes 1 s after the last)
    // keeps B: each of its pending entries is still in the stream after C was loaded.
    step_until(&mut worker, Duration::from_secs(60), || async {
        loaded(&env).await.ok() >= Some(100 + 50)
    })
    .await;
    for id in pending_ids(group.node(new), &env.stream) {
        let entry = group
            .node(new)
            .cli(&["XRANGE", &env.stream, &id, &id])
            .unwrap();
        assert!(
            !entry.is_empty(),
            "pending entry {id} was trimmed before it was loaded"
        );
    }
    step_until(&mut worker, Duration::from_secs(60), || async {
        tokio::task::block_in_place(|| drained(&group, &env.stream))
    })
    .await;
    let all: HashSet<String> = a.into_iter().chain(b).chain(c).collect();
    assert_eq!(loaded(&env).await.unwrap(), all.len() as u64);
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM commerce_events")
            .await,
        all.len() as u64
    );
    let dead = consumer::dead_letter::dead_key(&env.stream);
    let dead_len: u64 = redis.xlen(&dead).await.unwrap();
    assert_eq!(
        dead_len, 0,
        "B was pending on the new primary and still there"
    );
    let attempts = consumer::source::attempts_key(&env.stream, "loader");
    let counts: u64 = redis.hlen(&attempts).await.unwrap();
    assert_eq!(counts, 0, "no interrupted-load count is left behind");
    assert_eq!(env.count("SELECT count() FROM rejected_events").await, 0);

    // The old primary comes back as a replica of the new one.
    tokio::task::block_in_place(|| {
        group.restart_as_replica(old).unwrap();
        group.wait_healthy(Duration::from_secs(60)).unwrap();
    });
}

/// How hard one run shakes Redis.
#[derive(Clone)]
struct Plan {
    /// Failovers caused by SIGKILLing the primary.
    kills: usize,
    /// Failovers caused by freezing the primary (SIGSTOP) as a partition would.
    partitions: usize,
    /// Quiet time before each failure.
    quiet_ms: std::ops::Range<u64>,
    /// Milliseconds between a consumer's start and its SIGKILL.
    consumer_kill_after_ms: std::ops::Range<u64>,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("CHAOS_LONG").is_some() {
            Plan {
                kills: 10,
                partitions: 3,
                quiet_ms: 3_000..8_000,
                consumer_kill_after_ms: 500..4_000,
            }
        } else {
            Plan {
                kills: 2,
                partitions: 1,
                quiet_ms: 1_500..3_000,
                consumer_kill_after_ms: 500..2_500,
            }
        }
    }
}

/// One failure of the primary and what it cost, relative to the start of the chaos.
#[derive(Debug)]
struct Failover {
    kind: &'static str,
    /// When the primary was killed or frozen.
    failed_at: Duration,
    /// When every sentinel named the new primary.
    promoted_at: Duration,
}

/// The primary fails `kills + partitions` times (the partition rounds spread among the
/// kills), each after a quiet time, with the group made whole again in between: a killed
/// primary comes back as a replica, a frozen one is let run again after the failover and
/// demoted by the sentinels.
fn fail_primaries(
    mut group: RedisSentinel,
    plan: &Plan,
    rng: &mut ChaCha8Rng,
    start: Instant,
) -> (RedisSentinel, Vec<Failover>) {
    let rounds = plan.kills + plan.partitions;
    let mut failovers = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(
            rng.random_range(plan.quiet_ms.clone()),
        ));
        let partition = (round + 1) * plan.partitions / rounds != round * plan.partitions / rounds;
        let old = group.primary().unwrap();
        if partition {
            group.node(old).pause().unwrap();
        } else {
            assert_eq!(group.kill_primary().unwrap(), old);
        }
        // once the signal is delivered: a request sent before may still have been answered OK
        let failed_at = start.elapsed();
        eprintln!(
            "failover chaos: round {round} ({}) at {failed_at:?}",
            if partition { "SIGSTOP" } else { "SIGKILL" }
        );
        group.wait_failover(old, Duration::from_secs(60)).unwrap();
        let promoted_at = start.elapsed();
        eprintln!("failover chaos: promoted at {promoted_at:?}");
        if partition {
            // The old primary keeps its clients' connections: until the sentinels demote
            // it, a write there must not be acknowledged (WAIT finds no replica).
            std::thread::sleep(Duration::from_millis(500));
            group.node(old).resume().unwrap();
        } else {
            group.restart_as_replica(old).unwrap();
        }
        group.wait_healthy(Duration::from_secs(60)).unwrap();
        eprintln!("failover chaos: healthy again at {:?}", start.elapsed());
        failovers.push(Failover {
            kind: if partition { "SIGSTOP" } else { "SIGKILL" },
            failed_at,
            promoted_at,
        });
    }
    (group, failovers)
}

/// What a store probing every 25 ms saw: when each answer came, and whether it was OK.
struct Probe {
    answers: Vec<(Duration, bool)>,
    ok: Vec<String>,
}

impl Probe {
    /// How long writes were refused after `failed_at`: until the first request sent after
    /// it was answered OK, and how many were refused meanwhile.
    fn refused_after(&self, failed_at: Duration) -> (Duration, usize) {
        let after = self.answers.iter().filter(|(at, _)| *at >= failed_at);
        let mut refused = 0;
        for (at, ok) in after {
            if *ok {
                return (*at - failed_at, refused);
            }
            refused += 1;
        }
        (Duration::MAX, refused)
    }
}

/// One event per request every 25 ms, each request sent once (not retried), with a 2 s
/// deadline; the answers are timed from `start`.
async fn probe_until(gateway_url: &str, start: Instant, mut stop: watch::Receiver<bool>) -> Probe {
    let mut client = store::connect(gateway_url).await;
    let mut probe = Probe {
        answers: Vec::new(),
        ok: Vec::new(),
    };
    let mut sequence = 0;
    while !*stop.borrow() {
        sequence += 1;
        let ids = event_ids(1);
        let events = queued_batch(&ids).events;
        let sent = start.elapsed();
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            store::publish(&mut client, sequence, events),
        )
        .await;
        let ok = matches!(answer, Ok(Ok(_)));
        probe.answers.push((sent, ok));
        if ok {
            probe.ok.extend(ids);
        }
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(25), stop.changed()).await {
            break;
        }
    }
    probe
}

/// Whether the group `loader` has been delivered and has acknowledged every entry of the
/// stream on the current primary.
fn drained(group: &RedisSentinel, stream: &str) -> bool {
    group
        .primary()
        .is_ok_and(|primary| chaos::drained(group.node(primary), stream))
}

/// Issue #18: while stores publish at a steady rate through a gateway that acknowledges
/// only what the replica confirmed (`GATEWAY_ACK_REPLICAS=1`), the Redis primary is
/// SIGKILLed repeatedly, with a failover and the old primary back as a replica between
/// kills, and once frozen with SIGSTOP as a network partition would; the consumer binary is
/// SIGKILLed meanwhile. Afterwards every event the gateway answered OK for counts exactly
/// once with FINAL, and nothing is dead-lettered, rejected or left pending. The time writes
/// were refused during each failover is printed (docs/DEPLOY.md records it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_primary_kills_and_a_partition() {
    let plan = Plan::from_env();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut kill_rng = ChaCha8Rng::seed_from_u64(seed);
    let mut server_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let group = RedisSentinel::start().unwrap();
    let env = Env::on(&group.url(), &testkit::shared_clickhouse().url()).await;
    let gateway = store::Gateway::start_with(
        &env.redis_url,
        &env.stream,
        &["--ack-replicas", "1", "--ack-timeout", "500ms"],
    )
    .await;
    let logs = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor {
        env: &env,
        logs: logs.path(),
        starts: 0,
        kills: 0,
        kills_after_insert: 0,
        exits: 0,
    };

    let (stop, stopped) = watch::channel(false);
    let start = Instant::now();
    let (failing_done, mut failing_watch) = watch::channel(false);
    let redis_plan = plan.clone();
    let redis_chaos = tokio::task::spawn_blocking(move || {
        let result = fail_primaries(group, &redis_plan, &mut server_rng, start);
        let _ = failing_done.send(true);
        result
    });
    let consumer_chaos = async {
        let mut consumer = supervisor.spawn();
        loop {
            let wait =
                Duration::from_millis(kill_rng.random_range(plan.consumer_kill_after_ms.clone()));
            let until = Instant::now() + wait;
            let mut over = false;
            while Instant::now() < until && !over {
                // Over when the Redis chaos ends, or its thread panicked (sender dropped).
                over =
                    match tokio::time::timeout(Duration::from_millis(50), failing_watch.changed())
                        .await
                    {
                        Ok(Err(_)) => true,
                        _ => *failing_watch.borrow(),
                    };
                supervisor.restart_if_exited(&mut consumer).await;
            }
            if over {
                break;
            }
            drop(consumer); // SIGKILL
            supervisor.kills += 1;
            consumer = supervisor.spawn();
        }
        consumer
    };
    let chaos = async {
        let (consumer, redis) = tokio::join!(consumer_chaos, redis_chaos);
        // a last stretch of publishing with everything up
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        (consumer, redis.unwrap())
    };
    let gateway_url = gateway.url();
    let (published, probe, (mut consumer, (group, failovers))) = tokio::join!(
        store::publish_until(
            &gateway_url,
            3,
            50,
            Duration::from_millis(20),
            stopped.clone()
        ),
        probe_until(&gateway_url, start, stopped),
        chaos,
    );
    let chaos_took = start.elapsed();

    eprintln!("failover chaos: publishing stopped at {chaos_took:?}; draining");
    let drain_start = Instant::now();
    while !tokio::task::block_in_place(|| drained(&group, &env.stream)) {
        assert!(
            drain_start.elapsed() < Duration::from_secs(90),
            "the consumer did not drain the stream (seed {seed})"
        );
        supervisor.restart_if_exited(&mut consumer).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(consumer);
    gateway.shutdown().await.unwrap();

    for failover in &failovers {
        let (refused, requests) = probe.refused_after(failover.failed_at);
        println!(
            "failover ({}, seed {seed}): primary lost at {:?}, new primary named after {:?}, \
             writes refused for {refused:?} ({requests} probe requests refused)",
            failover.kind,
            failover.failed_at,
            failover.promoted_at - failover.failed_at,
        );
    }
    println!(
        "failover chaos (seed {seed}): {} requests OK ({} events) + {} probes OK, {} retried \
         attempts {:?}, {} abandoned; consumer: {} kills, {} exits, {} starts; chaos {chaos_took:?}",
        published.requests_ok,
        published.ok.len(),
        probe.ok.len(),
        published.retried(),
        published.retries,
        published.abandoned.len(),
        supervisor.kills,
        supervisor.exits,
        supervisor.starts,
    );

    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Id {
        event_id: String,
    }
    let loaded: Vec<Id> = env
        .clickhouse()
        .query("SELECT toString(event_id) FROM commerce_events FINAL")
        .fetch_all()
        .await
        .unwrap();
    let loaded_ids: HashSet<&str> = loaded.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(
        loaded_ids.len(),
        loaded.len(),
        "an id counts twice with FINAL"
    );
    let ok: HashSet<&str> = published
        .ok
        .iter()
        .chain(&probe.ok)
        .map(String::as_str)
        .collect();
    let missing: Vec<&&str> = ok.difference(&loaded_ids).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing, e.g. {missing:?} (seed {seed})",
        ok.difference(&loaded_ids).count()
    );
    assert_eq!(failovers.len(), plan.kills + plan.partitions);
    let primary = group.node(group.primary().unwrap());
    let dead = consumer::dead_letter::dead_key(&env.stream);
    assert_eq!(
        primary.cli(&["XLEN", &dead]).unwrap(),
        "0",
        "dead letters (seed {seed})"
    );
    let pending = primary.cli(&["XPENDING", &env.stream, "loader"]).unwrap();
    assert_eq!(pending.lines().next(), Some("0"), "pending: {pending}");
    assert_eq!(env.count("SELECT count() FROM rejected_events").await, 0);
}
