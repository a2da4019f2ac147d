//! Reporter integration tests against real ClickHouse 18.16 and SeaweedFS from testkit:
//! rows are inserted directly (each twice, as a redelivery would), reports are written to
//! S3 and compared with the exact truth of the inserted data.

mod figures;
mod fixture;
mod hostile;
mod html;
mod identity;
mod money;
mod objects;
mod rollup;
mod serve;
