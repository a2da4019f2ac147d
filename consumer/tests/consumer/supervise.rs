//! The real consumer binary as a child process: started under changing names, SIGKILLed at
//! random moments or right after an insert, and restarted like a supervisor would.

use std::{
    fs::File,
    ops::Range,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::helpers::Env;

/// The consumer binary as a child process, killed when dropped so a failing test leaves
/// nothing running.
pub struct Running(Child);

impl Running {
    pub fn spawn(env: &Env) -> Running {
        Running::spawn_with(env, "chaos", &[], None)
    }

    /// Starts the binary as consumer `name` with extra environment; its log goes to `log` if
    /// given, else to stderr with `TEST_LOG`, else nowhere.
    pub fn spawn_with(
        env: &Env,
        name: &str,
        extra: &[(&str, &str)],
        log: Option<&File>,
    ) -> Running {
        let verbose = testkit::test_log_enabled();
        let stderr = match log {
            Some(file) => Stdio::from(file.try_clone().unwrap()),
            None if verbose => Stdio::inherit(),
            None => Stdio::null(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_consumer"))
            .env("REDIS_URL", &env.redis_url)
            .env("STREAM_KEY", &env.stream)
            .env("CLICKHOUSE_URL", &env.clickhouse_url)
            .env("CLICKHOUSE_DATABASE", &env.database)
            .env("CONSUMER_NAME", name)
            .env("CONSUMER_BATCH_AGE", "100ms")
            .env("CONSUMER_READ_COUNT", "5")
            .env("RUST_LOG", if verbose { "info" } else { "warn" })
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Running(child)
    }

    /// Whether the process exited by itself (it does when Redis goes away mid-flush).
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }

    /// Peak resident set of the process so far (`VmHWM`), in KiB; `None` once it is gone.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        testkit::peak_rss_kib(self.0.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the consumer supervisor did.
pub struct Supervisor<'a> {
    pub env: &'a Env,
    /// One log file per start, `consumer-<n>.log`, to tell which start saw what.
    pub logs: &'a Path,
    pub starts: usize,
    pub kills: usize,
    /// Kills that landed while the consumer waited for its `XACK` after an insert.
    pub kills_after_insert: usize,
    /// Exits the consumer chose itself, e.g. when its `XACK` failed because Redis was down,
    /// or when it could not connect at start.
    pub exits: usize,
}

impl Supervisor<'_> {
    /// Starts the consumer under one of three names in turn, so that both recovery paths
    /// run: a restarted consumer re-reading its own pending entries, and one taking over
    /// another's after `CONSUMER_CLAIM_IDLE`.
    pub fn spawn(&mut self) -> Running {
        let n = self.starts;
        self.starts += 1;
        let log = File::create(self.logs.join(format!("consumer-{n}.log"))).unwrap();
        Running::spawn_with(
            self.env,
            &format!("chaos-{}", n % 3),
            CONSUMER_ENV,
            Some(&log),
        )
    }

    /// Starts the consumer again if it exited by itself, after a supervisor's restart delay
    /// so that a consumer that cannot connect does not spin.
    pub async fn restart_if_exited(&mut self, consumer: &mut Running) {
        if consumer.exited() {
            self.exits += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            *consumer = self.spawn();
        }
    }
}

/// Starts the consumer, SIGKILLs it `kills` times at random moments and starts it
/// again each time; one that exits by itself is restarted too. Returns the consumer still
/// running.
pub async fn kill_consumers(
    supervisor: &mut Supervisor<'_>,
    kills: usize,
    kill_after_ms: Range<u64>,
    rng: &mut ChaCha8Rng,
) -> Running {
    let mut consumer = supervisor.spawn();
    for _ in 0..kills {
        let until = Instant::now() + Duration::from_millis(rng.random_range(kill_after_ms.clone()));
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            supervisor.restart_if_exited(&mut consumer).await;
        }
        if supervisor.kills.is_multiple_of(2) {
            supervisor.kills_after_insert +=
                usize::from(kill_after_insert(consumer, supervisor.env).await);
        } else {
            drop(consumer); // SIGKILL: no shutdown, no last flush
        }
        supervisor.kills += 1;
        consumer = supervisor.spawn();
    }
    consumer
}

/// Kills the consumer, if possible while it waits for the `XACK` of rows ClickHouse already
/// has, and tells whether it did: Redis writes are paused (`CLIENT PAUSE … WRITE`, which
/// holds `XACK` and `XREADGROUP` but not ClickHouse), and if `commerce_events` grows during
/// the pause, that batch's `XACK` is necessarily held. Random timing alone almost never
/// lands in the millisecond between the two; no hook in the binary is needed for this.
async fn kill_after_insert(consumer: Running, env: &Env) -> bool {
    let rows = || async {
        env.clickhouse()
            .query("SELECT count() FROM commerce_events")
            .fetch_one::<u64>()
            .await
            .ok()
    };
    let mut landed = false;
    // Redis or ClickHouse down: a plain kill.
    if redis_cli(env, &["CLIENT", "PAUSE", "1000", "WRITE"])
        && let Some(before) = rows().await
    {
        let until = Instant::now() + Duration::from_millis(700);
        while !landed && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            landed = rows().await.is_some_and(|now| now > before);
        }
    }
    drop(consumer); // SIGKILL
    redis_cli(env, &["CLIENT", "UNPAUSE"]);
    landed
}

/// Runs redis-cli against the test's Redis; true if it succeeded.
fn redis_cli(env: &Env, args: &[&str]) -> bool {
    let port = env.redis_url.rsplit(':').next().unwrap();
    Command::new("redis-cli")
        .args(["-e", "-p", port])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Short flushes, so a kill often finds a batch in flight, and a short claim idle, so the
/// entries a killed consumer held are taken over soon by the next one under another name.
pub const CONSUMER_ENV: &[(&str, &str)] = &[
    ("CONSUMER_BATCH_AGE", "100ms"),
    ("CONSUMER_READ_COUNT", "20"),
    ("CONSUMER_CLAIM_IDLE", "1s"),
    ("RUST_LOG", "warn,consumer=debug"),
];

/// Counts the flushes in one consumer's log that skipped events already loaded: each is an
/// entry loaded, then not acknowledged (a kill between insert and `XACK`, or Redis down at
/// the `XACK`), then delivered again.
pub fn skipping_flushes(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("flushed batch"))
        .filter_map(|l| l.split("skipped: ").nth(1))
        .filter(|rest| !rest.starts_with('0'))
        .count()
}
