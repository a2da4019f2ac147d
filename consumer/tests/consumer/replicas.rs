//! ClickHouse replicas (issue #18): two 18.16 servers holding `Replicated…MergeTree` replicas
//! of one shard, coordinated by ZooKeeper ([`testkit::ReplicatedClickHouse`]), with the
//! consumer given both URLs (`CLICKHOUSE_URL=a,b`, `--clickhouse-replicated`).
//!
//! `a_retried_insert_whose_answer_was_lost_counts_once_before_final` loses ClickHouse's
//! answer to an insert that did happen, and checks that the retry, on the same replica or
//! on the other, adds no row. `loading_goes_on_through_a_replica_kill_and_both_replicas_hold_the_truth`
//! is the chaos test; its long form runs with
//! `CHAOS_LONG=1 cargo test -p consumer --test consumer replicas -- --nocapture`.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::{ClickHouse, ReplicatedClickHouse};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{chaos, helpers::*, store};

/// A TCP proxy in front of one ClickHouse node that forwards everything, but swallows the
/// next `drop` answers: the request reaches the server and is carried out, and the client's
/// connection is closed when the answer comes, as a timeout or a broken network would leave
/// it. The consumer sees a network error for an insert that did happen.
struct AnswerDropper {
    port: u16,
    /// Answers still to swallow.
    drop: Arc<AtomicUsize>,
    /// Answers swallowed so far.
    dropped: Arc<AtomicUsize>,
}

impl AnswerDropper {
    async fn start(target: u16) -> AnswerDropper {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let drop = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (to_drop, counted) = (drop.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (to_drop, counted) = (to_drop.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let requests = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let swallow = to_drop
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                            .is_ok();
                        if swallow {
                            counted.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // closes both sides: the client never hears the answer
                    requests.abort();
                    let _ = client_write.shutdown().await;
                });
            }
        });
        AnswerDropper {
            port,
            drop,
            dropped,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// `SELECT …` on one node in `database`, as text.
fn on(node: &ClickHouse, database: &str, sql: &str) -> String {
    node.query(&format!("{sql} SETTINGS max_threads = 1").replace("{db}", database))
        .unwrap()
}

/// Rows of `commerce_events` on `node`, duplicates included (no FINAL).
fn rows_on(node: &ClickHouse, database: &str) -> u64 {
    on(node, database, "SELECT count() FROM {db}.commerce_events")
        .parse()
        .unwrap()
}

/// Waits until every node answers and has fetched everything the replication log holds,
/// and their tables hold the same number of rows; returns how long it took.
fn settled(nodes: &[ClickHouse], database: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let state: Option<Vec<(u64, u64)>> = nodes
            .iter()
            .map(|n| {
                let queue = n
                    .query(&format!(
                        "SELECT sum(queue_size) + sum(inserts_in_queue) FROM system.replicas \
                         WHERE database = '{database}'"
                    ))
                    .ok()?
                    .parse()
                    .ok()?;
                let rows = n
                    .query(&format!("SELECT count() FROM {database}.commerce_events"))
                    .ok()?
                    .parse()
                    .ok()?;
                Some((queue, rows))
            })
            .collect();
        let even = |state: &Vec<(u64, u64)>| {
            state
                .iter()
                .all(|&(queue, rows)| queue == 0 && rows == state[0].1)
        };
        if state.as_ref().is_some_and(even) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "replicas did not settle within {timeout:?}: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue #18: an insert that ClickHouse carried out but whose answer was lost is retried by
/// the consumer with the identical block, and the replicated table keeps one copy: before
/// FINAL, on both replicas, whether the retry goes to the same replica (one URL) or fails
/// over to the other (both URLs), since the block ids of the latest inserts are kept in
/// ZooKeeper for the whole shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_insert_whose_answer_was_lost_counts_once_before_final() {
    let replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let nodes = replicas.nodes();
    let proxy = AnswerDropper::start(nodes[0].http_port()).await;
    for (case, urls) in [
        ("same replica", proxy.url()),
        (
            "other replica",
            format!("{},{}", proxy.url(), nodes[1].url()),
        ),
    ] {
        let env = Env::on(&testkit::shared_redis().url(), &urls).await;
        let settings = env.settings("replicas", &["--clickhouse-replicated"]);
        // both replicas get the tables, whichever URLs the worker loads through
        let mut both = env.settings("replicas", &["--clickhouse-replicated"]);
        both.clickhouse.clickhouse_url = replicas.urls();
        consumer::worker::migrate(&both).await.unwrap();
        let mut worker = consumer::Worker::connect(&settings).await.unwrap();
        let ids = env.publish_many(20, 50).await;

        let before = proxy.dropped.load(Ordering::SeqCst);
        proxy.drop.store(1, Ordering::SeqCst);
        // everything published is read before the flush
        let mut read = 0;
        while read < 20 {
            match worker.step().await.unwrap() {
                consumer::Outcome::Read(n) => read += n,
                consumer::Outcome::Idle => {}
                other => panic!("{case}: {other:?}"),
            }
        }
        let outcome = worker.flush().await.unwrap();
        assert!(
            matches!(outcome, consumer::Outcome::Retrying { .. }),
            "{case}: {outcome:?}"
        );
        assert_eq!(proxy.dropped.load(Ordering::SeqCst), before + 1);
        // the insert whose answer was lost did happen
        assert_eq!(
            rows_on(&nodes[0], &env.database),
            ids.len() as u64,
            "{case}"
        );

        let outcome = worker.flush().await.unwrap();
        assert!(
            matches!(outcome, consumer::Outcome::Flushed(w) if w.commerce == ids.len()),
            "{case}: {outcome:?}"
        );
        tokio::task::block_in_place(|| settled(nodes, &env.database, Duration::from_secs(60)));
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(
                rows_on(node, &env.database),
                ids.len() as u64,
                "{case}: node {i} holds a row twice (no FINAL)"
            );
        }
        assert_eq!(env.pending("loader").await, 0, "{case}");
    }
}

