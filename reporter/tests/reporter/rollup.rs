//! The per-day rollups (`reporter::rollup`) give exactly what the day's rows with `FINAL`
//! give, and stay exact when late events and copies arrive after a day was built.

use std::fmt::Debug;

use clickhouse::{Client, RowOwned, RowRead};
use reporter::{
    commerce::{Audience, ItemRevenueRow, ItemRow},
    fetch::{SellerAudienceRow, UnsoldRow},
    incidents::MinuteRow,
    queries,
    report::{FunnelRow, RevenueRow, StabilityRow, VantageRow},
    rollup::{self, Outcome},
    run::run_with,
    uptime::SeriesMinute,
};
use time::{Date, Duration};

use crate::fixture::{self, DAY, Sale};

/// The report's commerce queries as they were before the rollups, straight from the events
/// with `FINAL`: the reference each rollup query must equal. Params as the rollup query's.
mod from_events {
    pub const FUNNEL: &str = "\
SELECT toString(type) AS type, count() AS events, sum(toUInt64(quantity)) AS units
FROM commerce_events FINAL WHERE toDate(occurred_at) = toDate(?)
GROUP BY type ORDER BY type";
    pub const REVENUE: &str = "\
SELECT currency, toString(sum(toDecimal128(price, 9) * quantity)) AS revenue, count() AS purchases
FROM commerce_events FINAL WHERE toDate(occurred_at) = toDate(?) AND type = 'purchase'
GROUP BY currency ORDER BY currency";
    pub const ITEMS: &str = "\
SELECT seller_id, category_id, category_code, brand, product_id,
    countIf(type = 'view') AS views, countIf(type = 'cart') AS carts,
    countIf(type = 'purchase') AS purchases, toUInt64(sumIf(quantity, type = 'purchase')) AS units
FROM commerce_events FINAL WHERE toDate(occurred_at) = toDate(?)
GROUP BY seller_id, category_id, category_code, brand, product_id
ORDER BY seller_id, category_id, category_code, brand, product_id";
    pub const ITEM_REVENUE: &str = "\
SELECT seller_id, category_id, category_code, brand, product_id, currency,
    toString(sum(toDecimal128(price, 9) * quantity)) AS revenue, count() AS purchases
FROM commerce_events FINAL WHERE toDate(occurred_at) = toDate(?) AND type = 'purchase'
GROUP BY seller_id, category_id, category_code, brand, product_id, currency
ORDER BY seller_id, category_id, category_code, brand, product_id, currency";
    pub const AUDIENCE: &str = "\
SELECT uniqExact(user_id) AS users, uniqExact(session_id) AS sessions
FROM commerce_events WHERE toDate(occurred_at) = toDate(?)";
    pub const SELLER_AUDIENCE: &str = "\
SELECT seller_id, uniqExact(user_id) AS users, uniqExact(session_id) AS sessions
FROM commerce_events WHERE toDate(occurred_at) = toDate(?)
GROUP BY seller_id ORDER BY seller_id";
    pub const UNSOLD: &str = "\
SELECT seller_id, product_id, countIf(type = 'view') AS views
FROM commerce_events FINAL
WHERE toDate(occurred_at) >= toDate(?) AND toDate(occurred_at) <= toDate(?)
GROUP BY seller_id, product_id
HAVING countIf(type = 'purchase') = 0 AND countIf(type = 'view') > 0
ORDER BY seller_id, product_id";
    /// The stability queries, grouped by `group` and naming their groups as `keys` do.
    pub fn stability(keys: &str, group: &str) -> String {
        format!(
            "\
SELECT
{keys},
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.5)(response_time_ms)) AS response_p50_ms,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms,
    toFloat64(quantileExact(0.99)(response_time_ms)) AS response_p99_ms,
    toFloat64(quantileExact(0.5)(network_latency_ms)) AS latency_p50_ms,
    toFloat64(quantileExact(0.95)(network_latency_ms)) AS latency_p95_ms,
    toFloat64(quantileExact(0.99)(network_latency_ms)) AS latency_p99_ms,
    toFloat64(if(countIf(bandwidth_bytes_per_second > 0) = 0, 0,
        avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0))) AS bandwidth_avg_bps,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples,
    toFloat64(avg(cpu_load)) AS cpu_load_avg,
    toFloat64(max(cpu_load)) AS cpu_load_max
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
GROUP BY {group}
ORDER BY {group}"
        )
    }
    pub const VANTAGE_MATRIX: &str = "\
SELECT
    if(vantage_region = 'unspecified', 'self', toString(vantage_region)) AS vantage,
    toString(region) AS region,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.5)(response_time_ms)) AS response_p50_ms,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms,
    toFloat64(quantileExact(0.99)(response_time_ms)) AS response_p99_ms,
    toFloat64(quantileExact(0.5)(network_latency_ms)) AS latency_p50_ms,
    toFloat64(quantileExact(0.95)(network_latency_ms)) AS latency_p95_ms,
    toFloat64(quantileExact(0.95)(tls_handshake_ms)) AS tls_p95_ms,
    toFloat64(quantileExact(0.95)(time_to_first_byte_ms)) AS ttfb_p95_ms,
    toFloat64(if(countIf(bandwidth_bytes_per_second > 0) = 0, 0,
        avgIf(bandwidth_bytes_per_second, bandwidth_bytes_per_second > 0))) AS bandwidth_avg_bps,
    toUInt64(countIf(bandwidth_bytes_per_second > 0)) AS bandwidth_samples
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?)
GROUP BY vantage, region
ORDER BY vantage, region";
    pub const UPTIME_MINUTES: &str = "\
SELECT
    toString(region) AS region,
    store_id,
    target,
    toUInt32(toStartOfMinute(occurred_at)) AS minute,
    count() AS probes,
    toUInt64(sum(up)) AS up
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
GROUP BY region, store_id, target, minute
ORDER BY region, store_id, target, minute";
    pub const MINUTES: &str = "\
SELECT
    toString(region) AS region,
    toUInt32(toStartOfMinute(occurred_at)) AS minute,
    count() AS probes,
    toUInt64(sum(up)) AS up,
    toFloat64(quantileExact(0.95)(response_time_ms)) AS response_p95_ms
