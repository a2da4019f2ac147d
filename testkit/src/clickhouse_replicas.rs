//! ClickHouse servers holding replicas of each shard, coordinated by a private ZooKeeper
//!
//! The shape of a deployment that survives the loss of one ClickHouse machine (issue #18):
//! `shards × replicas` servers (18.16), every one configured with
//! - the cluster `pipeline` in `<remote_servers>`, each shard listing its replicas with
//!   `<internal_replication>true</internal_replication>` (a `Distributed` table writes one
//!   replica and replication copies it, rather than writing every replica itself);
//! - `<zookeeper>`: the one [`ZooKeeper`] of the group;
//! - `<macros>`: `{shard}` (`01`, `02`, …) and `{replica}` (`r1`, `r2`, …), which the
//!   `Replicated…MergeTree('/clickhouse/tables/{shard}/…', '{replica}')` engines expand;
//! - `<interserver_http_host>127.0.0.1</interserver_http_host>`: where the other replicas
//!   fetch this one's parts.

use std::time::Instant;

use anyhow::{Context, Result};

use crate::clickhouse::{ClickHouse, Ports};
use crate::process::with_one_retry;
use crate::zookeeper::ZooKeeper;

/// The cluster name in `<remote_servers>`.
const CLUSTER_NAME: &str = "pipeline";

/// How long a ClickHouse server's ZooKeeper session outlives it (ZooKeeper clamps it to its
/// own bounds): short, so a killed replica's ephemeral nodes go quickly.
const SESSION_TIMEOUT_MS: u32 = 5_000;

/// `shards × replicas` clickhouse-server child processes and one ZooKeeper, on 127.0.0.1.
///
/// Nodes are numbered shard by shard: node `s * replicas + r` is replica `r` of shard `s`.
/// Each is a full [`ClickHouse`] that can be killed and restarted on its ports and data;
/// dropping the group kills everything and removes the directories.
pub struct ReplicatedClickHouse {
    nodes: Vec<ClickHouse>,
    replicas: usize,
    /// Declared after the nodes: they die before their coordinator.
    zookeeper: ZooKeeper,
}

impl ReplicatedClickHouse {
    /// Starts ZooKeeper, then every server in parallel, and waits until all answer.
    pub fn start(shards: usize, replicas: usize) -> Result<ReplicatedClickHouse> {
        assert!(
            shards > 0 && replicas > 0,
            "at least one shard and one replica"
        );
        let started = Instant::now();
        let zookeeper = ZooKeeper::start()?;
        let nodes = with_one_retry("replicated clickhouse", || {
            let ports: Vec<Ports> = (0..shards * replicas).map(|_| Ports::free()).collect();
            let clusters = remote_servers_xml(&ports, replicas);
            let mut nodes = ports
                .iter()
                .enumerate()
                .map(|(i, &ports)| {
                    ClickHouse::prepare(ports, &node_elements(&clusters, &zookeeper, i, replicas))
                })
                .collect::<Result<Vec<_>>>()?;
            let processes = nodes
                .iter()
                .map(ClickHouse::launch)
                .collect::<Result<Vec<_>>>()?;
            for (i, (node, process)) in nodes.iter_mut().zip(processes).enumerate() {
                node.wait_ready(process)
                    .with_context(|| format!("clickhouse node {i} failed to start"))?;
            }
            Ok(nodes)
        })?;
        if crate::test_log_enabled() {
            eprintln!(
                "testkit: {shards} x {replicas} replicated clickhouse ready (http ports {:?}) in {:?}",
                nodes.iter().map(ClickHouse::http_port).collect::<Vec<_>>(),
                started.elapsed()
            );
        }
        Ok(ReplicatedClickHouse {
            nodes,
            replicas,
            zookeeper,
        })
    }

    /// The cluster name to use in `Distributed(pipeline, …)`.
    pub fn name(&self) -> &str {
        CLUSTER_NAME
    }

    /// Every server, shard by shard.
    pub fn nodes(&self) -> &[ClickHouse] {
        &self.nodes
    }

    /// Node `i`, to kill, stop or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut ClickHouse {
        &mut self.nodes[i]
    }

    /// Replicas per shard.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Every node's HTTP URL, comma-separated, in node order: the `CLICKHOUSE_URL` of a
    /// consumer that fails over between them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(ClickHouse::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The coordinator, to kill or restart it.
    pub fn zookeeper_mut(&mut self) -> &mut ZooKeeper {
        &mut self.zookeeper
    }
}

/// The elements of node `i`'s config.xml that make it a replica.
fn node_elements(
    clusters: &str,
    zookeeper: &ZooKeeper,
    i: usize,
    replicas: usize,
) -> Vec<(&'static str, String)> {
    let (shard, replica) = (i / replicas + 1, i % replicas + 1);
    vec![
        ("remote_servers", clusters.to_owned()),
        (
            "zookeeper",
            format!(
                "<node><host>127.0.0.1</host><port>{}</port></node>\
                 <session_timeout_ms>{SESSION_TIMEOUT_MS}</session_timeout_ms>",
                zookeeper.port()
            ),
        ),
        (
            "macros",
            format!("<shard>{shard:02}</shard><replica>r{replica}</replica>"),
        ),
        ("interserver_http_host", "127.0.0.1".to_owned()),
    ]
}

/// The content of `<remote_servers>`: the `pipeline` cluster, consecutive nodes grouped into
/// shards of `replicas`, each shard replicating internally.
fn remote_servers_xml(nodes: &[Ports], replicas: usize) -> String {
    let shards: String = nodes
        .chunks(replicas)
        .map(|shard| {
            let replicas: String = shard
                .iter()
                .map(|p| {
                    format!(
                        "<replica><host>127.0.0.1</host><port>{}</port></replica>",
                        p.tcp
                    )
                })
                .collect();
            format!("<shard><internal_replication>true</internal_replication>{replicas}</shard>")
        })
        .collect();
    format!("<{CLUSTER_NAME}>{shards}</{CLUSTER_NAME}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_group_consecutive_nodes_and_replicate_internally() {
        let ports = |tcp| Ports {
            http: 0,
            tcp,
            interserver: 0,
        };
        assert_eq!(
            remote_servers_xml(&[ports(1), ports(2)], 2),
            "<pipeline><shard><internal_replication>true</internal_replication>\
             <replica><host>127.0.0.1</host><port>1</port></replica>\
             <replica><host>127.0.0.1</host><port>2</port></replica>\
             </shard></pipeline>"
        );
        assert_eq!(
            remote_servers_xml(&[ports(1), ports(2)], 1)
                .matches("<shard>")
                .count(),
            2
        );
    }
}
