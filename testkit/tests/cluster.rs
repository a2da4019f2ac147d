//! The local clusters against the real servers: a 3-master Redis Cluster whose keys spread over
//! the nodes and survive a node restart, and a two-shard ClickHouse cluster behind Distributed
//! tables

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, ServerConfig};
use testkit::{ClickHouseCluster, RedisCluster, unique_name};

/// Slot ranges per node port, from `CLUSTER NODES` (`… connected 0-5460 …`).
fn slot_owners(cluster: &RedisCluster) -> Vec<(u16, u16, u16)> {
    let nodes = cluster.cli(0, &["CLUSTER", "NODES"]).unwrap();
    let mut owners = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // id addr flags master ping pong epoch link-state slot...
        let port: u16 = fields[1]
            .split(['@', ':'])
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad CLUSTER NODES line: {line}"));
        for range in &fields[8..] {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            owners.push((from.parse().unwrap(), to.parse().unwrap(), port));
        }
    }
    owners
}

fn owner_of(owners: &[(u16, u16, u16)], slot: u16) -> u16 {
    owners
        .iter()
        .find(|(from, to, _)| (*from..=*to).contains(&slot))
        .map(|(_, _, port)| *port)
        .unwrap_or_else(|| panic!("slot {slot} has no owner in {owners:?}"))
}

