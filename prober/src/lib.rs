//! The prober: measures store endpoints from one region and publishes what it measured as
//! `ProbeResult` events, through the gateway like any store, as a principal with
//! `role = "prober"` in the gateway's stores file.
//!
//! # Layout
//! - [`config`]: the settings (`PROBER_*`), parsed once in `main`.
//! - [`targets`]: the targets file (`PROBER_TARGETS_FILE`), checked at start.
//! - [`measure`]: one HTTP request on a fresh connection, DNS + connect, TLS handshake,
//!   first byte and end of body timed apart, under one timeout.
//! - [`probe`]: one probe of a target (the request, then bandwidth and load when it is up)
//!   as a `ProbeResult`.
//! - [`run`]: every target on its own interval with jitter; publishing through the `client`
//!   crate's `Publisher`; the `prober_*` metrics.
//!
//! # What a ProbeResult says
//! - `up`: the expected status arrived with its whole body before the timeout.
//! - `status_code`: the status, or 0 when no response arrived (timeout, refused or dropped
//!   connection, failed TLS).
//! - `response_time_ms`: start to the end of the body; the timeout's value for a probe that
//!   timed out (down, never a missing sample).
//! - `network_latency_ms`: DNS + TCP connect; `tls_handshake_ms`: the handshake alone (0 for
//!   `http://`); `time_to_first_byte_ms`: start to the response head.
//! - `bandwidth_bytes_per_second`: body bytes of `payload_url` over its whole download; 0
//!   when the target has none or the probe is down.
//! - `cpu_load`: `load_url`'s JSON answer `{"cpu_load": <0..=1>}`; 0 when there is none.
//! - `vantage_region`: the prober's region (`PROBER_REGION`).

pub mod config;
pub mod measure;
pub mod probe;
pub mod run;
pub mod targets;

pub use config::Settings;
