//! Two private ClickHouse servers configured as the two shards of one cluster, `pipeline`
//!
//! Both servers get the same `<remote_servers>`: shard 1 is server 0's native port, shard 2 is
//! server 1's, one replica each and no ZooKeeper. So a `Distributed(pipeline, db, table, key)`
//! table on either server spreads rows over the two servers' local `table`s. Without ZooKeeper
//! there is no distributed DDL (`ON CLUSTER`): create the local tables on every shard with
//! [`ClickHouseCluster::query_all`].

use std::time::Instant;

use anyhow::{Context, Result};

use crate::clickhouse::{ClickHouse, Ports};
use crate::process::with_one_retry;

/// The cluster name in `<remote_servers>`, the first argument of `Distributed(…)`.
const CLUSTER_NAME: &str = "pipeline";

/// How many shards (servers) the cluster has.
const SHARDS: usize = 2;

/// Two clickhouse-server child processes on 127.0.0.1, the two shards of the cluster
/// [`pipeline`](Self::name) (one replica per shard, no ZooKeeper).
///
/// Each shard is a full [`ClickHouse`] with its own ports and directory; dropping the cluster
/// kills both servers and removes their directories.
pub struct ClickHouseCluster {
    /// Shard 1 first, in the order of `<remote_servers>`.
    shards: Vec<ClickHouse>,
}

impl ClickHouseCluster {
    /// Picks both servers' ports, writes both configs with the `pipeline` cluster, starts the
    /// two servers in parallel and waits until both answer `SELECT 1`.
    pub fn start() -> Result<ClickHouseCluster> {
        with_one_retry("clickhouse cluster", || {
            let started = Instant::now();
            let ports: Vec<Ports> = (0..SHARDS).map(|_| Ports::free()).collect();
            let clusters = remote_servers_xml(&ports.iter().map(|p| p.tcp).collect::<Vec<_>>());
            let mut shards = ports
                .iter()
                .map(|&ports| ClickHouse::prepare(ports, &[("remote_servers", clusters.clone())]))
                .collect::<Result<Vec<_>>>()?;
            // launch both before waiting for either: each takes ~2 s to come up
            let processes = shards
                .iter()
                .map(ClickHouse::launch)
                .collect::<Result<Vec<_>>>()?;
            for (i, (shard, process)) in shards.iter_mut().zip(processes).enumerate() {
                shard
                    .wait_ready(process)
                    .with_context(|| format!("clickhouse shard {} failed to start", i + 1))?;
            }
            if crate::test_log_enabled() {
                eprintln!(
                    "testkit: clickhouse cluster ready (http ports {:?}) in {:?}",
                    shards.iter().map(ClickHouse::http_port).collect::<Vec<_>>(),
                    started.elapsed()
                );
            }
            Ok(ClickHouseCluster { shards })
        })
    }

    /// The cluster name to use in `Distributed(pipeline, db, table, sharding_key)`.
    pub fn name(&self) -> &str {
        CLUSTER_NAME
    }

    /// The two servers, shard 1 first; each has its own `url()`, `query()`, `stop()` and
    /// `restart()`.
    pub fn shards(&self) -> &[ClickHouse] {
        &self.shards
    }

    /// Shard `i` (0 or 1) for stopping, killing or restarting it.
    ///
    /// # Panics
    /// If `i` is not below 2.
    pub fn shard_mut(&mut self, i: usize) -> &mut ClickHouse {
        &mut self.shards[i]
    }

    /// Runs one statement on every shard, shard 1 first, and returns their outputs: the
    /// stand-in for `ON CLUSTER`, which needs ZooKeeper. Stops at the first failure.
    pub fn query_all(&self, sql: &str) -> Result<Vec<String>> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                shard
                    .query(sql)
                    .with_context(|| format!("on clickhouse shard {}", i + 1))
            })
            .collect()
    }
}

/// The content of `<remote_servers>`: the `pipeline` cluster with one shard per native port,
/// one replica each on 127.0.0.1.
fn remote_servers_xml(tcp_ports: &[u16]) -> String {
    let shards: String = tcp_ports
        .iter()
        .map(|port| {
            format!("<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>")
        })
        .collect();
    format!("<{CLUSTER_NAME}>{shards}</{CLUSTER_NAME}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_servers_has_one_shard_per_port() {
        assert_eq!(
            remote_servers_xml(&[1, 2]),
            "<pipeline>\
             <shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>\
             <shard><replica><host>127.0.0.1</host><port>2</port></replica></shard>\
             </pipeline>"
        );
    }
}