#[test]
fn redis_cluster_spreads_keys_and_keeps_them_over_a_node_restart() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start().unwrap();
    eprintln!("redis cluster started in {:?}", started.elapsed());

    let ports = cluster.ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        cluster.url(),
        format!(
            "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    );
    for (i, port) in ports.iter().enumerate() {
        let info = cluster.node(i).cli(&["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "node {i}: {info}");
        assert!(info.contains("cluster_known_nodes:3"), "node {i}: {info}");
        assert_eq!(
            cluster
                .node(i)
                .cli(&["CONFIG", "GET", "appendonly"])
                .unwrap(),
            "appendonly\nyes"
        );
        assert_eq!(cluster.node(i).port(), *port);
    }

    // keys with different hash tags land in different slots, owned by different nodes
    let owners = slot_owners(&cluster);
    let mut keys_by_node: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for tag in 0..12 {
        let key = format!("{{tag{tag}}}:events");
        let value = format!("value-{tag}");
        // set through node 0 and read through node 1: -c follows the MOVED redirects
        assert_eq!(cluster.cli(0, &["SET", &key, &value]).unwrap(), "OK");
        assert_eq!(cluster.cli(1, &["GET", &key]).unwrap(), value);
        let slot: u16 = cluster
            .cli(2, &["CLUSTER", "KEYSLOT", &key])
            .unwrap()
            .parse()
            .unwrap();
        keys_by_node
            .entry(owner_of(&owners, slot))
            .or_default()
            .push(key);
    }
    assert_eq!(
        keys_by_node.keys().copied().collect::<BTreeSet<_>>(),
        ports.iter().copied().collect::<BTreeSet<_>>(),
        "12 hash tags should reach all 3 masters: {keys_by_node:?}"
    );
    // without -c a node answers only for its own slots
    let key_of_node1 = &keys_by_node[&ports[1]][0];
    assert!(cluster.node(1).cli(&["GET", key_of_node1]).is_ok());
    let moved = cluster.node(0).cli(&["GET", key_of_node1]).unwrap_err();
    assert!(format!("{moved:#}").contains("MOVED"), "{moved:#}");

    // a graceful restart keeps the node's slots and its AOF data
    let dir = cluster.node(1).dir();
    let started = Instant::now();
    cluster.restart_node(1).unwrap();
    eprintln!(
        "redis cluster node restarted and ok in {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.node(1).dir(), dir);
    assert_eq!(cluster.ports(), ports);
    for key in &keys_by_node[&ports[1]] {
        let tag = key.trim_start_matches("{tag").split('}').next().unwrap();
        assert_eq!(
            cluster.node(1).cli(&["GET", key]).unwrap(),
            format!("value-{tag}"),
            "{key} lost over the restart"
        );
    }
    assert_eq!(slot_owners(&cluster), owners);

    // a crash (SIGKILL) is survived too: the node comes back from nodes.conf and its AOF
    cluster.kill_node(2).unwrap();
    cluster.restart_node(2).unwrap();
    let key_of_node2 = &keys_by_node[&ports[2]][0];
    assert!(
        cluster
            .cli(0, &["GET", key_of_node2])
            .unwrap()
            .starts_with("value-")
    );
}

#[tokio::test]
async fn redis_cluster_url_is_what_fred_connects_with() {
    let cluster = RedisCluster::start().unwrap();
    let config = Config::from_url(&cluster.url()).unwrap();
    let ServerConfig::Clustered { hosts, .. } = &config.server else {
        panic!("fred read {} as {:?}", cluster.url(), config.server);
    };
    let mut seen: Vec<u16> = hosts.iter().map(|server| server.port).collect();
    seen.sort_unstable();
    let mut ports = cluster.ports();
    ports.sort_unstable();
    assert_eq!(seen, ports);

    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    for tag in 0..9 {
        let key = format!("{{fred{tag}}}:k");
        let _: () = client.set(&key, tag, None, None, false).await.unwrap();
        let back: i64 = client.get(&key).await.unwrap();
        assert_eq!(back, tag);
        assert_eq!(
            cluster.cli(tag as usize % 3, &["GET", &key]).unwrap(),
            tag.to_string()
        );
    }
    client.quit().await.unwrap();
}

#[test]
fn clickhouse_cluster_distributes_inserts_and_reads_everything_back() {
    let started = Instant::now();
    let cluster = ClickHouseCluster::start().unwrap();
    eprintln!("clickhouse cluster started in {:?}", started.elapsed());
    assert_eq!(cluster.name(), "pipeline");
    let [one, two] = cluster.shards() else {
        panic!("expected two shards");
    };
    assert_ne!(one.tcp_port(), two.tcp_port());

    // each server knows the cluster with both shards
    for shard in cluster.shards() {
        let ports = shard
            .query("SELECT port FROM system.clusters WHERE cluster = 'pipeline' ORDER BY shard_num")
            .unwrap();
        assert_eq!(ports, format!("{}\n{}", one.tcp_port(), two.tcp_port()));
    }

    let db = unique_name("cluster");
    cluster.query_all(&format!("CREATE DATABASE {db}")).unwrap();
    cluster
        .query_all(&format!(
            "CREATE TABLE {db}.local (id UInt64, v String) ENGINE = MergeTree ORDER BY id"
        ))
        .unwrap();
    cluster
        .query_all(&format!(
            "CREATE TABLE {db}.dist AS {db}.local \
             ENGINE = Distributed(pipeline, {db}, local, cityHash64(id))"
        ))
        .unwrap();

    // 18.16 has the setting, and query_with_settings passes it
    assert_eq!(
        one.query_with_settings(
            "SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'",
            &[("insert_distributed_sync", "1")],
        )
        .unwrap(),
        "1"
    );
    one.query_with_settings(
        &format!("INSERT INTO {db}.dist SELECT number, toString(number) FROM numbers(1000)"),
        &[("insert_distributed_sync", "1")],
    )
    .unwrap();
    // synchronous: both shards hold their part as soon as the INSERT returns
    let on_one: u64 = one
        .query(&format!("SELECT count() FROM {db}.local"))
        .unwrap()
        .parse()
        .unwrap();
    let on_two: u64 = two
        .query(&format!("SELECT count() FROM {db}.local"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(on_one + on_two, 1000);
    assert!(on_one > 300 && on_two > 300, "split {on_one} / {on_two}");
    for shard in cluster.shards() {
        assert_eq!(
            shard
                .query(&format!("SELECT count(), sum(id) FROM {db}.dist"))
                .unwrap(),
            "1000\t499500"
        );
    }

    // ReplacingMergeTree behind a Distributed table: FINAL collapses versions on each shard,
    // and cityHash64(id) sends every version of an id to the same shard
    cluster
        .query_all(&format!(
            "CREATE TABLE {db}.local_r (id UInt64, version UInt32, v String) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        ))
        .unwrap();
    cluster
        .query_all(&format!(
            "CREATE TABLE {db}.dist_r AS {db}.local_r \
             ENGINE = Distributed(pipeline, {db}, local_r, cityHash64(id))"
        ))
        .unwrap();
    for version in 1..=3 {
        two.query_with_settings(
            &format!(
                "INSERT INTO {db}.dist_r \
                 SELECT number, {version}, concat('v', toString({version})) FROM numbers(100)"
            ),
            &[("insert_distributed_sync", "1")],
        )
        .unwrap();
    }
    assert_eq!(
        one.query(&format!("SELECT count() FROM {db}.dist_r"))
            .unwrap(),
        "300"
    );
    assert_eq!(
        one.query(&format!(
            "SELECT count(), uniqExact(id), min(version), any(v) FROM {db}.dist_r FINAL"
        ))
        .unwrap(),
        "100\t100\t3\tv3"
    );
}

#[test]
fn clickhouse_cluster_has_no_distributed_ddl_without_zookeeper() {
    let cluster = ClickHouseCluster::start().unwrap();
    let db = unique_name("oncluster");
    let err = cluster.shards()[0]
        .query(&format!("CREATE DATABASE {db} ON CLUSTER pipeline"))
        .unwrap_err();
    // 18.16 starts its DDL worker only with a ZooKeeper config, and says so only indirectly
    let text = format!("{err:#}");
    assert!(
        text.contains("DDL background thread is not initialized")
            || text.to_lowercase().contains("zookeeper"),
        "{text}"
    );

    // a restarted shard comes back on the same ports with its databases, and the
    // Distributed table on the other shard reaches it again
    let mut cluster = cluster;
    cluster.query_all(&format!("CREATE DATABASE {db}")).unwrap();
    cluster
        .query_all(&format!(
            "CREATE TABLE {db}.local (id UInt64) ENGINE = MergeTree ORDER BY id"
        ))
        .unwrap();
    cluster.shards()[0]
        .query(&format!(
            "CREATE TABLE {db}.dist AS {db}.local \
             ENGINE = Distributed(pipeline, {db}, local, id)"
        ))
        .unwrap();
    cluster.shards()[1]
        .query(&format!("INSERT INTO {db}.local VALUES (1), (3)"))
        .unwrap();
    let port = cluster.shards()[1].http_port();
    cluster.shard_mut(1).restart().unwrap();
    assert_eq!(cluster.shards()[1].http_port(), port);
    assert_eq!(
        cluster.shards()[0]
            .query(&format!("SELECT count() FROM {db}.dist"))
            .unwrap(),
        "2"
    );
}
