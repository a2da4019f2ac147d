//! The analytics side of issue #19's cost: how long a day's report and the dashboards' panels
//! take as a day grows. Not part of the test command (`#[ignore]`); `scripts/bench-analytics`
//! runs it and docs/BENCHMARKS.md records its figures.
//!
//! For each size in `BENCH_ANALYTICS_SIZES` (events per day, default 1M, 10M and 30M) it
//! fills one day of a fresh database on a private ClickHouse 18.16 synthetically, inside
//! ClickHouse (`INSERT … SELECT … FROM numbers(n)`: 90 % commerce events, 10 % probes,
//! then 1 % of the rows again with the same identity, as a retried insert would, so that
//! `FINAL` has work to do), then times:
//! - the build of the day's rollups (`reporter::rollup::build`) and of its conflict figure
//!   (`reporter::rollup::ensure_conflicts`), which the report would otherwise start with;
//! - the build of the day's 24 hourly rollups (`reporter::rollup::ensure_hours`), which
//!   `reporter serve` keeps built and the dashboards read;
//! - the day's report, `reporter::run::run`, to S3 (SeaweedFS), as the daily job runs it,
//!   from the rollups just built (it checks that they are current);
//! - every ClickHouse panel of the dashboards over the last 30 days, All selected, as
//!   Grafana opens them (hourly buckets, so the panels read the hourly rollups of the day);
//!   each panel, the slowest, the median and the sum; and the time series that read the
//!   daily rollup only with whole-day buckets, again with those.
//!
//! The figures go to stdout as one JSON line per size (`analytics: {…}`).

use std::time::Instant;

use crate::dashboards::{Range, Variables, expand, expanded_queries};
use crate::helpers::*;

/// The synthetic day: 2026-11-02, a fixed date, so that runs compare.
const DAY: &str = "2026-11-02";

fn fill_sql(events: u64) -> [String; 3] {
    let commerce = events * 9 / 10;
    let probes = events - commerce;
    // 30 stores, 10 per region; a store's currency is its region's; 20,000 products in 300
    // categories (every 10th without a code), 500 brands, 1,000 sellers; 80 % views, 10 %
    // carts, 3 % removals, 7 % purchases.
    let commerce_sql = format!(
        "INSERT INTO commerce_events \
         SELECT generateUUIDv4(), toDateTime('{DAY} 00:00:00', 'UTC') + (number % 86400), \
                toDateTime('{DAY} 00:00:00', 'UTC') + (number % 86400) + 1, \
                toInt8(1 + number % 3), concat('store-', toString(number % 30)), \
                toInt8(multiIf(r < 80, 1, r < 90, 2, r < 93, 3, 4)), \
                p, p % 300, if(p % 300 % 10 = 0, '', concat('cat.', toString(p % 300))), \
                concat('brand-', toString(p % 500)), p % 1000, \
                arrayElement(['EUR', 'USD', 'JPY'], 1 + number % 3), \
                toDecimal64((1 + p % 997) / 4, 9), toUInt32(1 + number % 3), \
                rand64() % 1000000, toString(rand64() % 100000000) \
         FROM (SELECT number, rand() % 100 AS r, rand64() % 20000 AS p FROM numbers({commerce}))"
    );
    let probe_sql = format!(
        "INSERT INTO probe_results (event_id, occurred_at, received_at, region, store_id, target, \
                up, status_code, response_time_ms, network_latency_ms, bandwidth_bytes_per_second, \
                cpu_load, vantage_region, tls_handshake_ms, time_to_first_byte_ms) \
         SELECT generateUUIDv4(), toDateTime('{DAY} 00:00:00', 'UTC') + (number % 86400), \
                toDateTime('{DAY} 00:00:00', 'UTC') + (number % 86400) + 1, \
                toInt8(1 + number % 3), concat('store-', toString(number % 30)), \
                arrayElement(['home', 'search', 'checkout'], 1 + number % 3), \
                toUInt8(rand() % 100 < 99), 200, 50 + rand() % 400, 5 + rand() % 150, \
                if(number % 5 = 0, 0, 1000000 + rand() % 50000000), (rand() % 100) / 100, \
                toInt8(number % 4), 5 + rand() % 40, 20 + rand() % 300 \
         FROM numbers({probes})"
    );
    // the retried 1 %: the same rows again (same identity, same received_at)
    let duplicates = "INSERT INTO commerce_events SELECT * FROM commerce_events \
                      WHERE cityHash64(toString(event_id)) % 100 = 0"
        .to_owned();
    [commerce_sql, probe_sql, duplicates]
}

