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
    let fleet = simulator::fleet::fleet(2, "e2e-secret");
    let gateway = start_gateway(
        &redis.url(),
        &stream,
        &simulator::fleet::stores_file(&fleet),
        &[],
    )
    .await;

    // Hop 1: the simulator publishes; the gateway acknowledges.
    let base = event_time_base();
    let settings = simulator::Settings::try_parse_from([
        "simulator",
        "run",
        "--gateway",
        &gateway.url(),
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
            } else {
                &truth.by_category[&line.key]
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
        "rankings cover products and categories, got {lines} lines"
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
        };
    for s in &report.stability {
        check(
            &s.row,
            &truth.probes_by_region[&s.row.region],
            &s.row.region,
        );
    }
    assert_eq!(
        report.stability_by_target.len(),
        truth.probes_by_target.len()
    );
    for s in &report.stability_by_target {
        let key = format!("{}/{}", s.row.region, s.row.target);
        check(&s.row, &truth.probes_by_target[&key], &key);
    }
}
