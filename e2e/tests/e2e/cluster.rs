//! Scale-out (issue #9): the simulator streams through two gateways into a sharded stream on a
//! 3-master Redis Cluster; three consumers load a two-shard ClickHouse 18.16 cluster through
//! Distributed tables; the report, read through another node, equals the simulator's truth.
//! The chaos variant restarts a Redis master (AOF on), kills a consumer and adds another
//! mid-run. The replica variant kills a ClickHouse replica (issue #18) and reports through both.

use std::{collections::HashSet, time::Duration};

use clap::Parser;
use testkit::{ClickHouseCluster, RedisCluster};
use tokio::{sync::watch, task::JoinHandle};

use crate::helpers::*;

const SHARDS: &str = "6";
const SECRET: &str = "cluster-secret";

/// Every loaded event id, from both tables.
const LOADED_IDS: &str = "SELECT toString(event_id) AS event_id FROM commerce_events \
     UNION ALL SELECT toString(event_id) AS event_id FROM probe_results";
/// The same with FINAL: each event once.
const LOADED_IDS_FINAL: &str = "SELECT toString(event_id) AS event_id FROM commerce_events FINAL \
     UNION ALL SELECT toString(event_id) AS event_id FROM probe_results FINAL";

#[derive(clickhouse::Row, serde::Deserialize)]
struct Id {
    event_id: String,
}

/// The servers of one cluster test and the flags every service needs for them.
struct Clusters {
    redis: RedisCluster,
    clickhouse: ClickHouseCluster,
    /// The stream key (sharded `SHARDS` ways) and the database the services use.
    stream: String,
    database: String,
}

impl Clusters {
    fn start() -> Clusters {
        Clusters {
            redis: RedisCluster::start().unwrap(),
            clickhouse: ClickHouseCluster::start().unwrap(),
            stream: "events".to_owned(),
            database: testkit::unique_name("cluster"),
        }
    }

    fn shards(&self) -> pipeline::shard::Shards {
        pipeline::shard::Shards::new(&self.stream, SHARDS.parse().unwrap())
    }

    fn shard_urls(&self) -> String {
        let urls: Vec<String> = self.clickhouse.shards().iter().map(|s| s.url()).collect();
        urls.join(",")
    }

    /// Consumer `name`, on the first ClickHouse node, migrating every shard.
    fn consumer(&self, name: &str, extra: &[&str]) -> consumer::Settings {
        let urls = self.shard_urls();
        let mut args = vec![
            "--stream-shards",
            SHARDS,
            "--clickhouse-cluster",
            self.clickhouse.name(),
            "--clickhouse-shard-urls",
            &urls,
        ];
        args.extend_from_slice(extra);
        let mut settings = consumer_settings(
            &self.redis.url(),
            &self.stream,
            &self.clickhouse.shards()[0].url(),
            &self.database,
            &args,
        );
        settings.group.consumer_name = name.to_owned();
        settings
    }

    /// A client of the second node: any node answers for the whole cluster.
    fn reader(&self) -> clickhouse::Client {
        clickhouse(&self.clickhouse.shards()[1].url(), &self.database)
    }

    /// A count through the second node; none until the consumers created the tables.
    async fn count(&self, sql: &str) -> Option<u64> {
        self.reader().query(sql).fetch_one().await.ok()
    }
}