/// How long `sql` takes to answer, all its rows read (`what` names it if it fails).
async fn seconds(client: &clickhouse::Client, sql: &str, what: &str) -> f64 {
    let started = Instant::now();
    client
        .query(&format!("SELECT count() FROM ({sql})"))
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-analytics runs it"]
async fn analytics_growth() {
    let sizes: Vec<u64> = std::env::var("BENCH_ANALYTICS_SIZES")
        .unwrap_or_else(|_| "1000000,10000000,30000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_ANALYTICS_SIZES: event counts")
        })
        .collect();
    let s3 = testkit::shared_s3();
    let bucket = testkit::unique_bucket();
    s3.create_bucket(&bucket).unwrap();
    let store = report_store(&s3.endpoint(), &bucket).await;
    let date =
        time::Date::parse(DAY, &time::format_description::well_known::Iso8601::DATE).unwrap();
    let day_start = date.midnight().assume_utc().unix_timestamp();
    let range = Range {
        from: day_start + 86_400 - 30 * 86_400,
        to: day_start + 86_400,
        interval_s: 3600,
    };

    for events in sizes {
        let (db, client) = fresh_database("analytics").await;
        pipeline::schema::migrate(&client, &db).await.unwrap();
        let started = Instant::now();
        for sql in fill_sql(events) {
            client
                .query(&sql)
                .with_setting("max_execution_time", "0")
                .execute()
                .await
                .unwrap();
        }
        let fill_s = started.elapsed().as_secs_f64();
        let rows: u64 = client
            .query("SELECT (SELECT count() FROM commerce_events) + (SELECT count() FROM probe_results)")
            .fetch_one()
            .await
            .unwrap();

        // the rollups of the day first (the report would build them itself), timed apart; the
        // build's time includes the conflict figure's, given apart too
        let started = Instant::now();
        reporter::rollup::build(&client, date).await.unwrap();
        let conflicts_started = Instant::now();
        reporter::rollup::ensure_conflicts(&client, date)
            .await
            .unwrap();
        let conflicts_s = conflicts_started.elapsed().as_secs_f64();
        let build_s = started.elapsed().as_secs_f64();
        // the day's hours for the dashboards, as `reporter serve` builds them, timed apart
        let started = Instant::now();
        let midnight = date.midnight().assume_utc();
        let hours =
            reporter::rollup::ensure_hours(&client, midnight, midnight + time::Duration::DAY)
                .await
                .unwrap();
        assert_eq!(hours, 24, "every hour of the day built");
        let hourly_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let (report, keys) = reporter::run::run(&client, &store, date).await.unwrap();
        let report_s = started.elapsed().as_secs_f64();
        assert!(!keys.is_empty());
        // the report counts each event once, duplicates and all
        let counted: u64 = report.funnel.iter().map(|f| f.events).sum();
        assert_eq!(
            counted,
            events * 9 / 10,
            "the report's funnel counts every event once"
        );

        let mut panels = Vec::new();
        for q in expanded_queries(range, &Variables::all()) {
            panels.push((seconds(&client, &q.text, &q.name).await, q.name));
        }
        let timed = |seconds: f64, panel: &str| serde_json::json!({"seconds": (seconds * 1000.0).round() / 1000.0, "panel": panel});
        // the panels that read the rollups, as they were when they read the events alone, in
        // the same run
        let mut events_only = Vec::new();
        for (name, sql) in crate::events_only_panels::EVENTS_ONLY {
            let sql = expand(sql, range, &Variables::all()).unwrap();
            let what = format!("{name}, events only");
            events_only.push(timed(seconds(&client, &sql, &what).await, name));
        }
        // the time series that read the daily rollup only with whole-day buckets, timed with
        // those too (at 1-hour buckets they read the events)
        let whole_days = Range {
            interval_s: 86_400,
            ..range
        };
        let mut daily_buckets = Vec::new();
        for q in expanded_queries(whole_days, &Variables::all())
            .into_iter()
            .filter(|q| q.text.contains("86400 % 86400 = 0"))
        {
            let what = format!("{}, 1-day buckets", q.name);
            daily_buckets.push(timed(seconds(&client, &q.text, &what).await, &q.name));
        }
        panels.sort_by(|a, b| a.0.total_cmp(&b.0));
        let slowest = panels.last().cloned().unwrap_or_default();
        let median = panels.get(panels.len() / 2).map_or(0.0, |p| p.0);
        let total: f64 = panels.iter().map(|p| p.0).sum();
        let result = serde_json::json!({
            "events": events,
            "rows_with_duplicates": rows,
            "fill_seconds": (fill_s * 100.0).round() / 100.0,
            "rollup_build_seconds": (build_s * 100.0).round() / 100.0,
            "conflicts_build_seconds": (conflicts_s * 100.0).round() / 100.0,
            "hourly_build_seconds": (hourly_s * 100.0).round() / 100.0,
            "report_seconds": (report_s * 100.0).round() / 100.0,
            "report_commerce_events": counted,
            "panels": panels.len(),
            "panel_slowest_seconds": (slowest.0 * 1000.0).round() / 1000.0,
            "panel_slowest": slowest.1,
            "panel_median_seconds": (median * 1000.0).round() / 1000.0,
            "panels_total_seconds": (total * 100.0).round() / 100.0,
            "slowest_five": panels.iter().rev().take(5)
                .map(|(s, n)| serde_json::json!({"seconds": (s * 1000.0).round() / 1000.0, "panel": n}))
                .collect::<Vec<_>>(),
            "events_only_panels": events_only,
            "daily_bucket_panels": daily_buckets,
            "every_panel": panels.iter().rev()
                .map(|(s, n)| serde_json::json!({"seconds": (s * 1000.0).round() / 1000.0, "panel": n}))
                .collect::<Vec<_>>(),
        });
        println!("analytics: {result}");
        client
            .query(&format!("DROP DATABASE {db}"))
            .execute()
            .await
            .unwrap();
    }
}
