//! What a quota shared by every gateway would cost per request, next to the per-gateway
//! quota the gateway has (`gateway::quota`), so that the choice between them rests on a
//! measurement (issue: "choose by measuring the cost per request").
//!
//! Run: `cargo bench -p gateway --bench quota` (starts a private Redis with testkit).
//!
//! Rows, each the median of `ROUNDS` alternated rounds:
//! - `local`: `Quotas::check` of a 1,000-event request, one thread, and two threads on one
//!   store (the gateway's runtime has one worker per core);
//! - `shared`: the same two-dimension GCRA as one Lua script in Redis (`SHARED_GCRA` below,
//!   what a shared quota would run), called with EVALSHA one at a time (latency) and 16 at
//!   a time (what a busy gateway would do), with Redis's own CPU per call from `INFO cpu`;
//! - `xadd`: for scale, the Redis write every accepted request already makes: XADD of a
//!   64 KiB entry (about a 300-event request), one at a time and 16 at a time.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use fred::prelude::*;
use gateway::{
    auth::{Stores, token_sha256},
    quota::Quotas,
};

const ROUNDS: usize = 5;
const LOCAL_CHECKS: usize = 1_000_000;
const REDIS_CALLS: usize = 20_000;
const CONCURRENCY: usize = 16;
const EVENTS: usize = 1_000;

/// The per-gateway GCRA of `gateway::quota`, as one atomic script over a hash per store:
/// both dimensions (events, bytes) are judged and taken together, or neither. Time is
/// Redis's own (`TIME`), so gateways with skewed clocks agree. Returns `{1, 0}` when taken,
/// `{0, retry_after_us}` when over the quota, `{-1, dimension}` when the request can never fit.
const SHARED_GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 1000000
local tat = redis.call('HMGET', KEYS[1], 'e', 'b')
local next = {}
local wait = 0
for i = 1, 2 do
  local limit = tonumber(ARGV[2 * i - 1])
  local amount = tonumber(ARGV[2 * i])
  local current = tonumber(tat[i]) or 0
  if limit > 0 then
    local cost = amount * window / limit
    if cost > window then return {-1, i} end
    next[i] = math.max(current, now) + cost
    local over = next[i] - (now + window)
    if over > wait then wait = over end
  else
    next[i] = current
  end
end
if wait > 0 then return {0, math.ceil(wait)} end
redis.call('HSET', KEYS[1], 'e', next[1], 'b', next[2])
redis.call('PEXPIRE', KEYS[1], 2000)
return {1, 0}
"#;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort();
    xs[((xs.len() as f64 - 1.0) * p) as usize]
}

/// ns per `Quotas::check` on `threads` threads sharing one store's limiter.
fn local_ns_per_check(quotas: &Arc<Quotas>, stores: &Stores, threads: usize) -> f64 {
    let store = stores
        .authenticate(Some(b"Bearer bench"))
        .expect("bench store")
        .clone();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (quotas, store) = (quotas.clone(), store.clone());
            scope.spawn(move || {
                for _ in 0..LOCAL_CHECKS / threads {
                    quotas
                        .check(&store, EVENTS, || EVENTS * 300)
                        .expect("the limits are far above the bench's rate");
                }
            });
        }
    });
    started.elapsed().as_nanos() as f64 / LOCAL_CHECKS as f64
}

/// Redis's CPU time so far (user + sys), from `INFO cpu`.
async fn redis_cpu(client: &Client) -> Duration {
    let info: String = client.info(Some(fred::types::InfoKind::Cpu)).await.unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Duration::from_secs_f64(field("used_cpu_user") + field("used_cpu_sys"))
}

struct RedisRow {
    p50: Duration,
    p99: Duration,
    /// calls per second at `CONCURRENCY` in flight
    throughput: f64,
    /// Redis CPU per call, at `CONCURRENCY` in flight
    cpu: Duration,
}

/// Latency one call at a time, then throughput and Redis CPU with `CONCURRENCY` in flight.
async fn measure<F, Fut>(client: &Client, call: F) -> RedisRow
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut latencies = Vec::with_capacity(REDIS_CALLS / 4);
    for i in 0..REDIS_CALLS / 4 {
        let started = Instant::now();
        call(i).await;
        latencies.push(started.elapsed());
    }
    let cpu_before = redis_cpu(client).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let call = call.clone();
            tokio::spawn(async move {
                for i in 0..REDIS_CALLS / CONCURRENCY {
                    call(t * REDIS_CALLS + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = redis_cpu(client).await.saturating_sub(cpu_before);
    RedisRow {
        p50: percentile(&mut latencies, 0.5),
        p99: percentile(&mut latencies, 0.99),
        throughput: REDIS_CALLS as f64 / elapsed.as_secs_f64(),
        cpu: cpu / REDIS_CALLS as u32,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stores = Stores::parse(&format!(
        "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n\
         max_events_per_second = 4000000000\nmax_bytes_per_second = 1000000000000\n",
        token_sha256("bench")
    ))
    .unwrap();
    let quotas = Arc::new(Quotas::new(&stores));

    let redis = testkit::Redis::start().expect("redis-server (scripts/install.sh)");
    let client = Builder::from_config(Config::from_url(&redis.url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let sha: String = client.script_load(SHARED_GCRA).await.unwrap();
    let entry = Arc::new(vec![b'x'; 64 << 10]);

    let (mut local1, mut local2) = (Vec::new(), Vec::new());
    let (mut gcra, mut xadd) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        local1.push(local_ns_per_check(&quotas, &stores, 1));
        local2.push(local_ns_per_check(&quotas, &stores, 2));
        let (c, sha) = (client.clone(), sha.clone());
        gcra.push(
            measure(&client, move |_| {
                let (c, sha) = (c.clone(), sha.clone());
                async move {
                    // limits far above the bench's rate: every call takes, as most would
                    let answer: Vec<i64> = c
                        .evalsha(
                            sha,
                            vec!["quota:{eu-1}"],
                            vec!["4000000000", "1000", "1000000000000", "300000"],
                        )
                        .await
                        .unwrap();
                    assert_eq!(answer, [1, 0], "taken");
                }
            })
            .await,
        );
        let (c, entry) = (client.clone(), entry.clone());
        xadd.push(
            measure(&client, move |_| {
                let (c, entry) = (c.clone(), entry.clone());
                async move {
                    let _: String = c
                        .xadd(
                            "bench-stream",
                            false,
                            ("MAXLEN", "~", 1000),
                            "*",
                            vec![("events", entry.as_slice())],
                        )
                        .await
                        .unwrap();
                }
            })
            .await,
        );
    }

    let row = |name: &str, rows: &[RedisRow]| {
        let us = |f: &dyn Fn(&RedisRow) -> Duration| {
            median(rows.iter().map(|r| f(r).as_secs_f64() * 1e6).collect())
        };
        println!(
            "{name:<28} p50 {:>7.1} µs   p99 {:>7.1} µs   {:>8.0} calls/s at {CONCURRENCY} in flight   Redis CPU {:>5.2} µs/call",
            us(&|r| r.p50),
            us(&|r| r.p99),
            median(rows.iter().map(|r| r.throughput).collect()),
            us(&|r| r.cpu),
        );
    };
    println!(
        "medians of {ROUNDS} alternated rounds; requests of {EVENTS} events; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<28} {:>7.1} ns/check on 1 thread, {:.1} ns/check on 2 threads sharing one store",
        "local (per gateway)",
        median(local1),
        median(local2)
    );
    row("shared (EVALSHA GCRA)", &gcra);
    row("for scale: XADD 64 KiB", &xadd);
}
