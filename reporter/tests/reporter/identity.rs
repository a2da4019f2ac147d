//! A retry that moved `occurred_at` to another day is two rows that `FINAL` cannot collapse;
//! the report counts it as a data-quality conflict on both days instead of hiding it.

use reporter::run::run_with;

use crate::fixture::{self, DAY, Probe, Sale};

#[tokio::test]
async fn retries_moved_to_another_day_are_reported_as_conflicts() {
    let day = DAY + time::Duration::days(30);
    let next = day + time::Duration::days(1);
    let view = |id: &str, store: &'static str, at: u32| Sale {
        id: id.to_owned(),
        store,
        at,
        kind: "view",
        product: 1,
        category: "c",
        seller: 1,
        currency: "EUR",
        price_nanos: 1_000_000_000,
        quantity: 0,
        user: 1,
        session: "s".into(),
    };
    let sales = [
        // a retry re-stamped across midnight: the same identity on two days
        view("moved", "s1", fixture::unix(day, 86_399)),
        view("moved", "s1", fixture::unix(next, 5)),
        // the same id on the next day from another store is another event, no conflict
        view("elsewhere", "s1", fixture::unix(day, 200)),
        view("elsewhere", "s2", fixture::unix(next, 200)),
        view("once", "s1", fixture::unix(day, 300)),
    ];
    let probe = |id: &str, at: u32| Probe {
        id: id.to_owned(),
        at,
        region: "europe",
        target: "checkout",
        up: true,
        response_ms: 100,
        latency_ms: 10,
        bandwidth: 0,
        load: 0.5,
    };
    let probes = [
        // a probe re-stamped across midnight too: a conflict of the probe table
        probe("probe-moved", fixture::unix(day, 86_398)),
        probe("probe-moved", fixture::unix(next, 7)),
        probe("probe-once", fixture::unix(next, 9)),
    ];
    let client = fixture::database().await;
    // every row twice: copies of one event collapse and are no conflict
    fixture::insert(&client, &probes, &sales).await;
    let (_bucket, store) = fixture::store().await;
    for (date, views) in [(day, 3), (next, 2)] {
        let report = run_with(&client, &store, date, &fixture::options())
            .await
            .unwrap()
            .report;
        assert_eq!(report.commerce.totals.views, views, "{date}");
        // one commerce identity and one probe identity on both days; "elsewhere" shares
        // only its id with the other day's row, which the identity check drops
        assert_eq!(report.data_quality.conflicting_ids, 2, "{date}");
    }
}
