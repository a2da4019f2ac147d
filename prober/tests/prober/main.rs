//! The prober against servers the tests control (`servers`), and end to end through the
//! real gateway, Redis, consumer and ClickHouse (`pipeline`).

mod measure;
mod pipeline_path;
mod servers;
