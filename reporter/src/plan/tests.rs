//! Each rule of [`RULES`] with a case that fires it and one that does not.

use super::*;
use crate::{
    commerce::{LineOf, Sales},
    money::Rates,
    report::{VantageCell, VantageRow},
};

/// Owned data behind a [`PlanInput`].
#[derive(Default)]
struct Fixture {
    regions: Vec<RegionHealth>,
    vantages: Vec<VantageCell>,
    views: u64,
    view_to_purchase: f64,
    products: Vec<Line>,
    categories: Vec<Line>,
    previous_categories: Vec<Line>,
    unsold: Vec<Unsold>,
}

impl Fixture {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            date: "2026-01-15",
            previous_date: "2026-01-14",
            regions: &self.regions,
            vantages: &self.vantages,
            views: self.views,
            view_to_purchase: self.view_to_purchase,
            products: &self.products,
            categories: &self.categories,
            previous_categories: &self.previous_categories,
            unsold: &self.unsold,
            unsold_period: "2026-01-09..2026-01-15",
        }
    }
}

fn region(availability_pct: f64, response_p95_ms: f64, cpu_load_max: f64) -> Vec<RegionHealth> {
    vec![RegionHealth {
        region: "asia".into(),
        availability_pct,
        response_p95_ms,
        cpu_load_max,
        bandwidth_avg_bps: 100_000_000.0,
        bandwidth_samples: 10,
    }]
}

fn bandwidth(bandwidth_avg_bps: f64, bandwidth_samples: u64) -> Vec<RegionHealth> {
    let mut r = region(100.0, 100.0, 0.5);
    r[0].bandwidth_avg_bps = bandwidth_avg_bps;
    r[0].bandwidth_samples = bandwidth_samples;
    r
}

/// A vantage × region cell with `latency_p95_ms`.
fn cell(vantage: &str, region: &str, latency_p95_ms: f64) -> VantageCell {
    VantageRow {
        vantage: vantage.into(),
        region: region.into(),
        probes: 10,
        up: 10,
        response_p50_ms: 0.0,
        response_p95_ms: 0.0,
        response_p99_ms: 0.0,
        latency_p50_ms: 0.0,
        latency_p95_ms,
        tls_p95_ms: 0.0,
        ttfb_p95_ms: 0.0,
        bandwidth_avg_bps: 0.0,
        bandwidth_samples: 0,
    }
    .into()
}

/// A category line with an id, `views`, `purchases` and `products`.
fn category(id: u64, views: u64, purchases: u64, products: u64) -> Line {
    let s = Sales {
        views,
        carts: purchases,
        purchases,
        units: purchases,
        ..Sales::default()
    };
    let of = LineOf {
        key: id.to_string(),
        category_id: Some(id),
        // category 6 has no code
        category_code: if id == 6 {
            String::new()
        } else {
            format!("c{id}")
        },
        products: Some(products),
        ..LineOf::default()
    };
    Line::new(of, &s, &Rates::default()).unwrap()
}

/// Categories 1..=4 with 10 products each, 1,000 views and 2 % conversion; the marketplace
/// totals are theirs plus `extra`'s.
fn categories(extra: Line) -> Fixture {
    let mut lines: Vec<Line> = (1..=4).map(|i| category(i, 1_000, 20, 10)).collect();
    lines.push(extra);
    let views: u64 = lines.iter().map(|l| l.views).sum();
    let purchases: u64 = lines.iter().map(|l| l.purchases).sum();
    Fixture {
        categories: lines,
        views,
        view_to_purchase: purchases as f64 / views as f64,
        ..Default::default()
    }
}

/// A product or category line with `views`, `purchases` and `eur` of revenue.
fn line(key: &str, views: u64, purchases: u64, eur: i128) -> Line {
    let mut s = Sales {
        views,
        carts: purchases,
        purchases,
        units: purchases,
        ..Sales::default()
    };
    if eur > 0 {
        s.revenue.insert("EUR".into(), eur * 1_000_000_000);
    }
    let of = LineOf {
        key: key.into(),
        category_code: "c".into(),
        seller_id: Some(1),
        ..LineOf::default()
    };
    Line::new(of, &s, &Rates::default()).unwrap()
}

/// Ten products with 100 to 109 views converting at 10 % to 17 %, plus `extra`.
fn products(extra: Line) -> Vec<Line> {
    let mut out: Vec<Line> = (0..10)
        .map(|i| line(&format!("p{i}"), 100 + i, 10 + i, 10))
        .collect();
    out.push(extra);
    out
}

