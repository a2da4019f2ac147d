//! A Redis primary with a replica, watched by three Sentinels, on free loopback ports
//!
//! The shape of a deployment that survives the loss of its Redis primary: the sentinels agree
//! (quorum 2 of 3) that the primary is down after [`DOWN_AFTER`], promote the replica, and
//! clients that connect through them (`redis-sentinel://…`, [`RedisSentinel::url`]) follow.
//! Every node is a [`Redis`] (`appendfsync always`), so it has the same supervision as a
//! single server; the sentinels are `redis-sentinel` child processes with watchdogs too.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Supervised, find_program};
use crate::redis::{Redis, redis_cli, send_command};

/// The name the sentinels monitor the primary under (`sentinelServiceName` in the URL).
pub const SENTINEL_SERVICE: &str = "pipeline";

/// `down-after-milliseconds`: how long the primary may not answer before a sentinel
/// considers it down. Short, so that tests see a failover within seconds.
const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// How many sentinels watch the primary; two must agree that it is down.
const SENTINELS: usize = 3;

/// How often the waits below ask the servers.
const POLL: Duration = Duration::from_millis(100);

/// One `redis-sentinel` process with its (rewritten by it) configuration file.
struct Sentinel {
    /// Declared before `dir` so the sentinel dies before its directory is removed.
    _process: Supervised,
    port: u16,
    _dir: TempDir,
}

impl Sentinel {
    fn start(primary_port: u16) -> Result<Sentinel> {
        let program = find_program("redis-sentinel", &["/usr/sbin"])
            .ok_or_else(|| anyhow!("redis-sentinel not found on PATH: run scripts/install.sh"))?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-sentinel-")
            .tempdir()
            .context("failed to create sentinel temp dir")?;
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} {down}\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 4000\n\
                 sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                dir = dir.path().display(),
                down = DOWN_AFTER.as_millis(),
            ),
        )?;
        let mut cmd = Command::new(program);
        cmd.current_dir(dir.path()).arg(&config);
        let log = dir.path().join("sentinel.log");
        let mut process = Supervised::spawn("redis-sentinel", &mut cmd, dir.path(), &log, vec![])?;
        process.wait_ready(Duration::from_secs(10), || {
            Ok(send_command(port, &["PING"])?.starts_with("+PONG"))
        })?;
        Ok(Sentinel {
            _process: process,
            port,
            _dir: dir,
        })
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        redis_cli(&["-p", &self.port.to_string()], args)
    }

    /// The port of the primary this sentinel names.
    fn primary_port(&self) -> Result<u16> {
        let reply = self.cli(&["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE])?;
        reply
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("no primary in {reply:?}"))
    }

    /// Whether this sentinel knows the other sentinels and a replica that is up, so that
    /// it can take part in a failover.
    fn ready(&self) -> Result<bool> {
        let master = self.cli(&["SENTINEL", "master", SENTINEL_SERVICE])?;
        let others = field(&master, "num-other-sentinels");
        let flags = field(&master, "flags").unwrap_or_default();
        let replicas = self.cli(&["SENTINEL", "replicas", SENTINEL_SERVICE])?;
        let replica_up = replicas.lines().any(|l| l == "slave")
            && field(&replicas, "master-link-status").as_deref() == Some("ok")
            && !replicas.contains("s_down");
        Ok(others.as_deref() == Some(&(SENTINELS - 1).to_string())
            && flags == "master"
            && replica_up)
    }
}

/// The value after `name` in redis-cli's line-per-item rendering of a flat reply.
fn field(reply: &str, name: &str) -> Option<String> {
    let mut lines = reply.lines();
    lines.find(|l| *l == name)?;
    lines.next().map(str::to_owned)
}

/// A primary, one replica and three sentinels on 127.0.0.1.
///
/// Nodes keep their index, port and directory for the life of the struct; which one is the
/// primary changes with failovers ([`RedisSentinel::primary`]). Dropping it kills everything.
pub struct RedisSentinel {
    nodes: Vec<Redis>,
    sentinels: Vec<Sentinel>,
}

