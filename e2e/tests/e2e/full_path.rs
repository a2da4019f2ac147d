//! The whole path once: simulator → gRPC Publish → Redis → consumer → ClickHouse →
//! reporter → S3, asserting the exact event ids and counts at each hop.

use std::{collections::BTreeSet, time::Duration};

use clap::Parser;
use pipeline::proto::ingest::event::Payload;
use simulator::truth::decimal_text;

use crate::helpers::*;

#[derive(clickhouse::Row, serde::Deserialize)]
struct Id {
    event_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_from_publish_to_the_report_in_s3() {
    let redis = testkit::shared_redis();
    let ch = testkit::shared_clickhouse();
    let s3 = testkit::shared_s3();
    let stream = testkit::unique_name("events");
    let database = testkit::unique_name("e2e");
    let bucket = testkit::unique_bucket();
    let gateway = start_fleet_gateway(&redis.url(), &stream, 2, "e2e-secret").await;

    // Hop 1: the simulator publishes; the gateway acknowledges. Event time runs at 1.5
    // events a second from 01:00 UTC yesterday, so the 3,000 events span 33 minutes and
    // uptime has minutes to count; Asia's checkout is down from minute 5 to 15.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base = now - now.rem_euclid(86_400) - 86_400 + 3_600;
    let scenario = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        scenario.path(),
        format!(
            "{}\n[[incidents]]\nkind = \"outage\"\nregion = \"asia\"\ntarget = \"checkout\"\n\
             start_offset_s = 300\nend_offset_s = 900\n",
            simulator::scenario::DEFAULT_TOML
        ),
    )
    .unwrap();
    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "run",
        "--gateway",
        &gateway.url(),
        "--scenario",
        scenario.path().to_str().unwrap(),
        "--clock-rate",
        "1.5",
        "--stores-per-region",
        "2",
        "--token-secret",
        "e2e-secret",
        "--total",
        "3000",
        "--batch-size",
        "250",
        "--rate",
        "0",
        "--seed",
        "11",
        "--time-base",
        &base.to_string(),
        "--quiet",
    ])
    .unwrap();
    let simulator::config::Command::Run(args) = settings.command else {
        unreachable!()
    };
    let truth = simulator::send::run(&args).await.unwrap();
    assert_eq!(truth.sent, 3000);
    assert_eq!(truth.accepted, 3000, "every simulated event is valid");
    assert_eq!((truth.rejected, truth.failed), (0, 0));
    let sent: BTreeSet<String> = truth.accepted_ids.iter().cloned().collect();
    assert_eq!(sent.len(), 3000, "event ids are unique");

    // Hop 2: Redis holds one entry per request, with exactly the acknowledged events.
    let batches = stream_batches(&redis.url(), &stream).await;
    assert_eq!(batches.len(), 3000 / 250, "one stream entry per request");
    let queued: BTreeSet<String> = batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| e.event_id.clone()))
        .collect();
    assert_eq!(queued, sent);
    assert!(
        batches
            .iter()
            .all(|b| b.received_at.is_some() && !b.store_id.is_empty())
    );
    let probes = batches
        .iter()
        .flat_map(|b| &b.events)
        .filter(|e| matches!(e.payload, Some(Payload::Probe(_))))
        .count();

    // Hop 3: the consumer loads ClickHouse with exactly those events.
    let settings = consumer_settings(&redis.url(), &stream, &ch.url(), &database, &[]);
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    let client = clickhouse(&ch.url(), &database);
    let count = || async {
        client
            .query("SELECT count() FROM (SELECT event_id FROM commerce_events UNION ALL SELECT event_id FROM probe_results)")
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    consume_until(&mut worker, Duration::from_secs(60), || async {
        count().await >= 3000
    })
    .await
    .unwrap();
    let loaded: Vec<Id> = client
        .query("SELECT toString(event_id) AS event_id FROM commerce_events UNION ALL SELECT toString(event_id) AS event_id FROM probe_results")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(loaded.len(), 3000, "no duplicates");
    let loaded: BTreeSet<String> = loaded.into_iter().map(|r| r.event_id).collect();
    assert_eq!(loaded, sent);
    let probe_rows: u64 = client
        .query("SELECT count() FROM probe_results")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(probe_rows as usize, probes);
    let pending = redis.cli(&["XPENDING", &stream, "loader"]).unwrap();
    assert!(
        pending.starts_with('0'),
        "everything acknowledged, got {pending}"
    );

    // Hop 4: the reporter writes the day's report to S3, and its figures are the truth's.
    s3.create_bucket(&bucket).unwrap();
    let store = report_store(&s3.endpoint(), &bucket).await;
    let date = utc_date(base);
    let (report, keys) = reporter::run::run(&client, &store, date).await.unwrap();
    let key = format!("reports/{date}/marketplace/report.json");
    assert!(keys.contains(&key), "{keys:?}");
    assert_eq!(
        keys.last(),
        Some(&format!("reports/{date}/manifest.json")),
        "the manifest is written last"
    );
    let object = s3.get_object(&bucket, &key).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&object).unwrap();
    assert_eq!(json["schema_version"], reporter::report::SCHEMA_VERSION);
    assert_eq!(json["date"], date.to_string());

    let funnel = |kind: &str| {
        report
            .funnel
            .iter()
            .find(|f| f.r#type == kind)
            .map_or(0, |f| f.events)
    };
    assert_eq!(funnel("view"), truth.total.views);
    assert_eq!(funnel("cart"), truth.total.carts);
    assert_eq!(funnel("remove_from_cart"), truth.total.removals);
    assert_eq!(funnel("purchase"), truth.total.purchases);
    let revenue: Vec<(String, String)> = report
        .revenue
        .iter()
        .map(|r| (r.currency.clone(), r.revenue.clone()))
        .collect();
    let expected: Vec<(String, String)> = truth
        .total
        .revenue_nanos
        .iter()
        .map(|(c, n)| (c.clone(), decimal_text(*n)))
        .collect();
    assert_eq!(revenue, expected);
    for s in &report.stability {
        let t = &truth.probes_by_region[&s.row.region];
        assert_eq!(
            (s.row.probes, s.row.up),
            (t.probes, t.up),
            "region {}",
            s.row.region
        );
    }
    assert_eq!(report.stability.len(), 3, "all three regions probed");
    let totals = &report.commerce.totals;
    assert_eq!(
        (totals.views, totals.carts, totals.purchases),
        (truth.total.views, truth.total.carts, truth.total.purchases)
    );
    assert!(report.watermark as i64 >= base - 5);
    oracle(&report, &truth);
    gateway.shutdown().await.unwrap();
}