/// The chaos test's `--insert-timeout`: how long a frozen replica may hold an insert. Far
/// above what the test's small inserts take even on a busy machine; a slow insert that
/// reaches it only moves to the other replica, which deduplicates the block.
const FROZEN_INSERT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Plan {
    /// Replica kills, alternating between the two replicas.
    kills: usize,
    /// After the kills, freezes (SIGSTOP, then SIGCONT) of the replica loading goes to.
    freezes: usize,
    /// Loading time before each kill, and while the replica is down.
    up_ms: std::ops::Range<u64>,
    down_ms: std::ops::Range<u64>,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("CHAOS_LONG").is_some() {
            Plan {
                kills: 8,
                freezes: 2,
                up_ms: 3_000..8_000,
                down_ms: 6_000..15_000,
            }
        } else {
            Plan {
                kills: 1,
                freezes: 1,
                up_ms: 2_000..3_000,
                down_ms: 6_000..7_000,
            }
        }
    }
}

/// What one kill or freeze cost.
#[derive(Debug)]
struct Round {
    killed: usize,
    /// `SIGKILL` (then a restart) or `SIGSTOP` (then `SIGCONT`).
    how: &'static str,
    /// From the signal to the first row the consumer added through the other replica.
    paused: Duration,
    /// From the restart's (or SIGCONT's) start until the replica held every row the other
    /// held then.
    caught_up: Duration,
}