FROM probe_results FINAL
WHERE toDate(occurred_at) = toDate(?) AND (vantage_region = 'unspecified' OR toString(vantage_region) = toString(region))
GROUP BY region, minute
ORDER BY region, minute";
}

async fn rows<T: RowOwned + RowRead>(client: &Client, sql: &str, dates: &[Date]) -> Vec<T> {
    let mut q = client.query(sql);
    for d in dates {
        q = q.bind(d.to_string());
    }
    q.fetch_all().await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The rollup query and its reference give the same rows.
async fn same<T>(client: &Client, name: &str, rollup: &str, reference: &str, dates: &[Date])
where
    T: RowOwned + RowRead + PartialEq + Debug,
{
    let got: Vec<T> = rows(client, rollup, dates).await;
    let want: Vec<T> = rows(client, reference, dates).await;
    assert_eq!(got, want, "{name} on {dates:?}");
}

/// Every commerce query of the report, from the rollups, equals its `FINAL` reference on
/// `days` (the unsold window ends on the last).
async fn rollups_equal_final(client: &Client, days: &[Date]) {
    for &d in days {
        same::<FunnelRow>(client, "funnel", queries::FUNNEL, from_events::FUNNEL, &[d]).await;
        same::<RevenueRow>(
            client,
            "revenue",
            queries::REVENUE,
            from_events::REVENUE,
            &[d],
        )
        .await;
        same::<ItemRow>(client, "items", queries::ITEMS, from_events::ITEMS, &[d]).await;
        same::<ItemRevenueRow>(
            client,
            "item_revenue",
            queries::ITEM_REVENUE,
            from_events::ITEM_REVENUE,
            &[d],
        )
        .await;
        let audience: Vec<Audience> = rows(client, queries::AUDIENCE, &[d]).await;
        let reference: Vec<Audience> = rows(client, from_events::AUDIENCE, &[d]).await;
        // a day without events has no rollup row; the reference counts 0 and 0
        assert_eq!(
            audience.first().copied().unwrap_or_default(),
            reference[0],
            "audience on {d}"
        );
        same::<SellerAudienceRow>(
            client,
            "seller_audience",
            queries::SELLER_AUDIENCE,
            from_events::SELLER_AUDIENCE,
            &[d],
        )
        .await;
    }
    for &d in days {
        for (name, rollup, reference) in [
            (
                "stability",
                queries::STABILITY,
                from_events::stability(
                    "toString(region) AS region, '*' AS store_id, '*' AS target",
                    "region",
                ),
            ),
            (
                "stability_by_target",
                queries::STABILITY_BY_TARGET,
                from_events::stability(
                    "toString(region) AS region, '*' AS store_id, target",
                    "region, target",
                ),
            ),
            (
                "stability_by_store",
                queries::STABILITY_BY_STORE,
                from_events::stability(
                    "toString(region) AS region, store_id, '*' AS target",
                    "region, store_id",
                ),
            ),
        ] {
            // the average load is a sum of floats, added in another order: equal to rounding
            let got: Vec<StabilityRow> = rows(client, rollup, &[d]).await;
            let want: Vec<StabilityRow> = rows(client, &reference, &[d]).await;
            assert_eq!(got.len(), want.len(), "{name} on {d}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.cpu_load_avg - w.cpu_load_avg).abs() <= 1e-12 * w.cpu_load_avg.abs(),
                    "{name} on {d}: {g:?} {w:?}"
                );
                let exact = StabilityRow {
                    cpu_load_avg: w.cpu_load_avg,
                    ..g.clone()
                };
                assert_eq!(&exact, w, "{name} on {d}");
            }
        }
        same::<VantageRow>(
            client,
            "vantage_matrix",
            queries::VANTAGE_MATRIX,
            from_events::VANTAGE_MATRIX,
            &[d],
        )
        .await;
        same::<SeriesMinute>(
            client,
            "uptime_minutes",
            queries::UPTIME_MINUTES,
            from_events::UPTIME_MINUTES,
            &[d],
        )
        .await;
        same::<MinuteRow>(
            client,
            "minutes",
            queries::MINUTES,
            from_events::MINUTES,
            &[d],
        )
        .await;
    }
    let window = [days[0], days[days.len() - 1]];
    same::<UnsoldRow>(
        client,
        "unsold",
        queries::UNSOLD,
        from_events::UNSOLD,
        &window,
    )
    .await;
}