/// The oracle: every per-product, per-category, per-region and per-target figure the report
/// shows equals the simulator's ground truth of what the gateway acknowledged, quantiles
/// included (the truth computes them as `quantileExact` does, so they must be equal).
pub fn oracle(report: &reporter::report::MarketplaceReport, truth: &simulator::truth::Truth) {
    use simulator::truth::{Funnel, Quantiles};
    let nanos = |text: &str| -> i128 {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let frac = format!("{frac:0<9}");
        whole.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
    };
    let mut lines = 0;
    for ranking in &report.commerce.rankings {
        for line in &ranking.rows {
            let want: &Funnel = if ranking.name.contains("product") {
                &truth.by_product[&line.key.parse::<u64>().unwrap()]
            } else if ranking.name.contains("categor") {
                let id = line.key.parse::<u64>().unwrap();
                assert_eq!(
                    line.products,
                    Some(truth.products_by_category[&id].len() as u64),
                    "{} {}: assortment",
                    ranking.name,
                    line.key
                );
                &truth.by_category[&id]
            } else {
                &truth.by_brand[&line.key]
            };
            let what = format!("{} {}", ranking.name, line.key);
            assert_eq!(
                (line.views, line.carts, line.purchases, line.units),
                (want.views, want.carts, want.purchases, want.units),
                "{what}"
            );
            let revenue: std::collections::BTreeMap<String, i128> = line
                .revenue_by_currency
                .iter()
                .map(|(c, r)| (c.clone(), nanos(r)))
                .filter(|(_, n)| *n != 0)
                .collect();
            let expected: std::collections::BTreeMap<String, i128> = want
                .revenue_nanos
                .iter()
                .filter(|(_, n)| **n != 0)
                .map(|(c, n)| (c.clone(), *n))
                .collect();
            assert_eq!(revenue, expected, "{what}");
            lines += 1;
        }
    }
    assert!(
        lines >= 20,
        "rankings cover products, categories and brands, got {lines} lines"
    );
    let ranked = |name: &str| {
        report
            .commerce
            .rankings
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no ranking {name}"))
    };
    // categories without a code stay apart, each under its id: the default scenario has two
    let uncoded = ranked("top_categories_by_views")
        .rows
        .iter()
        .filter(|l| l.category_code.is_empty())
        .count();
    assert_eq!(uncoded, 2, "two categories without a code, not one merged");
    assert_eq!(
        ranked("top_brands_by_views").rows.len(),
        truth.by_brand.len().min(10),
        "every brand, the one without a name included"
    );

    let check =
        |row: &reporter::report::StabilityRow, probes: &simulator::truth::Probes, what: &str| {
            assert_eq!((row.probes, row.up), (probes.probes, probes.up), "{what}");
            let response = Quantiles::of(&probes.response_times_ms);
            let latency = Quantiles::of(&probes.network_latencies_ms);
            let ms = |q: Option<u32>| q.map(f64::from).unwrap();
            assert_eq!(
                (
                    row.response_p50_ms,
                    row.response_p95_ms,
                    row.response_p99_ms
                ),
                (ms(response.p50), ms(response.p95), ms(response.p99)),
                "{what} response time"
            );
            assert_eq!(
                (row.latency_p50_ms, row.latency_p95_ms, row.latency_p99_ms),
                (ms(latency.p50), ms(latency.p95), ms(latency.p99)),
                "{what} network latency"
            );
            assert_eq!(
                row.bandwidth_samples, probes.bandwidth_samples,
                "{what} bandwidth samples"
            );
            let want = probes.bandwidth_avg().unwrap_or(0.0);
            assert!(
                (row.bandwidth_avg_bps - want).abs() <= want * 1e-9,
                "{what} bandwidth: {} against {want}",
                row.bandwidth_avg_bps
            );
        };
    let uptime =
        |s: &reporter::report::Stability, want: simulator::truth::UptimeMinutes, what: &str| {
            let u = &s.uptime;
            assert_eq!(
                (
                    u.observed_minutes,
                    u.up_minutes,
                    u.downtime_minutes,
                    u.outages
                ),
                (want.observed, want.up, want.down, want.outages),
                "{what} uptime"
            );
            assert!(want.observed > 0, "{what}: minutes observed");
        };
    for s in &report.stability {
        let region = &s.row.region;
        check(&s.row, &truth.probes_by_region[region], region);
        uptime(s, truth.uptime(&format!("{region}/"), None), region);
    }
    assert_eq!(
        report.stability_by_target.len(),
        truth.probes_by_target.len()
    );
    for s in &report.stability_by_target {
        let key = format!("{}/{}", s.row.region, s.row.target);
        check(&s.row, &truth.probes_by_target[&key], &key);
        let want = truth.uptime(&format!("{}/", s.row.region), Some(&s.row.target));
        uptime(s, want, &key);
    }
    assert_eq!(report.stability_by_store.len(), truth.probes_by_store.len());
    for s in &report.stability_by_store {
        let key = format!("{}/{}", s.row.region, s.row.store_id);
        check(&s.row, &truth.probes_by_store[&key], &key);
        uptime(s, truth.uptime(&format!("{key}/"), None), &key);
    }

    // the matrix: every probe by vantage and store region
    assert_eq!(report.vantage_matrix.len(), truth.probes_by_vantage.len());
    for cell in &report.vantage_matrix {
        let r = &cell.row;
        let key = format!("{}/{}", r.vantage, r.region);
        let want = &truth.probes_by_vantage[&key];
        assert_eq!((r.probes, r.up), (want.probes, want.up), "{key}");
        let response = Quantiles::of(&want.response_times_ms);
        let latency = Quantiles::of(&want.network_latencies_ms);
        let ms = |q: Option<u32>| q.map(f64::from).unwrap();
        assert_eq!(
            (
                r.response_p50_ms,
                r.response_p95_ms,
                r.response_p99_ms,
                r.latency_p95_ms
            ),
            (
                ms(response.p50),
                ms(response.p95),
                ms(response.p99),
                ms(latency.p95)
            ),
            "{key}"
        );
    }

    plan_oracle(report, truth);
}

