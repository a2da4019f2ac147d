//! End-to-end tests: the services wired together as in production, against real Redis,
//! ClickHouse 18.16 and SeaweedFS started by `testkit` on free loopback ports.

mod analytics;
mod bench_clickhouse;
mod bench_latency;
mod bench_lib;
mod client;
mod cluster;
mod dashboards;
mod env_docs;
mod events_only_panels;
mod examples;
mod full_path;
mod grpcurl;
mod redis_security;
mod replay;
mod reused_requests;
mod sql_engines;

// The shared helpers are the e2e crate's library, under the name every module uses.
use e2e as helpers;