impl RedisSentinel {
    /// Starts the primary, its replica and the sentinels, and waits until the sentinels know
    /// each other and the replica, so that a failover can happen.
    pub fn start() -> Result<RedisSentinel> {
        let started = Instant::now();
        let primary = Redis::start_replicated_node(None)?;
        let replica = Redis::start_replicated_node(Some(primary.port()))?;
        let sentinels = (0..SENTINELS)
            .map(|_| Sentinel::start(primary.port()))
            .collect::<Result<Vec<_>>>()?;
        let group = RedisSentinel {
            nodes: vec![primary, replica],
            sentinels,
        };
        group.wait_healthy(Duration::from_secs(60))?;
        if crate::test_log_enabled() {
            eprintln!(
                "testkit: redis primary + replica + {SENTINELS} sentinels ready in {:?}",
                started.elapsed()
            );
        }
        Ok(group)
    }

    /// The URL clients connect with: every sentinel and the service name, the form fred
    /// reads (`redis-sentinel://127.0.0.1:P?sentinelServiceName=…&node=127.0.0.1:Q…`).
    pub fn url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|s| s.port);
        let first = ports.next().expect("sentinels");
        let mut url =
            format!("redis-sentinel://127.0.0.1:{first}?sentinelServiceName={SENTINEL_SERVICE}");
        for port in ports {
            url.push_str(&format!("&node=127.0.0.1:{port}"));
        }
        url
    }

    /// The node `i` (0 started as the primary, 1 as its replica).
    pub fn node(&self, i: usize) -> &Redis {
        &self.nodes[i]
    }

    /// The index of the node the sentinels name as primary (the first sentinel that
    /// answers decides).
    pub fn primary(&self) -> Result<usize> {
        let port = self
            .sentinels
            .iter()
            .find_map(|s| s.primary_port().ok())
            .ok_or_else(|| anyhow!("no sentinel names a primary"))?;
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .ok_or_else(|| anyhow!("the sentinels name port {port}, not one of ours"))
    }

    /// SIGKILLs the primary, as the loss of its machine would; returns its index.
    pub fn kill_primary(&mut self) -> Result<usize> {
        let i = self.primary()?;
        self.nodes[i].kill()?;
        Ok(i)
    }

    /// Waits until every sentinel names a node other than `old` as primary and that node
    /// says it is a primary; returns its index.
    pub fn wait_failover(&self, old: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let ports: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| s.primary_port().ok())
                .collect();
            let agreed = ports.windows(2).all(|w| w[0] == w[1]);
            if let (true, Some(Some(port))) = (agreed, ports.first()) {
                // never a command to `old`: a paused primary would never answer it
                let new = self.nodes.iter().position(|n| n.port() == *port);
                if let Some(new) = new.filter(|&new| new != old) {
                    let role = self.nodes[new].cli(&["ROLE"]).unwrap_or_default();
                    if role.starts_with("master") {
                        return Ok(new);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no failover from node {old} within {timeout:?}: sentinels name {ports:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Starts node `i` (killed) again as a replica of the current primary.
    pub fn restart_as_replica(&mut self, i: usize) -> Result<()> {
        let primary = self.nodes[self.primary()?].port();
        self.nodes[i].restart_as_replica_of(primary)
    }

    /// Waits until the primary has an online replica and every sentinel knows it and the
    /// other sentinels: the group survives the next loss of its primary.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = (|| -> Result<bool> {
                let primary = &self.nodes[self.primary()?];
                let info = primary.cli(&["INFO", "replication"])?;
                let replica_online = info.contains("role:master")
                    && info
                        .lines()
                        .any(|l| l.starts_with("slave0:") && l.contains("state=online"));
                let sentinels_ready = self
                    .sentinels
                    .iter()
                    .map(Sentinel::ready)
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .all(|r| r);
                Ok(replica_online && sentinels_ready)
            })();
            if matches!(healthy, Ok(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the redis group did not become healthy within {timeout:?}: {healthy:?}");
            }
            std::thread::sleep(POLL);
        }
    }
}