fn cases() -> Vec<(&'static str, &'static str, Fixture, usize)> {
    vec![
        (
            "region_slo",
            "availability below slo",
            Fixture {
                regions: region(98.9, 100.0, 0.5),
                ..Default::default()
            },
            1,
        ),
        (
            "region_slo",
            "p95 above slo",
            Fixture {
                regions: region(100.0, 501.0, 0.5),
                ..Default::default()
            },
            1,
        ),
        (
            "region_slo",
            "on the objectives",
            Fixture {
                regions: region(99.0, 500.0, 0.5),
                ..Default::default()
            },
            0,
        ),
        (
            "region_load",
            "load at the limit",
            Fixture {
                regions: region(100.0, 100.0, 0.85),
                ..Default::default()
            },
            1,
        ),
        (
            "region_load",
            "load below the limit",
            Fixture {
                regions: region(100.0, 100.0, 0.84),
                ..Default::default()
            },
            0,
        ),
        (
            "review_price_content",
            "most viewed, least converting",
            Fixture {
                products: products(line("hot", 1000, 1, 1)),
                ..Default::default()
            },
            1,
        ),
        (
            "review_price_content",
            "most viewed, converting well",
            Fixture {
                products: products(line("hot", 1000, 500, 1)),
                ..Default::default()
            },
            0,
        ),
        (
            "review_price_content",
            "too few products for deciles",
            Fixture {
                products: vec![line("hot", 1000, 1, 1)],
                ..Default::default()
            },
            0,
        ),
        (
            "expand_assortment",
            "revenue grew 50 %",
            Fixture {
                categories: vec![line("a", 1, 1, 150)],
                previous_categories: vec![line("a", 1, 1, 100)],
                ..Default::default()
            },
            1,
        ),
        (
            "expand_assortment",
            "revenue grew 10 %",
            Fixture {
                categories: vec![line("a", 1, 1, 110)],
                previous_categories: vec![line("a", 1, 1, 100)],
                ..Default::default()
            },
            0,
        ),
        (
            "expand_assortment",
            "no revenue the day before",
            Fixture {
                categories: vec![line("a", 1, 1, 110)],
                previous_categories: vec![line("a", 1, 0, 0)],
                ..Default::default()
            },
            0,
        ),
        (
            "discontinue",
            "views without purchases",
            Fixture {
                unsold: vec![Unsold {
                    product_id: 7,
                    views: 12,
                }],
                ..Default::default()
            },
            1,
        ),
        ("discontinue", "nothing unsold", Fixture::default(), 0),
        (
            "promote",
            "products with revenue",
            Fixture {
                products: vec![
                    line("a", 1, 1, 5),
                    line("b", 1, 1, 9),
                    line("c", 1, 1, 7),
                    line("d", 1, 1, 1),
                ],
                ..Default::default()
            },
            3,
        ),
        (
            "promote",
            "no revenue",
            Fixture {
                products: vec![line("a", 1, 0, 0)],
                ..Default::default()
            },
            0,
        ),
        (
            "vantage_latency",
            "two slow cells from one vantage, one from another",
            Fixture {
                vantages: vec![
                    cell("europe", "asia", 210.0),
                    cell("europe", "america", 151.0),
                    cell("america", "asia", 160.0),
                    cell("asia", "asia", 30.0),
                ],
                ..Default::default()
            },
            2,
        ),
        (
            "vantage_latency",
            "slow only from the store itself or its own region, or on the threshold",
            Fixture {
                vantages: vec![
                    cell("self", "asia", 400.0),
                    cell("asia", "asia", 400.0),
                    cell("europe", "asia", 150.0),
                ],
                ..Default::default()
            },
            0,
        ),
        (
            "network_capacity",
            "bandwidth below the threshold",
            Fixture {
                regions: bandwidth(10_000_000.0, 5),
                ..Default::default()
            },
            1,
        ),
        (
            "network_capacity",
            "bandwidth not measured",
            Fixture {
                regions: bandwidth(0.0, 0),
                ..Default::default()
            },
            0,
        ),
        (
            "promote_category",
            "a category converting at 4 % against 2.3 %",
            categories(category(5, 1_000, 40, 10)),
            1,
        ),
        (
            "promote_category",
            "converting well on too few views",
            categories(category(5, 99, 40, 10)),
            0,
        ),
        (
            "introduce_products",
            "3,000 views over 3 products",
            categories(category(5, 3_000, 60, 3)),
            1,
        ),
        (
            "introduce_products",
            "the same demand over a full assortment",
            categories(category(5, 3_000, 60, 30)),
            0,
        ),
    ]
}

