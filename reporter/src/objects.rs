//! The S3 key layout and the objects each report becomes: JSON, HTML and one CSV per table.
//!
//! ```text
//! reports/<date>/marketplace/report.json | report.html | <table>.csv
//! reports/<date>/sellers/<seller_id>/report.json | report.html | <table>.csv
//! reports/<date>/manifest.json
//! ```

use crate::{
    html,
    report::{MarketplaceReport, SellerReport, to_json},
    tables::{self, Table},
};

/// One object to upload.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

pub fn marketplace_prefix(date: &str) -> String {
    format!("reports/{date}/marketplace")
}

pub fn seller_prefix(date: &str, seller_id: u64) -> String {
    format!("reports/{date}/sellers/{seller_id}")
}

pub fn manifest_key(date: &str) -> String {
    format!("reports/{date}/manifest.json")
}

fn objects(prefix: &str, json: Vec<u8>, html: Vec<u8>, tables: Vec<Table>) -> Vec<Object> {
    let mut out = vec![
        Object {
            key: format!("{prefix}/report.json"),
            body: json,
            content_type: "application/json",
        },
        Object {
            key: format!("{prefix}/report.html"),
            body: html,
            content_type: "text/html; charset=utf-8",
        },
    ];
    out.extend(tables.into_iter().map(|t| Object {
        key: format!("{prefix}/{}.csv", t.name),
        body: t.to_csv(),
        content_type: "text/csv; charset=utf-8",
    }));
    out
}

/// The marketplace report's objects.
pub fn marketplace(r: &MarketplaceReport) -> Vec<Object> {
    objects(
        &marketplace_prefix(&r.date),
        to_json(r),
        html::marketplace(r),
        tables::marketplace(r),
    )
}

/// A seller report's objects.
pub fn seller(r: &SellerReport) -> Vec<Object> {
    objects(
        &seller_prefix(&r.date, r.seller_id),
        to_json(r),
        html::seller(r),
        tables::seller(r),
    )
}
