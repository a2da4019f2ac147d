//! End-to-end tests: the services wired together as in production, against real Redis,
//! ClickHouse 18.16 and SeaweedFS started by `testkit` on free loopback ports.

mod client;
mod cluster;
mod dashboards;
mod env_docs;
mod examples;
mod full_path;
mod grpcurl;
mod helpers;
mod replay;
mod sql_engines;