/// The replica kills, then the freezes: before each, loading for `up_ms`; the replica is
/// SIGKILLed (or SIGSTOPped), and the time until rows grow again on the other is measured;
/// after `down_ms` it is restarted (or continued), and the time until it caught up is
/// measured. Each round hits the replica the consumer loads through: it moved to the other
/// at the previous round. A frozen replica holds loading until the consumer's insert
/// timeout (`CONSUMER_INSERT_TIMEOUT`, [`FROZEN_INSERT_TIMEOUT`] here) ends the attempt;
/// the insert it was sent is carried out when it thaws, and its block must count once.
fn kill_replicas(
    mut replicas: ReplicatedClickHouse,
    database: &str,
    plan: &Plan,
    rng: &mut ChaCha8Rng,
) -> (ReplicatedClickHouse, Vec<Round>) {
    let mut rounds = Vec::new();
    for round in 0..plan.kills + plan.freezes {
        std::thread::sleep(Duration::from_millis(rng.random_range(plan.up_ms.clone())));
        let (killed, other) = (round % 2, 1 - round % 2);
        let how = if round < plan.kills {
            replicas.node_mut(killed).kill().unwrap();
            "SIGKILL"
        } else {
            replicas.node_mut(killed).pause().unwrap();
            "SIGSTOP"
        };
        let killed_at = Instant::now();
        // Nothing reaches the other replica from the dead one any more: any growth is the
        // consumer loading through it.
        let rows_at_kill = rows_on(&replicas.nodes()[other], database);
        let down_for = Duration::from_millis(rng.random_range(plan.down_ms.clone()));
        let mut paused = None;
        while killed_at.elapsed() < down_for || paused.is_none() {
            if paused.is_none() && rows_on(&replicas.nodes()[other], database) > rows_at_kill {
                paused = Some(killed_at.elapsed());
            }
            // Generous: on a busy machine one insert may wait its whole answer timeout (60 s)
            // before the consumer moves on; the pause measured is printed below.
            assert!(
                killed_at.elapsed() < down_for + Duration::from_secs(180),
                "no row loaded through replica {other} within 180 s of the {how} of replica \
                 {killed} (it held {rows_at_kill} rows then, {} now)",
                rows_on(&replicas.nodes()[other], database)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let restart = Instant::now();
        let rows_at_restart = rows_on(&replicas.nodes()[other], database);
        if how == "SIGKILL" {
            replicas.node_mut(killed).restart().unwrap();
        } else {
            replicas.node_mut(killed).resume().unwrap();
        }
        // caught up: it holds every row loaded while it was down (loading goes on meanwhile)
        while replicas.nodes()[killed]
            .query(&format!("SELECT count() FROM {database}.commerce_events"))
            .ok()
            .and_then(|rows| rows.parse::<u64>().ok())
            .is_none_or(|rows| rows < rows_at_restart)
        {
            assert!(
                restart.elapsed() < Duration::from_secs(120),
                "replica {killed} did not catch up within 120 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let round = Round {
            killed,
            how,
            paused: paused.unwrap(),
            caught_up: restart.elapsed(),
        };
        eprintln!("replica chaos: {round:?}");
        rounds.push(round);
    }
    (replicas, rounds)
}

/// Issue #18: while a store publishes at a steady rate, one ClickHouse replica is
/// SIGKILLed during loading (alternating replicas in the long form), and then the one loading
/// goes to is frozen (SIGSTOP) as a partition would leave it; the consumer goes on loading
/// through the other, within its insert timeout for the frozen one, the killed one is
/// restarted (the frozen one continued) and catches up, and afterwards every event the
/// gateway answered OK for counts exactly once with FINAL on either replica, and the report
/// figures (events, units, revenue) read through either equal the truth. How long loading
/// paused after each signal and how long each catch-up took are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_goes_on_through_a_replica_kill_and_both_replicas_hold_the_truth() {
    let plan = Plan::from_env();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let env = Env::on(&testkit::shared_redis().url(), &replicas.urls()).await;
    let gateway = store::Gateway::start(&env.redis_url, &env.stream).await;
    let insert_timeout = format!("{}s", FROZEN_INSERT_TIMEOUT.as_secs());
    let settings = env.settings(
        "replicas",
        &[
            "--clickhouse-replicated",
            "--insert-timeout",
            &insert_timeout,
        ],
    );
    let (stop_consumer, consumer_stopped) = watch::channel(false);
    let consumer = tokio::spawn(async move {
        let mut stopped = consumer_stopped;
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        consumer::worker::run(&settings, shutdown, Duration::from_secs(10)).await
    });
    // every migration is on both replicas before the chaos starts: this test is about a kill
    // while loading. (It once waited for `commerce_events` on replica 0 only, which migration
    // 1 creates: a kill during the later migrations could stop the consumer before its first
    // load, and the test then waited 180 s for rows on the other replica.) A replica down
    // while they run gets its tables at the next start (schema.rs, `migrate_nodes`).
    let last = pipeline::schema::MIGRATIONS.last().unwrap().version;
    let started = Instant::now();
    while !replicas.nodes().iter().all(|node| {
        node.query(&format!(
            "SELECT toUInt32(max(version)) FROM {}.schema_migrations",
            env.database
        ))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
            == Some(last)
    }) {
        if consumer.is_finished() {
            panic!("the consumer ended: {:?}", consumer.await);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the migrations are not on both replicas within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (stop, stopped) = watch::channel(false);
    let database = env.database.clone();
    let chaos_plan = plan.clone();
    let chaos = tokio::task::spawn_blocking(move || {
        let result = kill_replicas(replicas, &database, &chaos_plan, &mut rng);
        // a last stretch of publishing with both replicas up
        std::thread::sleep(Duration::from_secs(1));
        result
    });
    let stopper = async {
        let result = chaos.await.unwrap();
        stop.send(true).unwrap();
        result
    };
    let start = Instant::now();
    let gateway_url = gateway.url();
    let (published, (replicas, rounds)) = tokio::join!(
        store::publish_until(&gateway_url, 2, 20, Duration::from_millis(20), stopped),
        stopper,
    );
    eprintln!(
        "replica chaos: publishing stopped at {:?}; draining",
        start.elapsed()
    );
    let drain_start = Instant::now();
    while !chaos::drained(testkit::shared_redis(), &env.stream) {
        assert!(
            drain_start.elapsed() < Duration::from_secs(90),
            "the consumer did not drain the stream (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_consumer.send(true).unwrap();
    consumer.await.unwrap().unwrap();
    gateway.shutdown().await.unwrap();
    let nodes = replicas.nodes();
    tokio::task::block_in_place(|| settled(nodes, &env.database, Duration::from_secs(120)));

    for round in &rounds {
        println!(
            "replica chaos (seed {seed}): replica {} {}: loading paused {:?}, caught up \
             {:?} after its restart (or SIGCONT) began",
            round.killed, round.how, round.paused, round.caught_up
        );
    }
    println!(
        "replica chaos (seed {seed}): {} requests OK ({} events), {} retried attempts {:?}, \
         {} abandoned; chaos {:?}",
        published.requests_ok,
        published.ok.len(),
        published.retried(),
        published.retries,
        published.abandoned.len(),
        start.elapsed()
    );

    let ok: HashSet<&str> = published.ok.iter().map(String::as_str).collect();
    let abandoned: HashSet<&str> = published.abandoned.iter().map(String::as_str).collect();
    for (i, node) in nodes.iter().enumerate() {
        let loaded = on(
            node,
            &env.database,
            "SELECT toString(event_id) FROM {db}.commerce_events FINAL",
        );
        let loaded: Vec<&str> = loaded.lines().collect();
        let ids: HashSet<&str> = loaded.iter().copied().collect();
        assert_eq!(
            ids.len(),
            loaded.len(),
            "replica {i}: an id counts twice with FINAL"
        );
        let missing: Vec<&&str> = ok.difference(&ids).take(5).collect();
        assert!(
            missing.is_empty(),
            "replica {i} lost acknowledged events: {missing:?} (seed {seed})"
        );
        let unknown: Vec<&&str> = ids
            .iter()
            .filter(|id| !ok.contains(**id) && !abandoned.contains(**id))
            .take(5)
            .collect();
        assert!(
            unknown.is_empty(),
            "replica {i} holds events nobody sent: {unknown:?}"
        );
        // the report's figures through this replica: events, units and revenue (every
        // test event is a purchase of 2 units at 12.5 EUR)
        let loaded = ids.len() as u64;
        let figures = on(
            node,
            &env.database,
            "SELECT count(), sum(quantity), toString(sum(price * quantity)) \
             FROM {db}.commerce_events FINAL WHERE type = 'purchase'",
        );
        assert_eq!(
            figures,
            format!("{loaded}\t{}\t{}.000000000", 2 * loaded, 25 * loaded),
            "replica {i}'s figures"
        );
        let rows = rows_on(node, &env.database);
        println!("replica chaos: replica {i} holds {loaded} events in {rows} rows before FINAL");
        if published.retried() == 0 {
            assert_eq!(
                rows, loaded,
                "replica {i}: a retried insert was not deduplicated"
            );
        }
    }
    assert_eq!(env.pending("loader").await, 0);
    for node in nodes {
        assert_eq!(
            on(
                node,
                &env.database,
                "SELECT count() FROM {db}.rejected_events"
            ),
            "0"
        );
    }
}

/// Issue #18, the keeper's loss: without ZooKeeper the replicated tables turn read-only, so
/// every insert fails and the consumer keeps its batch, acknowledging nothing; once
/// ZooKeeper is back (with its data), loading resumes and every event counts once on both
/// replicas. How long loading waited after ZooKeeper's return is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_zookeeper_pauses_loading_and_loses_nothing() {
    let (mut replicas, env, mut worker, mut ids) = loaded_replicas(&[]).await;
    tokio::task::block_in_place(|| replicas.zookeeper_mut().kill()).unwrap();
    ids.extend(env.publish_many(5, 20).await);
    let failed = loads_nothing_for(&mut worker, &env, Duration::from_secs(8)).await;

    tokio::task::block_in_place(|| replicas.zookeeper_mut().restart()).unwrap();
    let back = Instant::now();
    drive(&mut worker, Duration::from_secs(120), || async {
        env.pending("loader").await == 0
    })
    .await;
    println!(
        "zookeeper outage: {failed} failed attempts in {:?}; loaded {:?} after it was back",
        Duration::from_secs(8),
        back.elapsed()
    );
    let nodes = replicas.nodes();
    tokio::task::block_in_place(|| settled(nodes, &env.database, Duration::from_secs(60)));
    for (i, node) in nodes.iter().enumerate() {
        let loaded = on(
            node,
            &env.database,
            "SELECT toString(event_id) FROM {db}.commerce_events FINAL ORDER BY event_id",
        );
        let mut want: Vec<String> = ids.clone();
        want.sort();
        let mut got: Vec<&str> = loaded.lines().collect();
        got.sort();
        assert_eq!(got, want, "replica {i}");
    }
}

/// `--clickhouse-insert-quorum 2`: an insert is confirmed only once both replicas have it,
/// so while one is dead nothing is acknowledged (loading waits, entries stay in Redis), and
/// once it is back everything loads once on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_insert_quorum_of_two_a_dead_replica_stops_loading_and_loses_nothing() {
    let (mut replicas, env, mut worker, mut ids) =
        loaded_replicas(&["--clickhouse-insert-quorum", "2"]).await;
    tokio::task::block_in_place(|| replicas.node_mut(1).kill()).unwrap();
    ids.extend(env.publish_many(5, 20).await);
    let failed = loads_nothing_for(&mut worker, &env, Duration::from_secs(8)).await;

    tokio::task::block_in_place(|| replicas.node_mut(1).restart()).unwrap();
    let back = Instant::now();
    drive(&mut worker, Duration::from_secs(120), || async {
        env.pending("loader").await == 0
    })
    .await;
    println!(
        "insert quorum: {failed} failed attempts; loaded {:?} after the replica was back",
        back.elapsed()
    );
    let nodes = replicas.nodes();
    tokio::task::block_in_place(|| settled(nodes, &env.database, Duration::from_secs(60)));
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            rows_on(node, &env.database),
            ids.len() as u64,
            "replica {i}"
        );
    }
}

/// Two replicas, and a consumer (`--clickhouse-replicated` and `extra`) that has loaded a
/// first 100 events; returns their ids.
async fn loaded_replicas(
    extra: &[&str],
) -> (ReplicatedClickHouse, Env, consumer::Worker, Vec<String>) {
    let replicas =
        tokio::task::block_in_place(|| ReplicatedClickHouse::start(1, 2)).expect("replicas");
    let env = Env::on(&testkit::shared_redis().url(), &replicas.urls()).await;
    let mut args = vec!["--clickhouse-replicated"];
    args.extend_from_slice(extra);
    let mut worker = consumer::Worker::connect(&env.settings("replicas", &args))
        .await
        .unwrap();
    let ids = env.publish_many(5, 20).await;
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
    })
    .await;
    (replicas, env, worker, ids)
}

/// Steps `worker` for `period`, checking that no insert succeeds and nothing is
/// acknowledged; returns how many attempts failed (at least one).
async fn loads_nothing_for(worker: &mut consumer::Worker, env: &Env, period: Duration) -> usize {
    let start = Instant::now();
    let mut failed = 0;
    while start.elapsed() < period {
        match worker.step().await.unwrap() {
            consumer::Outcome::Retrying { error, .. } => {
                failed += 1;
                eprintln!("attempt failed: {error}");
            }
            consumer::Outcome::Flushed(w) => assert_eq!(w.commerce, 0, "loaded: {w:?}"),
            _ => {}
        }
    }
    assert!(failed > 0, "no insert failed");
    assert!(env.pending("loader").await > 0, "acknowledged");
    failed
}
