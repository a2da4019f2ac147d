//! The largest lines the validation rules accept sum exactly: a day whose revenue is far past
//! what Int64 nanos (`Decimal(18, 9)`) hold reports to the last nano, on ClickHouse 18.16.

use pipeline::validate::{MAX_LINE_TOTAL_UNITS, MAX_PRICE_UNITS};
use reporter::run::run_with;

use crate::fixture::{self, DAY, Sale};

#[tokio::test]
async fn largest_lines_sum_exactly_in_reports() {
    let day = DAY + time::Duration::days(20);
    let quantity = u32::try_from(MAX_LINE_TOTAL_UNITS / MAX_PRICE_UNITS).unwrap();
    let lines = 2_000u32;
    let sale = |n: u32, currency: &'static str, price_nanos: i64, quantity: u32| Sale {
        id: format!("m-{n}"),
        store: "s1",
        at: fixture::unix(day, 7_200 + i64::from(n)),
        kind: "purchase",
        product: 1 + u64::from(n % 3),
        category: "machines",
        seller: 9,
        currency,
        price_nanos,
        quantity,
        user: u64::from(n),
        session: format!("s-{n}"),
    };
    let mut sales: Vec<Sale> = (0..lines)
        .map(|n| sale(n, "JPY", MAX_PRICE_UNITS * 1_000_000_000, quantity))
        .collect();
    sales.push(sale(lines, "EUR", 1_500_000_000, 1));
    let client = fixture::database().await;
    fixture::insert(&client, &[], &sales).await;
    let (_bucket, store) = fixture::store().await;
    let written = run_with(&client, &store, day, &fixture::options())
        .await
        .unwrap();
    let report = &written.report;

    // 2,000 lines of 1e12 JPY: 2e15 units, 2e24 nanos, far past Int64's 9.2e18
    let jpy = report.revenue.iter().find(|r| r.currency == "JPY").unwrap();
    let expected = i128::from(lines) * i128::from(MAX_LINE_TOTAL_UNITS);
    assert_eq!(jpy.revenue, format!("{expected}.000000000"));
    assert_eq!(jpy.purchases, u64::from(lines));
    // converted at the built-in 0.0061 EUR per JPY, plus 1.5 EUR, to the nano
    let eur = expected * 61 / 10_000 + 1;
    assert_eq!(report.commerce.totals.revenue, format!("{eur}.500000000"));
    assert_eq!(
        report.commerce.totals.units,
        u64::from(lines) * u64::from(quantity) + 1
    );
    // the seller report and the largest-seller choice read the same sums
    assert_eq!(written.seller_ids, [9]);
}
