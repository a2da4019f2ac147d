//! The reports as named tables: one model that becomes both the CSV files and the HTML
//! tables, so the two never disagree.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    commerce::{Change, Comparison, Line, Ranking, Totals},
    plan::Recommendation,
    report::{FunnelRow, MarketplaceReport, RevenueRow, SellerReport, Stability, VantageCell},
};

/// The text of a figure nobody measured (bandwidth without a payload URL), the same in CSV
/// and HTML.
pub const NOT_MEASURED: &str = "not measured";

/// A bandwidth average, or [`NOT_MEASURED`] when no probe measured it.
fn bandwidth(avg_bps: f64, samples: u64) -> String {
    if samples == 0 {
        NOT_MEASURED.to_owned()
    } else {
        fixed(avg_bps, 0)
    }
}

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

    /// The table as CSV with a header row, every cell a spreadsheet would evaluate
    /// neutralised ([`csv_cell`]).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers).expect("writing to memory");
        for row in &self.rows {
            w.write_record(row.iter().map(|cell| csv_cell(cell).into_owned()))
                .expect("writing to memory");
        }
        w.into_inner().expect("flushing to memory")
    }
}

/// A cell as it may go into a CSV file: store-supplied text (a category code, a probe
/// target, a plan subject) that starts with `=`, `+`, `-`, `@`, a tab or a carriage return
/// would run as a formula in a spreadsheet, so it gets a leading `'` (the OWASP
/// CSV-injection rule). Plain numbers such as `-3.5000` are left alone: a spreadsheet
/// reads them as numbers, and a quote would turn them into text.
pub fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `-12`, `-0.5`: an optional minus, digits, at most one decimal point between digits.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
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
            "store_id",
            "target",
            "probes",
            "up",
            "down",
            "availability_pct",
            "uptime_pct",
            "observed_minutes",
            "downtime_minutes",
            "outages",
            "mttr_minutes",
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
                let u = &s.uptime;
                vec![
                    r.region.clone(),
                    r.store_id.clone(),
                    r.target.clone(),
                    r.probes.to_string(),
                    s.up_probes.to_string(),
                    s.down_probes.to_string(),
                    fixed(s.availability_pct, 3),
                    fixed(u.uptime_pct, 3),
                    u.observed_minutes.to_string(),
                    u.downtime_minutes.to_string(),
                    u.outages.to_string(),
                    fixed(u.mttr_minutes, 1),
                    fixed(r.response_p50_ms, 1),
                    fixed(r.response_p95_ms, 1),
                    fixed(r.response_p99_ms, 1),
                    fixed(r.latency_p50_ms, 1),
                    fixed(r.latency_p95_ms, 1),
                    fixed(r.latency_p99_ms, 1),
                    bandwidth(r.bandwidth_avg_bps, r.bandwidth_samples),
                    fixed(r.cpu_load_avg, 3),
                    fixed(r.cpu_load_max, 3),
                ]
            })
            .collect(),
    )
}

fn vantage_matrix(cells: &[VantageCell]) -> Table {
    Table::new(
        "vantage_matrix",
        "Response times from each vantage to each store region",
        &[
            "vantage",
            "store_region",
            "probes",
            "availability_pct",
            "response_p50_ms",
            "response_p95_ms",
            "response_p99_ms",
            "latency_p50_ms",
            "latency_p95_ms",
            "tls_p95_ms",
            "ttfb_p95_ms",
            "bandwidth_avg_bps",
        ],
        cells
            .iter()
            .map(|c| {
                let r = &c.row;
                vec![
                    r.vantage.clone(),
                    r.region.clone(),
                    r.probes.to_string(),
                    fixed(c.availability_pct, 3),
                    fixed(r.response_p50_ms, 1),
                    fixed(r.response_p95_ms, 1),
                    fixed(r.response_p99_ms, 1),
                    fixed(r.latency_p50_ms, 1),
                    fixed(r.latency_p95_ms, 1),
                    fixed(r.tls_p95_ms, 1),
                    fixed(r.ttfb_p95_ms, 1),
                    bandwidth(r.bandwidth_avg_bps, r.bandwidth_samples),
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
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        vec![
            l.key.clone(),
            opt(l.category_id),
            l.category_code.clone(),
            l.brand.clone().unwrap_or_default(),
            opt(l.seller_id),
            opt(l.products),
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
            "category_id",
            "category_code",
            "brand",
            "seller_id",
            "products",
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

/// The text of an absent comparison, the same in CSV and HTML.
pub const NO_DATA: &str = "no data";

fn changes(name: &str, title: &str, rows: &[Change]) -> Table {
    let compared = |v: Option<f64>, decimals: usize, c: &Change| match (v, c.comparison) {
        (_, Comparison::NoData) => NO_DATA.to_owned(),
        (Some(v), Comparison::Compared) => fixed(v, decimals),
        (None, Comparison::Compared) => String::new(),
    };
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
                    compared(c.previous, 4, c),
                    compared(c.delta, 4, c),
                    compared(c.delta_pct, 2, c),
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
        stability(
            "stability_by_store",
            "Stability by store",
            &r.stability_by_store,
        ),
        vantage_matrix(&r.vantage_matrix),
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
        Table::new(
            "data_quality",
            "Data quality",
            &["figure", "value", "window", "meaning"],
            vec![vec![
                "conflicting_ids".to_owned(),
                r.data_quality.conflicting_ids.to_string(),
                r.data_quality.conflict_window.clone(),
                "events of the day whose (store_id, event_id) also has a row on another day: \
                 a retry that changed occurred_at, counted on both days"
                    .to_owned(),
            ]],
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

    #[test]
    fn csv_cells_a_spreadsheet_would_evaluate_are_neutralised() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+2", "'+1+2"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("-1.", "'-1."),
            // numbers and ordinary text are unchanged
            ("-3.5000", "-3.5000"),
            ("-12", "-12"),
            ("electronics.phone", "electronics.phone"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), written, "{cell:?}");
        }
        let t = Table::new("t", "T", &["code"], vec![vec!["=1+1".into()]]);
        assert_eq!(t.to_csv(), b"code\n'=1+1\n");
    }

    #[test]
    fn comparisons_without_a_previous_day_say_no_data() {
        let rows = [
            Change::new("total", "views", 524.0, None),
            Change::new("total", "carts", 5.0, Some(0.0)),
        ];
        let t = changes("changes", "Changes", &rows);
        assert_eq!(t.rows[0][3..], [NO_DATA, NO_DATA, NO_DATA]);
        assert_eq!(t.rows[1][3..], ["0.0000", "5.0000", ""]);
    }
}