#[test]
fn new_rules_cite_what_fired_them() {
    let f = Fixture {
        vantages: vec![
            cell("america", "asia", 160.0),
            cell("europe", "asia", 210.0),
            cell("europe", "america", 151.0),
        ],
        ..Default::default()
    };
    let got = vantage_latency(&f.input(), &PlanConfig::default());
    assert_eq!(got[0].subject, "europe", "the slowest vantage first");
    assert_eq!(got[0].action, "add a CDN / edge in europe");
    assert_eq!(
        got[0].evidence,
        [
            evidence("latency_p95_ms_to_asia", 210.0, 150.0, "2026-01-15"),
            evidence("latency_p95_ms_to_america", 151.0, 150.0, "2026-01-15"),
        ]
    );
    let f = categories(category(6, 3_000, 60, 3));
    let got = introduce_products(&f.input(), &PlanConfig::default());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, "category id 6", "no code: named by its id");
    // 7,000 views over 43 products, × 1.5; 43 / 5 × 0.8
    assert_eq!(
        got[0].evidence,
        [
            evidence(
                "views_per_product",
                1_000.0,
                7_000.0 / 43.0 * 1.5,
                "2026-01-15"
            ),
            evidence("view_to_purchase", 0.02, 140.0 / 7_000.0, "2026-01-15"),
            evidence("products", 3.0, 43.0 / 5.0 * 0.8, "2026-01-15"),
        ]
    );
    let got = promote_category(
        &categories(category(5, 1_000, 40, 10)).input(),
        &PlanConfig::default(),
    );
    assert_eq!(got[0].subject, "category c5 (id 5)");
}

#[test]
fn every_rule_fires_and_stays_quiet_as_documented() {
    let config = PlanConfig::default();
    let cases = cases();
    for (name, rule) in RULES {
        assert!(
            cases.iter().any(|(r, _, _, n)| r == name && *n > 0)
                && cases.iter().any(|(r, _, _, n)| r == name && *n == 0),
            "rule {name} needs a firing and a non-firing case"
        );
        for (_, case, fixture, expected) in cases.iter().filter(|(r, ..)| r == name) {
            let got = rule(&fixture.input(), &config);
            assert_eq!(got.len(), *expected, "rule {name}, case {case}: {got:#?}");
            for rec in &got {
                assert_eq!(rec.rule, *name);
                assert!(!rec.evidence.is_empty(), "rule {name} cites evidence");
            }
        }
    }
}

#[test]
fn recommendations_cite_metric_value_threshold_and_period() {
    let f = Fixture {
        regions: region(97.5, 800.0, 0.9),
        products: vec![line("a", 1, 1, 5), line("b", 1, 1, 9)],
        ..Default::default()
    };
    let plan = plan(&f.input(), &PlanConfig::default());
    assert_eq!(plan[0].action, "add a CDN / capacity in asia");
    assert_eq!(
        plan[0].evidence,
        [
            evidence("availability_pct", 97.5, 99.0, "2026-01-15"),
            evidence("response_p95_ms", 800.0, 500.0, "2026-01-15"),
        ]
    );
    assert_eq!(plan[1].action, "scale servers in asia");
    let promoted: Vec<&str> = plan
        .iter()
        .filter(|r| r.rule == "promote")
        .map(|r| r.subject.as_str())
        .collect();
    assert_eq!(promoted, ["product b", "product a"]);
}

#[test]
fn decile_cuts_are_the_kth_smallest_and_largest_values() {
    let values: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(decile_cuts(values.clone(), 0.1), (1.0, 10.0));
    assert_eq!(decile_cuts(values.clone(), 0.2), (2.0, 9.0));
    assert_eq!(decile_cuts(vec![5.0], 0.1), (5.0, 5.0));
}

#[test]
fn each_rule_keeps_its_strongest_recommendations_only() {
    let f = Fixture {
        unsold: (0..30)
            .map(|i| Unsold {
                product_id: i,
                views: i + 1,
            })
            .collect(),
        ..Default::default()
    };
    let config = PlanConfig {
        max_per_rule: 2,
        ..PlanConfig::default()
    };
    let subjects: Vec<String> = plan(&f.input(), &config)
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert_eq!(subjects, ["product 29", "product 28"]);
}
