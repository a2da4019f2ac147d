//! Integration tests of the consumer against real Redis and ClickHouse 18.16, one module per
//! feature, sharing the helpers in `helpers`.

mod admin;
mod chaos;
mod duplicates;
mod failover;
mod full_redis;
mod helpers;
mod limits;
mod memory;
mod outage;
mod poison;
mod recovery;
mod rejected;
mod replicas;
mod scale;
mod sorted;
mod source;
mod store;
mod supervise;
mod trim;