/// Random commerce on `day`: `n` events over 200 products, 20 sellers, 3 currencies and 4
/// types; `n / 4` probes of 5 stores from 4 vantages; 5 % of each inserted a second time, as
/// a retried insert would.
async fn random_day(client: &Client, day: Date, n: u64) {
    client
        .query(&format!(
            "INSERT INTO commerce_events \
             SELECT generateUUIDv4(), toDateTime('{day} 00:00:00', 'UTC') + (number % 86400), \
                    toDateTime('{day} 00:00:00', 'UTC') + (number % 86400) + 1, \
                    toInt8(1 + number % 3), concat('store-', toString(number % 7)), \
                    toInt8(1 + rand() % 4), p, p % 30, if(p % 7 = 0, '', concat('cat.', toString(p % 30))), \
                    concat('brand-', toString(p % 11)), p % 20, \
                    arrayElement(['EUR', 'USD', 'JPY'], 1 + rand() % 3), \
                    toDecimal64((1 + p % 997) / 8, 9), toUInt32(rand() % 4), \
                    rand64() % 5000, toString(rand64() % 20000) \
             FROM (SELECT number, rand64() % 200 AS p FROM numbers({n}))"
        ))
        .execute()
        .await
        .unwrap();
    client
        .query(&format!(
            "INSERT INTO probe_results (event_id, occurred_at, received_at, region, store_id, \
                    target, up, status_code, response_time_ms, network_latency_ms, \
                    bandwidth_bytes_per_second, cpu_load, vantage_region, tls_handshake_ms, \
                    time_to_first_byte_ms) \
             SELECT generateUUIDv4(), toDateTime('{day} 00:00:00', 'UTC') + (number % 86400), \
                    toDateTime('{day} 00:00:00', 'UTC') + (number % 86400) + 1, \
                    toInt8(1 + number % 3), concat('store-', toString(number % 5)), \
                    arrayElement(['home', 'search', 'checkout'], 1 + rand() % 3), \
                    toUInt8(rand() % 100 < 97), 200, rand() % 700, 5 + rand() % 150, \
                    if(number % 5 = 0, 0, 1000000 + rand() % 50000000), (rand() % 100) / 100, \
                    toInt8(rand() % 4), rand() % 40, 20 + rand() % 300 \
             FROM numbers({})",
            n / 4
        ))
        .execute()
        .await
        .unwrap();
    for table in ["probe_results", "commerce_events"] {
        client
            .query(&format!(
                "INSERT INTO {table} SELECT * FROM {table} \
                 WHERE toDate(occurred_at) = toDate('{day}') AND cityHash64(toString(event_id)) % 20 = 0"
            ))
            .execute()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rollups_equal_the_final_computation_on_random_days_with_copies() {
    let client = fixture::database().await;
    let days: Vec<Date> = (0..3).map(|i| DAY - Duration::days(2 - i)).collect();
    for (i, &d) in days.iter().enumerate() {
        random_day(&client, d, 20_000 + 5_000 * i as u64).await;
    }
    rollup::ensure_days(&client, days[0], days[2])
        .await
        .unwrap();
    rollups_equal_final(&client, &days).await;
    // a day of nothing: nothing built, and the queries agree on nothing
    let empty = DAY + Duration::days(1);
    assert_eq!(
        rollup::ensure(&client, empty).await.unwrap(),
        Outcome::Current
    );
    rollups_equal_final(&client, &[empty]).await;
}

fn view(id: &str, at: u32, product: u64, user: u64) -> Sale {
    Sale {
        id: id.to_owned(),
        store: "s1",
        at,
        kind: "view",
        product,
        category: "home.kettle",
        seller: 2,
        currency: "USD",
        price_nanos: 25_000_000_000,
        quantity: 0,
        user,
        session: format!("late-{user}"),
    }
}

/// Inserts `sales` once each, received at `received` (later than anything before).
async fn insert_late(client: &Client, sales: &[Sale], received: u32) {
    let mut insert = client
        .insert::<pipeline::rows::CommerceRow<'_>>("commerce_events")
        .await
        .unwrap();
    for s in sales {
        let row = fixture::commerce_row(s);
        insert
            .write(&pipeline::rows::CommerceRow {
                received_at: received,
                ..row
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
}

/// The seeded day reported once, which built its rollups: the client, the store and the
/// report; nothing changed since, so the day is current.
async fn reported() -> (
    Client,
    reporter::store::ReportStore,
    reporter::report::MarketplaceReport,
) {
    let client = fixture::seeded().await;
    let (_bucket, store) = fixture::store().await;
    let report = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    assert_eq!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Current
    );
    (client, store, report)
}

#[tokio::test]
async fn late_events_and_copies_after_a_build_change_the_report_as_the_truth_says() {
    let (client, store, before) = reported().await;

    // after the build: a copy of an event already counted (a redelivery), and two late
    // views of product 3 (one of them loaded twice), by a new user
    let sales = fixture::sales();
    let counted = sales
        .iter()
        .find(|s| s.at >= fixture::unix(DAY, 0))
        .unwrap();
    let received = fixture::unix(DAY, 86_400 * 2);
    let late = [
        view("late-1", fixture::unix(DAY, 80_000), 3, 1_000),
        view("late-2", fixture::unix(DAY, 80_001), 3, 1_000),
    ];
    insert_late(&client, std::slice::from_ref(counted), received).await;
    insert_late(&client, &late, received).await;
    insert_late(&client, &late[1..], received + 1).await;

    let after = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    let (b, a) = (&before.commerce.totals, &after.commerce.totals);
    assert_eq!(a.views, b.views + 2, "two late views, each once");
    assert_eq!(
        (a.carts, a.purchases, &a.revenue),
        (b.carts, b.purchases, &b.revenue),
        "the copy of a counted event changes nothing"
    );
    let events = |r: &reporter::report::MarketplaceReport| -> u64 {
        r.funnel.iter().map(|f| f.events).sum()
    };
    assert_eq!(events(&after), events(&before) + 2);
    assert_eq!(
        (a.users, a.sessions),
        (b.users + 1, b.sessions + 1),
        "the late events' user and session are new"
    );
    assert_eq!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Current
    );
    // and every figure is the FINAL computation's, on the day, the day before and the
    // unsold window
    let days: Vec<Date> = (0..7).map(|i| DAY - Duration::days(6 - i)).collect();
    rollups_equal_final(&client, &days).await;

    // the same state again builds nothing new; a forced rebuild gives the same figures
    rollup::build(&client, DAY).await.unwrap();
    let again = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    assert_eq!(again.commerce, after.commerce);

    // a third copy of a counted event, identical to the first to the received_at (so the
    // day's latest received_at does not move): the row count alone says the day changed,
    // and the rebuild counts the event once still. Merges stopped, so that none collapses a
    // copy meanwhile and gives the count back.
    client
        .query("SYSTEM STOP MERGES commerce_events")
        .execute()
        .await
        .unwrap();
    let mut insert = client
        .insert::<pipeline::rows::CommerceRow<'_>>("commerce_events")
        .await
        .unwrap();
    insert.write(&fixture::commerce_row(counted)).await.unwrap();
    insert.end().await.unwrap();
    assert!(matches!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Built(_)
    ));
    let copied = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    assert_eq!(copied.commerce, after.commerce);
    assert_eq!(copied.funnel, after.funnel);
}

/// A server that holds the record of a day's build but not every row of it (a replica that
/// fetched the record first; here the day's audience rows dropped) does not read the day as
/// built: it builds it again, and the report is the one the whole build gave. The replicated
/// case itself is e2e `reports_through_either_replica_equal_the_truth_after_a_replica_kill`.
#[tokio::test]
async fn a_build_whose_rows_this_server_lacks_is_built_again() {
    let (client, store, whole) = reported().await;
    let built = rollup::built_state(&client, DAY).await.unwrap();
    assert!(built.is_some());

    // the day's month of audience rows gone: the record stays, a part of its rows does not
    let month = format!("{}{:02}", DAY.year(), u8::from(DAY.month()));
    client
        .query(&format!(
            "ALTER TABLE audience_daily DROP PARTITION {month}"
        ))
        .execute()
        .await
        .unwrap();
    assert_eq!(rollup::built_state(&client, DAY).await.unwrap(), built);
    assert!(matches!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Built(_)
    ));
    let again = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    assert!(whole.commerce.totals.users > 0);
    assert_eq!(again.commerce, whole.commerce);
    assert_eq!(again.funnel, whole.funnel);
    assert_eq!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Current,
        "the new build is whole"
    );
}

