//! The report's figures equal the exact truth of the inserted rows, although every row
//! was inserted twice.

use std::collections::{BTreeMap, BTreeSet};

use reporter::{build, fetch, money::nanos_text, run::RunOptions};

use crate::fixture::{self, DAY, quantile_exact};

#[tokio::test]
async fn report_figures_equal_the_exact_truth_despite_duplicates() {
    let client = fixture::seeded().await;
    let fetched = fetch::fetch(&client, DAY, 7).await.unwrap();
    let report = build::marketplace(&fetched, &RunOptions::default().build).unwrap();
    let probes = fixture::probes();
    let sales = fixture::sales();

    // stability per region and per region and target: counts, exact quantiles, averages
    assert_eq!(report.stability.len(), 3);
    assert_eq!(report.stability_by_target.len(), 6);
    for s in report.stability.iter().chain(&report.stability_by_target) {
        let mine: Vec<_> = probes
            .iter()
            .filter(|p| {
                p.region == s.row.region && (s.row.target == "*" || p.target == s.row.target)
            })
            .collect();
        let what = format!("{} {}", s.row.region, s.row.target);
        let up = mine.iter().filter(|p| p.up).count() as u64;
        assert_eq!(
            (s.row.probes, s.up_probes, s.down_probes),
            (mine.len() as u64, up, mine.len() as u64 - up),
            "{what}"
        );
        assert_eq!(
            s.availability_pct,
            up as f64 * 100.0 / mine.len() as f64,
            "{what}"
        );
        let response: Vec<u32> = mine.iter().map(|p| p.response_ms).collect();
        let latency: Vec<u32> = mine.iter().map(|p| p.latency_ms).collect();
        assert_eq!(
            [
                s.row.response_p50_ms,
                s.row.response_p95_ms,
                s.row.response_p99_ms
            ],
            [0.5, 0.95, 0.99].map(|q| quantile_exact(&response, q)),
            "{what}"
        );
        assert_eq!(
            [
                s.row.latency_p50_ms,
                s.row.latency_p95_ms,
                s.row.latency_p99_ms
            ],
            [0.5, 0.95, 0.99].map(|q| quantile_exact(&latency, q)),
            "{what}"
        );
        // probes that measured no bandwidth (0) are left out of its average
        let measured: Vec<f64> = mine
            .iter()
            .filter(|p| p.bandwidth > 0)
            .map(|p| p.bandwidth as f64)
            .collect();
        assert!(
            measured.len() < mine.len(),
            "{what}: some probes measured none"
        );
        assert_eq!(s.row.bandwidth_samples, measured.len() as u64, "{what}");
        let bandwidth = measured.iter().sum::<f64>() / measured.len() as f64;
        assert!((s.row.bandwidth_avg_bps - bandwidth).abs() < 1e-6, "{what}");
        // one probe per target and second over five minutes, a few down but never most of
        // a minute's: every minute observed is up
        let targets = if s.row.target == "*" { 2 } else { 1 };
        assert_eq!(
            (
                s.uptime.observed_minutes,
                s.uptime.up_minutes,
                s.uptime.outages
            ),
            (5 * targets, 5 * targets, 0),
            "{what}"
        );
        assert_eq!(s.uptime.uptime_pct, 100.0, "{what}");
        let load_avg = mine.iter().map(|p| p.load).sum::<f64>() / mine.len() as f64;
        assert!((s.row.cpu_load_avg - load_avg).abs() < 1e-9, "{what}");
        assert_eq!(
            s.row.cpu_load_max,
            mine.iter().map(|p| p.load).fold(0.0, f64::max),
            "{what}"
        );
    }

    // one store per region: its row is the region's
    assert_eq!(report.stability_by_store.len(), 3);
    for (store, region) in report.stability_by_store.iter().zip(&report.stability) {
        assert_eq!(store.row.store_id, "s1");
        assert_eq!(
            (
                store.row.region.as_str(),
                store.row.probes,
                store.row.response_p95_ms
            ),
            (
                region.row.region.as_str(),
                region.row.probes,
                region.row.response_p95_ms
            )
        );
        assert_eq!(store.uptime, region.uptime);
    }
    // every probe is a store's own: the matrix has one row per region, vantage `self`
    let matrix: Vec<(&str, &str, u64)> = report
        .vantage_matrix
        .iter()
        .map(|c| (c.row.vantage.as_str(), c.row.region.as_str(), c.row.probes))
        .collect();
    assert_eq!(
        matrix,
        [
            ("self", "america", 100),
            ("self", "asia", 100),
            ("self", "europe", 100)
        ]
    );

    // incidents: Europe's slow minute, Asia's two minutes with a probe down, merged
    let windows: Vec<(&str, u32, u32)> = report
        .incidents
        .iter()
        .map(|i| (i.region.as_str(), i.start, i.minutes))
        .collect();
    assert_eq!(
        windows,
        [
            ("asia", fixture::unix(DAY, 36_000 + 180), 2),
            ("europe", fixture::unix(DAY, 36_000 + 120), 1),
        ]
    );
    assert_eq!(report.incidents[0].worst_availability_pct, 95.0);

    // commerce totals, exact revenue per currency and in EUR, audience
    let today: Vec<_> = sales
        .iter()
        .filter(|s| s.at >= fixture::unix(DAY, 0) && s.at < fixture::unix(DAY, 86_400))
        .collect();
    let count = |kind: &str| today.iter().filter(|s| s.kind == kind).count() as u64;
    let t = &report.commerce.totals;
    assert_eq!(
        (t.views, t.carts, t.purchases),
        (count("view"), count("cart"), count("purchase"))
    );
    let mut revenue: BTreeMap<&str, i128> = BTreeMap::new();
    for s in today.iter().filter(|s| s.kind == "purchase") {
        *revenue.entry(s.currency).or_default() +=
            i128::from(s.price_nanos) * i128::from(s.quantity);
    }
    let got: Vec<(&str, &str)> = report
        .revenue
        .iter()
        .map(|r| (r.currency.as_str(), r.revenue.as_str()))
        .collect();
    let expected: Vec<(&str, String)> = revenue.iter().map(|(c, n)| (*c, nanos_text(*n))).collect();
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(c, n)| (*c, n.as_str()))
            .collect::<Vec<_>>()
    );
    // 63 EUR + 100 USD × 0.92 + 60.000000003 SGD × 0.69 (integer arithmetic, truncated)
    let eur = revenue["EUR"]
        + revenue["USD"] * 920_000 / 1_000_000
        + revenue["SGD"] * 690_000 / 1_000_000;
    assert_eq!(t.revenue, nanos_text(eur));
    let users: BTreeSet<u64> = today.iter().map(|s| s.user).collect();
    let sessions: BTreeSet<&str> = today.iter().map(|s| s.session.as_str()).collect();
    assert_eq!(
        (t.users, t.sessions),
        (users.len() as u64, sessions.len() as u64)
    );

    // rankings and changes
    let ranking = |name: &str| -> Vec<String> {
        report
            .commerce
            .rankings
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .rows
            .iter()
            .map(|l| l.key.clone())
            .collect()
    };
    assert_eq!(ranking("top_products_by_revenue"), ["2", "1", "4", "3"]);
    assert_eq!(ranking("top_products_by_views"), ["1", "3", "2", "4"]);
    let bottom = &report
        .commerce
        .rankings
        .iter()
        .find(|r| r.name == "bottom_categories_by_revenue")
        .unwrap()
        .rows[0];
    assert_eq!(
        (bottom.key.as_str(), bottom.category_code.as_str()),
        (
            fixture::category_id("<b>books</b> & co")
                .to_string()
                .as_str(),
            "<b>books</b> & co"
        ),
        "categories by id, labelled by code"
    );
    let views = report
        .commerce
        .changes
        .iter()
        .find(|c| c.subject == "total" && c.measure == "views")
        .unwrap();
    assert_eq!((views.current, views.previous), (23.0, Some(8.0)));

    // the plan fires where the data says so, and only there
    let fired: BTreeSet<(String, String)> = report
        .plan
        .iter()
        .map(|r| (r.rule.clone(), r.subject.clone()))
        .collect();
    let expand = format!(
        "category electronics.phone (id {})",
        fixture::category_id("electronics.phone")
    );
    let expected: BTreeSet<(String, String)> = [
        ("region_slo", "asia"),
        ("region_slo", "europe"),
        ("region_load", "asia"),
        ("expand_assortment", expand.as_str()),
        // every fixture probe measures 1 MB/s, below the 12.5 MB/s default
        ("network_capacity", "america"),
        ("network_capacity", "asia"),
        ("network_capacity", "europe"),
        ("discontinue", "product 3"),
        ("promote", "product 2"),
        ("promote", "product 1"),
        ("promote", "product 4"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(fired, expected);
    let discontinue = report
        .plan
        .iter()
        .find(|r| r.rule == "discontinue")
        .unwrap();
    assert_eq!(discontinue.evidence[0].period, "2026-01-09..2026-01-15");
    assert_eq!(
        report.watermark,
        sales
            .iter()
            .map(|s| s.at + 1)
            .chain(probes.iter().map(|p| p.at + 1))
            .max()
            .unwrap()
    );
}

#[tokio::test]
async fn seller_reports_cover_only_their_seller() {
    let client = fixture::seeded().await;
    let fetched = fetch::fetch(&client, DAY, 7).await.unwrap();
    let options = RunOptions::default().build;
    assert_eq!(
        build::largest_sellers(&fetched, &options.rates, 2).unwrap(),
        [2, 1]
    );
    let report = build::seller(&fetched, &options, 2).unwrap();
    let t = &report.commerce.totals;
    assert_eq!((t.views, t.purchases), (11, 1));
    assert_eq!(report.revenue.len(), 1);
    assert_eq!(
        (
            report.revenue[0].currency.as_str(),
            report.revenue[0].revenue.as_str(),
            report.revenue[0].purchases
        ),
        ("USD", "100.000000000", 1)
    );
    let subjects: BTreeSet<&str> = report.plan.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects, BTreeSet::from(["product 2", "product 3"]));
}