/// The services of one stream on the clusters: two gateways (the same stores file, as
/// behind a load balancer) and the consumers added, stopped together.
struct Services {
    gateways: [Gateway; 2],
    consumers: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Services {
    async fn start(c: &Clusters) -> Services {
        let stores = simulator::fleet::stores_file(&simulator::fleet::fleet(3, SECRET));
        let flags = ["--stream-shards", SHARDS];
        let url = c.redis.url();
        let gateway = || start_gateway(&url, &c.stream, &stores, &flags);
        Services {
            gateways: [gateway().await, gateway().await],
            consumers: Vec::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Both gateways, as the simulator's `--gateway` list.
    fn gateway_urls(&self) -> String {
        format!("{},{}", self.gateways[0].url(), self.gateways[1].url())
    }

    fn add_consumer(&mut self, settings: consumer::Settings) {
        self.consumers
            .push(spawn_consumer(settings, self.stop.subscribe()));
    }

    /// Stops the consumers (each flushes what it holds) and drains the gateways.
    async fn stop(self) {
        self.stop.send_replace(true);
        for consumer in self.consumers {
            consumer.await.unwrap();
        }
        for gateway in self.gateways {
            gateway.shutdown().await.unwrap();
        }
    }
}

/// A consumer process in this test: `consumer::worker::run` under a supervisor that restarts
/// it when it exits with an error (as it does when Redis fails under an `XACK`), until
/// `stop`. Aborting the task is the consumer's SIGKILL: no last flush, no acknowledgement.
fn spawn_consumer(settings: consumer::Settings, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut stopped = stop.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            match consumer::worker::run(&settings, shutdown, Duration::from_secs(5)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer exited; restarting");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    })
}

fn simulate(gateways: &str, total: u64, rate: u64, base: i64) -> simulator::config::RunArgs {
    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "run",
        "--gateway",
        gateways,
        "--stores-per-region",
        "3",
        "--token-secret",
        SECRET,
        "--total",
        &total.to_string(),
        "--batch-size",
        "200",
        "--concurrency",
        "6",
        "--rate",
        &rate.to_string(),
        "--seed",
        "29",
        "--time-base",
        &base.to_string(),
        "--quiet",
    ])
    .unwrap();
    let simulator::config::Command::Run(args) = settings.command else {
        unreachable!()
    };
    args
}

/// Waits until every acknowledged event is loaded and every shard's group is drained.
async fn wait_loaded(c: &Clusters, expected: u64) {
    let shards = c.shards();
    let count = format!("SELECT count() FROM ({LOADED_IDS_FINAL})");
    testkit::eventually(Duration::from_secs(120), "every event loaded", || async {
        let loaded = c.count(&count).await.unwrap_or(0);
        let pending: u64 = shards
            .keys()
            .iter()
            .map(|key| {
                // No group yet (the consumers are still starting) counts as pending.
                let reply = c.redis.cli(0, &["XPENDING", key, "loader"]);
                reply
                    .ok()
                    .and_then(|r| r.lines().next()?.parse::<u64>().ok())
                    .unwrap_or(1)
            })
            .sum();
        Ok((loaded >= expected && pending == 0).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_three_consumers_on_clusters_report_the_truth() {
    let c = Clusters::start();
    let s3 = testkit::shared_s3();
    let bucket = testkit::unique_bucket();
    let mut services = Services::start(&c).await;
    for name in ["c1", "c2", "c3"] {
        services.add_consumer(c.consumer(name, &[]));
    }

    let base = event_time_base();
    let truth = simulator::send::run(&simulate(&services.gateway_urls(), 6000, 0, base))
        .await
        .unwrap();
    assert_eq!((truth.accepted, truth.failed), (6000, 0));
    wait_loaded(&c, 6000).await;

    // The shards spread over the Redis masters, the rows over the ClickHouse shards, and
    // every consumer joined every shard's group.
    let shards = c.shards();
    let mut masters = HashSet::new();
    for key in shards.keys() {
        let slot = c.redis.cli(0, &["CLUSTER", "KEYSLOT", key]).unwrap();
        // A node counts keys only in the slots it owns.
        let owner = (0..3).find(|&i| {
            c.redis
                .node(i)
                .cli(&["CLUSTER", "COUNTKEYSINSLOT", slot.trim()])
                .is_ok_and(|n| n.trim() != "0")
        });
        masters.extend(owner);
        let consumers = c
            .redis
            .cli(0, &["XINFO", "CONSUMERS", key, "loader"])
            .unwrap();
        for name in ["c1", "c2", "c3"] {
            assert!(consumers.contains(name), "{name} reads {key}: {consumers}");
        }
    }
    assert_eq!(masters.len(), 3, "the shards live on every master");
    // Trimming works on every shard through the cluster client (XINFO, XPENDING, XTRIM
    // routed to the shard's node): everything is acknowledged, so all but the last entry go.
    let settings = c.consumer("trimmer", &[]);
    for key in shards.keys() {
        let source = consumer::source::Source::connect(&settings.redis, &settings.group, key)
            .await
            .unwrap();
        assert!(source.trim().await.unwrap().is_some(), "{key} trimmed");
        let len: u64 = c
            .redis
            .cli(0, &["XLEN", key])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(len <= 1, "{key} holds {len} entries after trimming");
    }
    // The gateway's backpressure samples every shard on the node that holds it.
    let redis_client = settings.redis.client().unwrap();
    fred::interfaces::ClientLike::init(&redis_client)
        .await
        .unwrap();
    for key in shards.keys() {
        let sample = gateway::backpressure::sample(&redis_client, key)
            .await
            .unwrap_or_else(|e| panic!("sampling {key} on the cluster: {e}"));
        assert!(sample.used_memory > 0, "{key}: {sample:?}");
        assert!(sample.backlog <= 1, "{key} is drained: {sample:?}");
    }
    for shard in c.clickhouse.shards() {
        let local: u64 = shard
            .query(&format!(
                "SELECT count() FROM {}.commerce_events_local",
                c.database
            ))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(local > 1000, "every ClickHouse shard holds rows: {local}");
    }
    let loaded: Vec<Id> = c.reader().query(LOADED_IDS).fetch_all().await.unwrap();
    let ids: HashSet<&str> = loaded.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(loaded.len(), 6000, "no event loaded twice");
    let sent: HashSet<&str> = truth.accepted_ids.iter().map(String::as_str).collect();
    assert_eq!(ids, sent);

    s3.create_bucket(&bucket).unwrap();
    let store = report_store(&s3.endpoint(), &bucket).await;
    let (report, _keys) = reporter::run::run(&c.reader(), &store, utc_date(base))
        .await
        .unwrap();
    crate::full_path::oracle(&report, &truth);
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_survives_a_redis_master_restart_and_a_killed_consumer() {
    let mut c = Clusters::start();
    let mut services = Services::start(&c).await;
    // A short claim idle: the survivors take over the killed consumer's entries soon.
    let quick = ["--claim-idle", "2s"];
    for name in ["c1", "c2", "c3"] {
        services.add_consumer(c.consumer(name, &quick));
    }

    let base = event_time_base();
    let args = simulate(&services.gateway_urls(), 30_000, 3_000, base);
    let sending = tokio::spawn(async move { simulator::send::run(&args).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGKILL of consumer c2: whatever it held stays pending until c1 or c3 claims it.
    services.consumers.remove(1).abort();
    // A graceful restart of one master while the stores keep sending.
    tokio::task::block_in_place(|| c.redis.restart_node(1).unwrap());
    assert!(
        !sending.is_finished(),
        "the restart came while the stores were sending"
    );
    // Scaling out mid-run: a new consumer joins every shard's group and takes a share.
    services.add_consumer(c.consumer("c4", &quick));
    let truth = sending.await.unwrap().unwrap();
    assert!(truth.accepted > 0);
    assert!(
        truth.retried_requests > 0 || truth.accepted == 30_000,
        "the restart was noticed or harmless: {} sent, {} accepted, {} rejected, {} failed, \
         {} requests retried",
        truth.sent,
        truth.accepted,
        truth.rejected,
        truth.failed,
        truth.retried_requests
    );
    // A master restart is an outage the stores ride out by retrying: no batch is given up.
    assert_eq!(
        truth.failed, 0,
        "a batch was given up during the restart: {:?}",
        truth.failures
    );
    wait_loaded(&c, truth.accepted).await;

    let loaded: Vec<Id> = c
        .reader()
        .query(LOADED_IDS_FINAL)
        .fetch_all()
        .await
        .unwrap();
    let ids: HashSet<&str> = loaded.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), loaded.len(), "an event counts twice with FINAL");
    let missing = truth
        .accepted_ids
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .count();
    assert_eq!(missing, 0, "acknowledged events are missing");
    let shards = c.shards();
    let joined = shards
        .keys()
        .iter()
        .filter(|key| {
            c.redis
                .cli(0, &["XINFO", "CONSUMERS", key, "loader"])
                .is_ok_and(|reply| reply.contains("c4"))
        })
        .count();
    assert_eq!(
        joined,
        shards.len(),
        "the consumer started mid-run reads every shard"
    );
    // Requests the store gave up on may have been queued anyway; nothing else may appear.
    assert!(
        loaded.len() as u64 <= truth.accepted + truth.failed,
        "{} loaded, {} acknowledged, {} failed",
        loaded.len(),
        truth.accepted,
        truth.failed
    );
    eprintln!(
        "cluster chaos: {} acknowledged, {} retried requests, {} failed, {} loaded",
        truth.accepted,
        truth.retried_requests,
        truth.failed,
        loaded.len()
    );
    services.stop().await;
}

/// The scaling benchmark of the cluster setup, run by hand and recorded in
/// docs/BENCHMARKS.md (never part of the test command: it measures, and the machine is
/// shared):
///
/// ```sh
/// cargo test --release -p e2e cluster_scaling -- --ignored --nocapture
/// ```
///
/// Two gateways, a 6-shard stream on the 3-master Redis Cluster, the two-shard ClickHouse
/// cluster; `CLUSTER_BENCH_EVENTS` events (default 300,000) sent at full speed while 1 or 2
/// consumers load them, alternating 1, 2, 1, 2, … for `CLUSTER_BENCH_ROUNDS` rounds (default
/// 3) so that both see the same machine. Each run gets a fresh database and stream, and
/// must load every event exactly once; the figure is events / (first send → last row
/// queryable). Prints one line per run and the medians.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run by hand, see the doc comment"]
async fn cluster_scaling_one_vs_two_consumers() {
    let env_or = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = env_or("CLUSTER_BENCH_EVENTS", 300_000);
    let rounds = env_or("CLUSTER_BENCH_ROUNDS", 3);
    let mut c = Clusters::start();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..rounds * 2 {
        let consumers_n = 1 + (run % 2) as usize;
        c.database = testkit::unique_name("scale");
        c.stream = testkit::unique_name("events");
        let mut services = Services::start(&c).await;
        for i in 0..consumers_n {
            let mut settings = c.consumer(&format!("c{i}"), &[]);
            settings.batch.batch_age = Duration::from_secs(1);
            services.add_consumer(settings);
        }
        let started = std::time::Instant::now();
        let mut args = simulate(&services.gateway_urls(), events, 0, event_time_base());
        args.send.batch_size = 2_000;
        args.send.concurrency = 8;
        args.send.forget_ids = true;
        let truth = simulator::send::run(&args).await.unwrap();
        let sent_in = started.elapsed();
        assert_eq!(truth.accepted, events);
        testkit::eventually(Duration::from_secs(600), "every event loaded", || async {
            let n = c
                .count(&format!("SELECT count() FROM ({LOADED_IDS})"))
                .await
                .unwrap_or(0);
            Ok((n >= events).then_some(()))
        })
        .await
        .unwrap();
        let took = started.elapsed();
        let exact = c
            .count(&format!("SELECT count() FROM ({LOADED_IDS_FINAL})"))
            .await;
        assert_eq!(exact, Some(events), "every event exactly once");
        let rate = events as f64 / took.as_secs_f64();
        rates[consumers_n - 1].push(rate);
        println!(
            "cluster scaling: run {run}, {consumers_n} consumer(s): {events} events, sent in \
             {:.1} s, loaded in {:.1} s: {rate:.0} events/s end to end",
            sent_in.as_secs_f64(),
            took.as_secs_f64()
        );
        services.stop().await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "cluster scaling: median 1 consumer {one:.0} events/s, 2 consumers {two:.0} events/s, \
         ratio {:.2} ({} cores, load average {})",
        two / one,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// Issue #18: the simulator streams through a gateway while the consumer loads two
/// ClickHouse replicas of one shard (`--clickhouse-replicated`, both URLs); the replica it
/// loads through is SIGKILLed mid-run and restarted. Afterwards the day's report built by
/// the real reporter through either replica passes the oracle against the simulator's
/// truth, and the two reports are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_through_either_replica_equal_the_truth_after_a_replica_kill() {
    let mut replicas = tokio::task::block_in_place(|| testkit::ReplicatedClickHouse::start(1, 2))
        .expect("replicas");
    let redis = testkit::shared_redis().url();
    let stream = testkit::unique_name("events");
    let database = testkit::unique_name("replicas");
    let stores = simulator::fleet::stores_file(&simulator::fleet::fleet(3, SECRET));
    let gateway = start_gateway(&redis, &stream, &stores, &[]).await;
    let settings = consumer_settings(
        &redis,
        &stream,
        &replicas.urls(),
        &database,
        &["--clickhouse-replicated"],
    );
    let stop = watch::channel(false).0;
    let consumer = spawn_consumer(settings, stop.subscribe());

    let base = event_time_base();
    let args = simulate(&gateway.url(), 20_000, 2_000, base);
    let sending = tokio::spawn(async move { simulator::send::run(&args).await });
    // the kill comes once the consumer's migrations are on both replicas: a replica down
    // while they run gets its tables at the next start (schema.rs, `migrate_nodes`), and this
    // test is about a kill while loading
    let last = pipeline::schema::MIGRATIONS.last().unwrap().version;
    for node in replicas.nodes() {
        let reader = clickhouse(&node.url(), &database);
        testkit::eventually(
            Duration::from_secs(120),
            "the migrations on the replica",
            || {
                let reader = reader.clone();
                async move {
                    let applied: u32 = reader
                        .query("SELECT toUInt32(max(version)) FROM schema_migrations")
                        .fetch_one()
                        .await?;
                    Ok((applied == last).then_some(()))
                }
            },
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| replicas.node_mut(0).kill()).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| replicas.node_mut(0).restart()).unwrap();
    let truth = sending.await.unwrap().unwrap();
    assert_eq!(truth.failed, 0);

    let count = format!("SELECT count() FROM ({LOADED_IDS_FINAL})");
    for node in replicas.nodes() {
        let reader = clickhouse(&node.url(), &database);
        testkit::eventually(
            Duration::from_secs(120),
            "every event on the replica",
            || {
                let reader = reader.clone();
                let count = count.clone();
                async move {
                    let loaded: u64 = reader.query(&count).fetch_one().await?;
                    Ok((loaded == truth.accepted).then_some(()))
                }
            },
        )
        .await
        .unwrap();
    }
    stop.send_replace(true);
    consumer.await.unwrap();
    gateway.shutdown().await.unwrap();

    // Each replicated table replicates on its own, so a replica can fetch the record of a
    // build before the build's rows. Here the second replica fetches the records of the
    // first's builds but not their rows (fetches of the rollups stopped), as a slow fetch
    // would have it: its report must not read the day as built (it rebuilds it).
    let (first, second) = (
        clickhouse(&replicas.nodes()[0].url(), &database),
        clickhouse(&replicas.nodes()[1].url(), &database),
    );
    const ROLLUPS: [&str; 4] = [
        "commerce_daily",
        "audience_daily",
        "probe_daily",
        "probe_minutes",
    ];
    let fetches = |verb: &'static str| {
        let second = second.clone();
        let database = database.clone();
        async move {
            for table in ROLLUPS {
                second
                    .query(&format!("SYSTEM {verb} FETCHES {database}.{table}"))
                    .execute()
                    .await
                    .unwrap();
            }
        }
    };
    fetches("STOP").await;
    let s3 = testkit::shared_s3();
    let mut reports = Vec::new();
    for (i, reader) in [&first, &second].into_iter().enumerate() {
        if i == 1 {
            let records = "SELECT count() FROM rollup_builds";
            let built: u64 = first.query(records).fetch_one().await.unwrap();
            assert!(built > 0, "the first replica's report built rollups");
            testkit::eventually(
                Duration::from_secs(60),
                "the first replica's build records on the second",
                || async {
                    let fetched: u64 = second.query(records).fetch_one().await?;
                    Ok((fetched == built).then_some(()))
                },
            )
            .await
            .unwrap();
            let rows: u64 = second
                .query("SELECT count() FROM commerce_daily")
                .fetch_one()
                .await
                .unwrap();
            assert_eq!(rows, 0, "the rollups' rows stayed on the first replica");
        }
        let bucket = testkit::unique_bucket();
        s3.create_bucket(&bucket).unwrap();
        let store = report_store(&s3.endpoint(), &bucket).await;
        let (report, _keys) = reporter::run::run(reader, &store, utc_date(base))
            .await
            .unwrap();
        crate::full_path::oracle(&report, &truth);
        reports.push(report);
    }
    fetches("START").await;
    let json = |r: &reporter::report::MarketplaceReport| serde_json::to_string_pretty(r).unwrap();
    let (one, two) = (json(&reports[0]), json(&reports[1]));
    assert!(
        one == two,
        "the replicas' reports differ, first at:\n{}",
        first_difference(&one, &two)
    );

    // The first replica dies again: the reporter, given both URLs as CLICKHOUSE_URL lists
    // them, writes the same report through the second.
    tokio::task::block_in_place(|| replicas.node_mut(0).kill()).unwrap();
    let bucket = testkit::unique_bucket();
    s3.create_bucket(&bucket).unwrap();
    let store = report_store(&s3.endpoint(), &bucket).await;
    let clients: Vec<_> = replicas
        .nodes()
        .iter()
        .map(|node| clickhouse(&node.url(), &database))
        .collect();
    let written = reporter::run::run_on_replicas(
        &clients,
        &store,
        utc_date(base),
        &reporter::run::RunOptions::default(),
    )
    .await
    .unwrap();
    let through = json(&written.report);
    assert!(
        through == one,
        "the report through the surviving replica differs, first at:\n{}",
        first_difference(&one, &through)
    );
}

/// The first line where `a` and `b` differ, with the two lines before it, as `a` then `b`.
fn first_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(0);
    let context = |lines: &[&str]| {
        lines[at.saturating_sub(2).min(lines.len())..(at + 1).min(lines.len())].join("\n")
    };
    format!(
        "line {}:\n{}\n-- against --\n{}",
        at + 1,
        context(&a),
        context(&b)
    )
}
