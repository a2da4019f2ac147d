//! The gateway's API against real Redis over real gRPC on loopback: one test binary, a module
//! per feature, and `helpers::spawn_gateway` starting the gateway in-process.

mod auth;
mod backpressure;
mod edge;
mod helpers;
mod hostile;
mod idle;
mod preflight;
mod quota;
mod redis_down;
mod replication;
mod shutdown;
mod sizes;
mod stores_reload;
mod stream;
mod tls;
mod validation;