/// The rules that read stability across vantages and categories, recomputed from the truth
/// with the default thresholds the report was built with: the same subjects fire, citing
/// the same values.
fn plan_oracle(report: &reporter::report::MarketplaceReport, truth: &simulator::truth::Truth) {
    use simulator::truth::Quantiles;
    let c = reporter::plan::PlanConfig::default();
    let fired = |rule: &str| -> Vec<(String, Vec<f64>)> {
        report
            .plan
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| {
                (
                    r.subject.clone(),
                    r.evidence.iter().map(|e| e.value).collect(),
                )
            })
            .collect()
    };

    // a CDN / edge where a vantage sees another region's stores slowly, slowest first
    let mut vantages: Vec<(String, Vec<f64>, f64)> = Vec::new();
    for (key, probes) in &truth.probes_by_vantage {
        let (vantage, region) = key.split_once('/').unwrap();
        let p95 = f64::from(Quantiles::of(&probes.network_latencies_ms).p95.unwrap());
        if vantage == "self" || vantage == region || p95 <= c.vantage_latency_p95_ms {
            continue;
        }
        match vantages.iter_mut().find(|(v, ..)| v == vantage) {
            Some((_, values, worst)) => {
                values.push(p95);
                *worst = worst.max(p95);
            }
            None => vantages.push((vantage.to_owned(), vec![p95], p95)),
        }
    }
    vantages.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let want: Vec<(String, Vec<f64>)> = vantages.into_iter().map(|(v, e, _)| (v, e)).collect();
    assert!(
        !want.is_empty(),
        "the scenario's distances make some vantage slow"
    );
    assert_eq!(fired("vantage_latency"), want, "vantage_latency");

    // network capacity where the measured bandwidth is low
    let want: Vec<(String, Vec<f64>)> = truth
        .probes_by_region
        .iter()
        .filter_map(|(region, p)| {
            let avg = p.bandwidth_avg()?;
            (avg < c.min_bandwidth_bps).then(|| (region.clone(), vec![avg]))
        })
        .collect();
    assert_eq!(fired("network_capacity"), want, "network_capacity");

    // categories: conversion against the marketplace's, demand against assortment
    let total = &truth.total;
    let conversion = total.purchases as f64 / total.views as f64;
    let ratio = |f: &simulator::truth::Funnel| {
        if f.views == 0 {
            0.0
        } else {
            f.purchases as f64 / f.views as f64
        }
    };
    let name = |id: u64| {
        let line = report
            .commerce
            .rankings
            .iter()
            .flat_map(|r| &r.rows)
            .find(|l| l.category_id == Some(id) && l.seller_id.is_none() && l.brand.is_none())
            .expect("every category is ranked");
        format!("category {}", line.category_name())
    };
    let mut promote: Vec<(u64, f64)> = truth
        .by_category
        .iter()
        .filter(|(_, f)| {
            f.views >= c.min_category_views && ratio(f) >= conversion * c.promote_category_factor
        })
        .map(|(id, f)| (*id, ratio(f)))
        .collect();
    promote.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.to_string().cmp(&b.0.to_string()))
    });
    let want: Vec<String> = promote.iter().map(|(id, _)| name(*id)).collect();
    let got: Vec<String> = fired("promote_category")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(got, want, "promote_category");

    let products: u64 = truth
        .products_by_category
        .values()
        .map(|p| p.len() as u64)
        .sum();
    let categories = truth.products_by_category.len() as f64;
    let demand_bar = total.views as f64 / products as f64 * c.introduce_demand_factor;
    let assortment_bar = products as f64 / categories * c.introduce_assortment_factor;
    let mut introduce: Vec<(u64, f64)> = truth
        .by_category
        .iter()
        .filter_map(|(id, f)| {
            let n = truth.products_by_category[id].len() as u64;
            let demand = f.views as f64 / n as f64;
            (f.views >= c.min_category_views
                && demand >= demand_bar
                && ratio(f) >= conversion
                && n as f64 <= assortment_bar)
                .then_some((*id, demand))
        })
        .collect();
    introduce.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.to_string().cmp(&b.0.to_string()))
    });
    let want: Vec<String> = introduce.iter().map(|(id, _)| name(*id)).collect();
    let got: Vec<String> = fired("introduce_products")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(got, want, "introduce_products");
}
