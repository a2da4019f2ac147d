//! The reports as named tables: one model that becomes both the CSV files and the HTML
//! tables, so the two never disagree.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    commerce::{Change, Line, Ranking, Totals},
    plan::Recommendation,
    report::{FunnelRow, MarketplaceReport, RevenueRow, SellerReport, Stability},
};

/// A table of text cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File stem of the CSV (`<name>.csv`) and anchor in the HTML.
    pub name: String,
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn new(name: &str, title: &str, headers: &[&str], rows: Vec<Vec<String>>) -> Table {
        Table {
            name: name.to_owned(),
            title: title.to_owned(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows,
        }
    }

    /// The table as CSV with a header row.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers).expect("writing to memory");
        for row in &self.rows {
            w.write_record(row).expect("writing to memory");
        }
        w.into_inner().expect("flushing to memory")
    }
}

/// A number with fixed decimals, so text is the same on every run and platform.
pub fn fixed(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

/// Unix seconds as RFC 3339 UTC.
pub fn utc(unix: u32) -> String {
    OffsetDateTime::from_unix_timestamp(i64::from(unix))
        .expect("u32 seconds are a valid time")
        .format(&Rfc3339)
        .expect("rfc 3339 formats every time")
}

fn funnel(rows: &[FunnelRow]) -> Table {
    Table::new(
        "funnel",
        "Funnel",
        &["type", "events", "units"],
        rows.iter()
            .map(|f| vec![f.r#type.clone(), f.events.to_string(), f.units.to_string()])
            .collect(),
    )
}

fn revenue(rows: &[RevenueRow]) -> Table {
    Table::new(
        "revenue",
        "Revenue per currency",
        &["currency", "revenue", "purchases"],
        rows.iter()
            .map(|r| {
                vec![
                    r.currency.clone(),
                    r.revenue.clone(),
                    r.purchases.to_string(),
                ]
            })
            .collect(),
    )
}

fn stability(name: &str, title: &str, rows: &[Stability]) -> Table {
    Table::new(
        name,
        title,
        &[
            "region",
            "target",
            "probes",
            "up",
            "down",
            "availability_pct",
            "response_p50_ms",
            "response_p95_ms",
            "response_p99_ms",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "bandwidth_avg_bps",
            "cpu_load_avg",
            "cpu_load_max",
        ],
        rows.iter()
            .map(|s| {
                let r = &s.row;
                vec![
                    r.region.clone(),
                    r.target.clone(),
                    r.probes.to_string(),
                    s.up_probes.to_string(),
                    s.down_probes.to_string(),
                    fixed(s.availability_pct, 3),
                    fixed(r.response_p50_ms, 1),
                    fixed(r.response_p95_ms, 1),
                    fixed(r.response_p99_ms, 1),
                    fixed(r.latency_p50_ms, 1),
                    fixed(r.latency_p95_ms, 1),
                    fixed(r.latency_p99_ms, 1),
                    fixed(r.bandwidth_avg_bps, 0),
                    fixed(r.cpu_load_avg, 3),
                    fixed(r.cpu_load_max, 3),
                ]
            })
            .collect(),
    )
}

fn totals(t: &Totals, currency: &str) -> Table {
    Table::new(
        "totals",
        "Totals",
        &[
            "views",
            "carts",
            "purchases",
            "units",
            "users",
            "sessions",
            "revenue",
            "reporting_currency",
            "view_to_cart",
            "cart_to_purchase",
            "view_to_purchase",
            "unconverted_currencies",
        ],
        vec![vec![
            t.views.to_string(),
            t.carts.to_string(),
            t.purchases.to_string(),
            t.units.to_string(),
            t.users.to_string(),
            t.sessions.to_string(),
            t.revenue.clone(),
            currency.to_owned(),
            fixed(t.view_to_cart, 4),
            fixed(t.cart_to_purchase, 4),
            fixed(t.view_to_purchase, 4),
            t.unconverted_currencies.join(" "),
        ]],
    )
}

fn ranking(r: &Ranking) -> Table {
    let title = r.name.replace('_', " ");
    let line = |l: &Line| {
        vec![
            l.key.clone(),
            l.category_code.clone(),
            l.seller_id.map_or(String::new(), |s| s.to_string()),
            l.views.to_string(),
            l.carts.to_string(),
            l.purchases.to_string(),
            l.units.to_string(),
            l.revenue.clone(),
            l.revenue_by_currency
                .iter()
                .map(|(c, v)| format!("{c} {v}"))
                .collect::<Vec<_>>()
                .join("; "),
            fixed(l.view_to_cart, 4),
            fixed(l.cart_to_purchase, 4),
            fixed(l.view_to_purchase, 4),
        ]
    };
    Table::new(
        &r.name,
        &title,
        &[
            "key",
            "category_code",
            "seller_id",
            "views",
            "carts",
            "purchases",
            "units",
            "revenue",
            "revenue_by_currency",
            "view_to_cart",
            "cart_to_purchase",
            "view_to_purchase",
        ],
        r.rows.iter().map(line).collect(),
    )
}

fn changes(name: &str, title: &str, rows: &[Change]) -> Table {
    Table::new(
        name,
        title,
        &[
            "subject",
            "measure",
            "current",
            "previous",
            "delta",
            "delta_pct",
        ],
        rows.iter()
            .map(|c| {
                vec![
                    c.subject.clone(),
                    c.measure.clone(),
                    fixed(c.current, 4),
                    fixed(c.previous, 4),
                    fixed(c.delta, 4),
                    c.delta_pct.map_or(String::new(), |p| fixed(p, 2)),
                ]
            })
            .collect(),
    )
}

fn plan(rows: &[Recommendation]) -> Table {
    Table::new(
        "plan",
        "Development plan",
        &["rule", "subject", "action", "evidence"],
        rows.iter()
            .map(|r| {
                let evidence = r
                    .evidence
                    .iter()
                    .map(|e| {
                        format!(
                            "{} = {} (threshold {}, {})",
                            e.metric,
                            fixed(e.value, 3),
                            fixed(e.threshold, 3),
                            e.period
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                vec![
                    r.rule.clone(),
                    r.subject.clone(),
                    r.action.clone(),
                    evidence,
                ]
            })
            .collect(),
    )
}

/// Every table of the marketplace report, in the order the HTML shows them.
pub fn marketplace(r: &MarketplaceReport) -> Vec<Table> {
    let mut out = vec![
        plan(&r.plan),
        stability("stability", "Stability by region", &r.stability),
        stability(
            "stability_by_target",
            "Stability by region and probe target",
            &r.stability_by_target,
        ),
        Table::new(
            "incidents",
            "Incidents",
            &[
                "region",
                "start",
                "end",
                "minutes",
                "worst_availability_pct",
                "worst_response_p95_ms",
            ],
            r.incidents
                .iter()
                .map(|i| {
                    vec![
                        i.region.clone(),
                        utc(i.start),
                        utc(i.end),
                        i.minutes.to_string(),
                        fixed(i.worst_availability_pct, 3),
                        fixed(i.worst_response_p95_ms, 1),
                    ]
                })
                .collect(),
        ),
        changes(
            "region_changes",
            "Regions against the previous day",
            &r.region_changes,
        ),
        funnel(&r.funnel),
        revenue(&r.revenue),
        totals(&r.commerce.totals, &r.commerce.reporting_currency),
        changes(
            "changes",
            "Commerce against the previous day",
            &r.commerce.changes,
        ),
    ];
    out.extend(r.commerce.rankings.iter().map(ranking));
    out
}

/// Every table of a seller report, in the order the HTML shows them.
pub fn seller(r: &SellerReport) -> Vec<Table> {
    let mut out = vec![
        plan(&r.plan),
        revenue(&r.revenue),
        totals(&r.commerce.totals, &r.commerce.reporting_currency),
        changes("changes", "Against the previous day", &r.commerce.changes),
    ];
    out.extend(r.commerce.rankings.iter().map(ranking));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_cells_that_need_it() {
        let t = Table::new(
            "t",
            "T",
            &["a", "b"],
            vec![vec!["x,y".into(), "q\"".into()]],
        );
        assert_eq!(t.to_csv(), b"a,b\n\"x,y\",\"q\"\"\"\n");
        assert_eq!(utc(60), "1970-01-01T00:01:00Z");
        assert_eq!(fixed(0.5, 2), "0.50");
    }
}
