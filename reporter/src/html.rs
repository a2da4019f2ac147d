//! Self-contained HTML reports: a small inline stylesheet, hand-written inline SVG charts
//! with axes and units, and the same tables as the CSV files. Every piece of text goes
//! through `html_escape`, since product, category and target names come from stores.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::{
    commerce::Line,
    report::{Commerce, MarketplaceReport, SellerReport},
    tables::{self, Table, fixed},
};

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#1f2933;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
.meta{color:#627d98}.cards,.charts{display:flex;gap:16px;flex-wrap:wrap}
.card{flex:1;min-width:200px;border:1px solid #d9e2ec;border-radius:8px;padding:12px}
.card h3{margin:0 0 8px;font-size:16px;text-transform:capitalize}.bad{color:#c81e1e;font-weight:600}
table{border-collapse:collapse;margin:8px 0;font-size:12px}th,td{border:1px solid #d9e2ec;padding:3px 6px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f4f8}.wide{overflow-x:auto}
svg{background:#fff;border:1px solid #d9e2ec;border-radius:8px}svg text{font-size:11px;fill:#334e68}
";

/// Bar colours, one per series; distinguishable for most colour vision.
const COLOURS: [&str; 4] = ["#2f6fde", "#e0892c", "#3a9a5b", "#8e5cc4"];

/// The smallest of 1, 2, 5 × 10ⁿ at or above `x`: a readable axis maximum.
fn nice_max(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * magnitude)
}

/// Axis label: integers without decimals, others with two.
fn label(x: f64) -> String {
    if x.fract() == 0.0 {
        fixed(x, 0)
    } else {
        fixed(x, 2)
    }
}

/// A series of a bar chart: one value per category.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
}

/// A vertical grouped bar chart: categories side by side on the x axis, one bar per series,
/// a y axis in `unit` with five ticks, and an optional dashed threshold line.
pub fn bar_chart(
    title: &str,
    unit: &str,
    categories: &[String],
    series: &[Series<'_>],
    threshold: Option<(f64, &str)>,
) -> String {
    let (w, h, left, right, top, bottom) = (560.0, 300.0, 64.0, 16.0, 36.0, 56.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let data_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(threshold.map(|t| t.0))
        .fold(0.0, f64::max);
    let max = nice_max(data_max);
    let y = |v: f64| top + plot_h - v / max * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        attr(title)
    );
    let _ = write!(
        s,
        r#"<text x="{left}" y="20" style="font-size:13px;font-weight:600">{}</text>"#,
        text(title)
    );
    for i in 0..=5 {
        let v = max * i as f64 / 5.0;
        let yy = fixed(y(v), 1);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#e4e7eb"/><text x="{}" y="{yy}" text-anchor="end" dominant-baseline="middle">{}</text>"##,
            w - right,
            left - 6.0,
            text(&label(v))
        );
    }
    let _ = write!(
        s,
        r##"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"##,
        top + plot_h / 2.0,
        text(unit)
    );
    let groups = categories.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let x0 = left + group_w * c as f64 + group_w * 0.1;
        for (k, ser) in series.iter().enumerate() {
            let v = ser.values.get(c).copied().unwrap_or(0.0).max(0.0);
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"#,
                fixed(x0 + bar_w * k as f64, 1),
                fixed(y(v), 1),
                fixed(bar_w - 2.0, 1),
                fixed(top + plot_h - y(v), 1),
                COLOURS[k % COLOURS.len()],
                text(&format!("{category} {}: {} {unit}", ser.name, label(v)))
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            fixed(x0 + group_w * 0.4, 1),
            top + plot_h + 16.0,
            text(category)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="#334e68"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#334e68"/>"##,
        top + plot_h,
        w - right,
        top + plot_h,
        top + plot_h
    );
    if let Some((v, name)) = threshold {
        let yy = fixed(y(v), 1);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#c81e1e" stroke-dasharray="6 4"/><text x="{}" y="{yy}" dy="-4" text-anchor="end" style="fill:#c81e1e">{}</text>"##,
            w - right,
            w - right,
            text(name)
        );
    }
    for (k, ser) in series.iter().enumerate() {
        let x = left + 110.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            h - 18.0,
            COLOURS[k % COLOURS.len()],
            x + 14.0,
            h - 9.0,
            text(ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

fn table(t: &Table) -> String {
    let mut s = format!(
        r#"<h2 id="{}">{}</h2><div class="wide"><table><thead><tr>"#,
        attr(&t.name),
        text(&t.title)
    );
    for h in &t.headers {
        let _ = write!(s, "<th>{}</th>", text(h));
    }
    s.push_str("</tr></thead><tbody>");
    if t.rows.is_empty() {
        let _ = write!(s, r#"<tr><td colspan="{}">none</td></tr>"#, t.headers.len());
    }
    for row in &t.rows {
        s.push_str("<tr>");
        for cell in row {
            // numbers right-aligned so that digits line up
            let class = if cell.parse::<f64>().is_ok() {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(s, "<td{class}>{}</td>", text(cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}

fn page(title: &str, meta: &str, body: &str) -> Vec<u8> {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p class=\"meta\">{}</p>{body}</body></html>\n",
        text(title),
        text(title),
        text(meta)
    )
    .into_bytes()
}

/// The marketplace report as one HTML page.
pub fn marketplace(r: &MarketplaceReport) -> Vec<u8> {
    let mut body = String::from("<h2>Regions</h2><div class=\"cards\">");
    for s in &r.stability {
        let bad = |miss: bool| if miss { " class=\"bad\"" } else { "" };
        let _ = write!(
            body,
            "<div class=\"card\"><h3>{}</h3><div{}>availability {} %</div><div>uptime {} % ({} min down, {} outages, MTTR {} min)</div><div{}>p95 response {} ms</div><div>probes {} (down {})</div><div>load avg {} / max {}</div></div>",
            text(&s.row.region),
            bad(s.availability_pct < r.slo.availability_pct),
            fixed(s.availability_pct, 3),
            fixed(s.uptime.uptime_pct, 3),
            s.uptime.downtime_minutes,
            s.uptime.outages,
            fixed(s.uptime.mttr_minutes, 1),
            bad(s.row.response_p95_ms > r.slo.response_p95_ms),
            fixed(s.row.response_p95_ms, 0),
            s.row.probes,
            s.down_probes,
            fixed(s.row.cpu_load_avg, 2),
            fixed(s.row.cpu_load_max, 2),
        );
    }
    body.push_str("</div><div class=\"charts\">");
    let regions: Vec<String> = r.stability.iter().map(|s| s.row.region.clone()).collect();
    let by =
        |f: fn(&crate::report::Stability) -> f64| r.stability.iter().map(f).collect::<Vec<_>>();
    body.push_str(&bar_chart(
        "Availability by region",
        "availability (%)",
        &regions,
        &[Series {
            name: "availability",
            values: by(|s| s.availability_pct),
        }],
        Some((r.slo.availability_pct, "SLO")),
    ));
    body.push_str(&bar_chart(
        "Response time by region",
        "response time (ms)",
        &regions,
        &[
            Series {
                name: "p50",
                values: by(|s| s.row.response_p50_ms),
            },
            Series {
                name: "p95",
                values: by(|s| s.row.response_p95_ms),
            },
            Series {
                name: "p99",
                values: by(|s| s.row.response_p99_ms),
            },
        ],
        Some((r.slo.response_p95_ms, "p95 SLO")),
    ));
    body.push_str(&bar_chart(
        "Network latency by region",
        "latency (ms)",
        &regions,
        &[
            Series {
                name: "p50",
                values: by(|s| s.row.latency_p50_ms),
            },
            Series {
                name: "p95",
                values: by(|s| s.row.latency_p95_ms),
            },
            Series {
                name: "p99",
                values: by(|s| s.row.latency_p99_ms),
            },
        ],
        None,
    ));
    // the matrix as grouped bars: one group per store region, one bar per vantage
    let mut vantages: Vec<String> = r
        .vantage_matrix
        .iter()
        .map(|c| c.row.vantage.clone())
        .collect();
    vantages.dedup();
    let store_regions: Vec<String> = {
        let mut v: Vec<String> = r
            .vantage_matrix
            .iter()
            .map(|c| c.row.region.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if !r.vantage_matrix.is_empty() {
        let series: Vec<Series> = vantages
            .iter()
            .map(|v| Series {
                name: v,
                values: store_regions
                    .iter()
                    .map(|region| {
                        r.vantage_matrix
                            .iter()
                            .find(|c| &c.row.vantage == v && &c.row.region == region)
                            .map_or(0.0, |c| c.row.response_p95_ms)
                    })
                    .collect(),
            })
            .collect();
        body.push_str(&bar_chart(
            "p95 response time from each vantage, by store region",
            "response time (ms)",
            &store_regions,
            &series,
            None,
        ));
    }
    body.push_str(&bar_chart(
        "Server load by region",
        "load (0–1)",
        &regions,
        &[
            Series {
                name: "average",
                values: by(|s| s.row.cpu_load_avg),
            },
            Series {
                name: "maximum",
                values: by(|s| s.row.cpu_load_max),
            },
        ],
        None,
    ));
    // the funnel's own order, not the query's alphabetical one
    let mut funnel: Vec<&crate::report::FunnelRow> = r.funnel.iter().collect();
    let step = |t: &str| {
        ["view", "cart", "remove_from_cart", "purchase"]
            .iter()
            .position(|s| *s == t)
    };
    funnel.sort_by_key(|f| step(&f.r#type));
    body.push_str(&bar_chart(
        "Funnel",
        "events",
        &funnel.iter().map(|f| f.r#type.clone()).collect::<Vec<_>>(),
        &[Series {
            name: "events",
            values: funnel.iter().map(|f| f.events as f64).collect(),
        }],
        None,
    ));
    body.push_str(&revenue_chart(
        &r.commerce,
        "top_categories_by_revenue",
        "Top categories by revenue",
        |l| {
            if l.category_code.is_empty() {
                format!("id {}", l.key)
            } else {
                l.category_code
                    .rsplit('.')
                    .next()
                    .unwrap_or(&l.category_code)
                    .to_owned()
            }
        },
    ));
    report_page(
        body,
        &tables::marketplace(r),
        &format!("Marketplace report {}", r.date),
        &r.commerce,
        &r.previous_date,
        r.watermark,
    )
}

/// A seller report as one HTML page.
pub fn seller(r: &SellerReport) -> Vec<u8> {
    let mut body = String::from("<div class=\"charts\">");
    body.push_str(&revenue_chart(
        &r.commerce,
        "top_products_by_revenue",
        "Top products by revenue",
        |l| l.key.clone(),
    ));
    report_page(
        body,
        &tables::seller(r),
        &format!("Seller {} report {}", r.seller_id, r.date),
        &r.commerce,
        &r.previous_date,
        r.watermark,
    )
}

/// The bar chart of the revenue ranking `ranking`, each row labelled by `label`; nothing if
/// the report has no such ranking.
fn revenue_chart(
    commerce: &Commerce,
    ranking: &str,
    title: &str,
    label: impl Fn(&Line) -> String,
) -> String {
    let Some(top) = commerce.rankings.iter().find(|k| k.name == ranking) else {
        return String::new();
    };
    bar_chart(
        title,
        &format!("revenue ({})", commerce.reporting_currency),
        &top.rows.iter().map(label).collect::<Vec<_>>(),
        &[Series {
            name: "revenue",
            values: top.rows.iter().map(|l| l.revenue_units()).collect(),
        }],
        None,
    )
}

/// The page of a report: `body` (its open charts section closed here), then its tables,
/// under the title and the line that says what the figures compare and cover.
fn report_page(
    mut body: String,
    sections: &[Table],
    title: &str,
    commerce: &Commerce,
    previous_date: &str,
    watermark: u32,
) -> Vec<u8> {
    body.push_str("</div>");
    for t in sections {
        body.push_str(&table(t));
    }
    page(
        title,
        &format!(
            "compared with {previous_date}; revenue in {}; data received up to {}",
            commerce.reporting_currency,
            tables::utc(watermark)
        ),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_text_is_escaped() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.87), 1.0);
        assert_eq!(nice_max(430.0), 500.0);
        assert_eq!(nice_max(99.5), 100.0);
        let svg = bar_chart(
            "<script>",
            "ms",
            &["a&b".to_owned()],
            &[Series {
                name: "\"p95\"",
                values: vec![3.0],
            }],
            Some((2.0, "SLO")),
        );
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a&amp;b"));
        assert!(svg.contains("<title>a&amp;b"), "{svg}");
        let t = Table {
            name: "x".into(),
            title: "X".into(),
            headers: vec!["h".into()],
            rows: vec![vec!["<b>".into()]],
        };
        assert!(table(&t).contains("<td>&lt;b&gt;</td>"));
    }
}
