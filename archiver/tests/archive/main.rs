//! The archiver against real Redis, ClickHouse 18.16 and SeaweedFS (and chdb, a current
//! ClickHouse, for reading the lake), with events published through a real gateway.

mod chaos;
mod chdb;
mod concurrent;
mod flow;
mod helpers;
mod rebuild;
mod replay;
mod size;
