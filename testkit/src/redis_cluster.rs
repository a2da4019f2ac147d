//! A private 3-master Redis Cluster on free loopback ports, one temp directory per node
//!
//! Each node is a [`Redis`] started in cluster mode (`cluster-enabled yes`, its node table in
//! `nodes.conf` next to its AOF), so it has the same supervision as a single server: a child
//! process owned by the struct plus a watchdog. `redis-cli --cluster create` then splits the
//! 16384 hash slots over the three masters (no replicas).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::free_port_pairs;
use crate::process::with_one_retry;
use crate::redis::{Redis, redis_cli, send_command_bulk};

/// How many masters the cluster has; `redis-cli --cluster create` refuses fewer than three.
const NODES: usize = 3;

/// A node's cluster bus listens on its client port plus this (Redis' fixed default offset).
const BUS_PORT_OFFSET: u16 = 10_000;

/// `cluster-node-timeout`: how long a node may be unreachable before the others mark it failed.
/// Short, so that tests which stop a node see the cluster react within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// Slack for the cluster to agree on `cluster_state:ok` after a create or a restart: the
/// gossip needs a few node-timeouts at most; the rest is for a loaded CI machine.
const OK_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `wait_for_ok` asks every node for `CLUSTER INFO`.
const POLL: Duration = Duration::from_millis(100);

/// A Redis Cluster of three masters (no replicas) on 127.0.0.1, each a redis-server child
/// process with AOF persistence (`appendonly yes`, `appendfsync everysec`).
///
/// Node `i` keeps its port and directory for the life of the struct, so clients can reconnect
/// after [`restart_node`](Self::restart_node). Dropping the cluster kills every node (SIGKILL)
/// and removes their directories.
pub struct RedisCluster {
    /// The nodes in the order of [`ports`](Self::ports).
    nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts three cluster-mode nodes, joins them with `redis-cli --cluster create …
    /// --cluster-replicas 0`, and waits until every node reports `cluster_state:ok`.
    ///
    /// Each node's client port `p` is chosen so that its bus port `p + 10000` is free as well.
    pub fn start() -> Result<RedisCluster> {
        with_one_retry("redis cluster", || {
            let started = Instant::now();
            let ports = free_port_pairs(NODES, BUS_PORT_OFFSET);
            let nodes = ports
                .iter()
                .map(|&port| Redis::start_cluster_node(port, NODE_TIMEOUT))
                .collect::<Result<Vec<_>>>()?;
            let cluster = RedisCluster { nodes };
            cluster.create()?;
            cluster.wait_for_ok()?;
            if crate::test_log_enabled() {
                eprintln!(
                    "testkit: redis cluster ready on ports {ports:?} in {:?}",
                    started.elapsed()
                );
            }
            Ok(cluster)
        })
    }

    /// The URL that `fred` 10 (`fred::types::config::Config::from_url`) reads as a clustered
    /// config: `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`.
    ///
    /// The `redis-cluster` scheme selects cluster mode; the host and every `node` query
    /// parameter are seed nodes, from which the client learns the slot map (`CLUSTER SLOTS`).
    pub fn url(&self) -> String {
        let ports = self.ports();
        let others = ports[1..]
            .iter()
            .map(|port| format!("node=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join("&");
        format!("redis-cluster://127.0.0.1:{}?{others}", ports[0])
    }

    /// The client ports of the nodes, node 0 first. Each node's bus port is its port + 10000.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(Redis::port).collect()
    }

    /// The nodes, in the order of [`ports`](Self::ports).
    pub fn nodes(&self) -> &[Redis] {
        &self.nodes
    }

    /// Node `i`: its [`port`](Redis::port), [`dir`](Redis::dir) and [`cli`](Redis::cli)
    /// (which talks to that node only and does not follow `MOVED` redirects).
    ///
    /// # Panics
    /// If `i` is not below 3.
    pub fn node(&self, i: usize) -> &Redis {
        &self.nodes[i]
    }

    /// Runs `redis-cli -c -p PORT_i args...` and returns its stdout, trimmed. `-c` follows
    /// `MOVED`/`ASK` redirects, so a key command works through any node. An error reply is an
    /// `Err` carrying the reply text.
    ///
    /// # Panics
    /// If `i` is not below 3.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        redis_cli(&["-c", "-p", &self.nodes[i].port().to_string()], args)
    }

    /// Stops node `i` gracefully (SHUTDOWN, which flushes its AOF), starts it again with the
    /// same port, directory and `nodes.conf`, and waits until every node reports
    /// `cluster_state:ok`. Also starts a node that was killed or stopped.
    ///
    /// # Panics
    /// If `i` is not below 3.
    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i]
            .restart()
            .with_context(|| format!("failed to restart redis cluster node {i}"))?;
        self.wait_for_ok()
            .with_context(|| format!("cluster not ok after restarting node {i}"))?;
        Ok(())
    }

    /// Stops node `i` gracefully with SHUTDOWN. The other nodes mark it failed after the node
    /// timeout (2 s) and, since it is a master without replicas, report `cluster_state:fail`
    /// until it is back ([`restart_node`](Self::restart_node)).
    ///
    /// # Panics
    /// If `i` is not below 3.
    pub fn stop_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].stop()
    }

    /// Kills node `i` with SIGKILL, as a crash would; writes not yet fsynced to its AOF are
    /// lost. [`restart_node`](Self::restart_node) brings it back.
    ///
    /// # Panics
    /// If `i` is not below 3.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill()
    }

    /// Waits until every node is running and reports `cluster_state:ok` in `CLUSTER INFO`, and
    /// returns how long that took; fails after 60 s, quoting each node's last answer.
    pub fn wait_for_ok(&self) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|node| {
                    if !node.is_running() {
                        return "not running".to_string();
                    }
                    match send_command_bulk(node.port(), &["CLUSTER", "INFO"]) {
                        Ok(info) => cluster_state(&info).unwrap_or("no cluster_state").into(),
                        Err(err) => format!("{err:#}"),
                    }
                })
                .collect();
            if states.iter().all(|state| state == "ok") {
                return Ok(started.elapsed());
            }
            if started.elapsed() > OK_TIMEOUT {
                let report = self
                    .ports()
                    .iter()
                    .zip(&states)
                    .map(|(port, state)| format!("port {port}: {state}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                bail!("redis cluster not ok after {OK_TIMEOUT:?} ({report})");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Assigns the slots: `redis-cli --cluster create` with every node, no replicas, no prompt.
    fn create(&self) -> Result<()> {
        let addrs: Vec<String> = self
            .ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = redis_cli(&[], &args).context("redis-cli --cluster create failed")?;
        // redis-cli --cluster reports problems as [ERR] lines but may still exit 0
        if output.contains("[ERR]") {
            bail!("redis-cli --cluster create reported an error:\n{output}");
        }
        Ok(())
    }
}

/// The value of `cluster_state:` in a `CLUSTER INFO` reply.
fn cluster_state(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("cluster_state:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cluster_state() {
        let info = "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n";
        assert_eq!(cluster_state(info), Some("ok"));
        assert_eq!(cluster_state("cluster_state:fail\r\n"), Some("fail"));
        assert_eq!(
            cluster_state("ERR This instance has cluster support disabled"),
            None
        );
    }
}