/// One row of purchases per hour, region, store and category: how many, and their revenue.
#[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
struct CategoryHour {
    hour: u32,
    region: String,
    store_id: String,
    category_code: String,
    purchases: u64,
    revenue: String,
}

/// `category_hourly` (migration 9) as a panel reads it, and the same figures from the events
/// with `FINAL`.
const CATEGORY_HOURS: [&str; 2] = [
    "SELECT toUInt32(hour) AS hour, toString(region) AS region, store_id, category_code, \
     purchases, toString(revenue) AS revenue \
     FROM category_hourly FINAL ORDER BY hour, region, store_id, category_code",
    "SELECT toUInt32(toStartOfHour(occurred_at)) AS hour, toString(region) AS region, store_id, \
     category_code, count() AS purchases, \
     toString(sum(toDecimal128(price, 9) * quantity)) AS revenue \
     FROM commerce_events FINAL WHERE type = 'purchase' \
     GROUP BY hour, region, store_id, category_code ORDER BY hour, region, store_id, category_code",
];

/// The hourly builds write each hour's purchases per region, store and category once, copies
/// and all; an hour recorded by a build from before migration 9 (revision 0, which wrote no
/// `category_hourly` rows) is built again although its rows did not change, and then holds
/// them too; after that the hours are current.
#[tokio::test]
async fn hours_hold_each_purchase_once_per_category_and_older_builds_are_built_again() {
    let client = fixture::database().await;
    random_day(&client, DAY, 20_000).await;
    let midnight = DAY.midnight().assume_utc();
    let day = (midnight, midnight + Duration::DAY);
    assert_eq!(
        rollup::ensure_hours(&client, day.0, day.1).await.unwrap(),
        24
    );
    let [rollup_sql, events_sql] = CATEGORY_HOURS;
    let want: Vec<CategoryHour> = rows(&client, events_sql, &[]).await;
    assert!(want.len() > 24, "purchases in every hour: {}", want.len());
    let got: Vec<CategoryHour> = rows(&client, rollup_sql, &[]).await;
    assert_eq!(got, want);

    // as a build before migration 9 left hours 05:00 and 06:00: no category rows, a record
    // of revision 0 of the same base state
    let (from, to) = (midnight + Duration::hours(5), midnight + Duration::hours(7));
    let (from_s, to_s) = (from.unix_timestamp(), to.unix_timestamp());
    for sql in [
        format!(
            "INSERT INTO rollup_hour_builds (hour, base_rows, base_received, version, built_at, revision) \
             SELECT hour, base_rows, base_received, version + 1, built_at, 0 \
             FROM rollup_hour_builds FINAL \
             WHERE hour >= toDateTime({from_s}) AND hour < toDateTime({to_s})"
        ),
        "TRUNCATE TABLE category_hourly".to_owned(),
    ] {
        client.query(&sql).execute().await.unwrap();
    }
    let old: u64 = client
        .query("SELECT count() FROM rollup_hour_builds FINAL WHERE revision = 0")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old, 2);
    assert_eq!(
        rollup::ensure_hours(&client, day.0, day.1).await.unwrap(),
        2,
        "the two hours of revision 0 are built again, the others are current"
    );
    let got: Vec<CategoryHour> = rows(&client, rollup_sql, &[]).await;
    let within = |r: &&CategoryHour| (from_s..to_s).contains(&i64::from(r.hour));
    let want_two: Vec<&CategoryHour> = want.iter().filter(within).collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), want_two);
    assert_eq!(
        rollup::ensure_hours(&client, day.0, day.1).await.unwrap(),
        0
    );
}
