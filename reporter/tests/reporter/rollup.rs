//! The per-day rollups (`reporter::rollup`) give exactly what the day's rows with `FINAL`
//! give, and stay exact when late events and copies arrive after a day was built.

use std::fmt::Debug;

use clickhouse::{Client, RowOwned, RowRead};
use reporter::{
    commerce::{Audience, ItemRevenueRow, ItemRow},
    fetch::{SellerAudienceRow, UnsoldRow},
    queries,
    report::{FunnelRow, RevenueRow},
    rollup::{self, Outcome},
    run::run_with,
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
/// types, with 5 % of them inserted a second time, as a retried insert would.
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
            "INSERT INTO commerce_events SELECT * FROM commerce_events \
             WHERE toDate(occurred_at) = toDate('{day}') AND cityHash64(toString(event_id)) % 20 = 0"
        ))
        .execute()
        .await
        .unwrap();
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

#[tokio::test]
async fn late_events_and_copies_after_a_build_change_the_report_as_the_truth_says() {
    let client = fixture::seeded().await;
    let (_bucket, store) = fixture::store().await;
    let before = run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap()
        .report;
    // the run built the day; nothing changed since
    assert_eq!(
        rollup::ensure(&client, DAY).await.unwrap(),
        Outcome::Current
    );

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
}
