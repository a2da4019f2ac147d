//! A retry that moved `occurred_at` to another day is two rows that `FINAL` cannot collapse;
//! the report of the later day counts it as a data-quality conflict instead of hiding it, and
//! the dashboards sum the same per-day figures (`conflicts_daily`).

use reporter::{
    rollup::{self, Outcome},
    run::run_with,
};

use crate::fixture::{self, DAY, Probe, view};

/// A probe of a European store's checkout that found it up, at `at`.
fn probe(id: &str, at: u32) -> Probe {
    Probe {
        id: id.to_owned(),
        at,
        region: "europe",
        target: "checkout",
        up: true,
        response_ms: 100,
        latency_ms: 10,
        bandwidth: 0,
        load: 0.5,
    }
}

#[tokio::test]
async fn retries_moved_to_another_day_are_reported_as_conflicts() {
    let day = DAY + time::Duration::days(30);
    let next = day + time::Duration::days(1);
    let sales = [
        // a retry re-stamped across midnight: the same identity on two days
        view("moved", "s1", fixture::unix(day, 86_399)),
        view("moved", "s1", fixture::unix(next, 5)),
        // the same id on the next day from another store is another event, no conflict
        view("elsewhere", "s1", fixture::unix(day, 200)),
        view("elsewhere", "s2", fixture::unix(next, 200)),
        view("once", "s1", fixture::unix(day, 300)),
    ];
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
    // the later day counts the commerce and the probe identity seen the day before; the
    // earlier day has no copy before it. "elsewhere" shares only its id with the day before,
    // which the identity check drops
    for (date, views, conflicts) in [(day, 3, 0), (next, 2, 2)] {
        let report = run_with(&client, &store, date, &fixture::options())
            .await
            .unwrap()
            .report;
        assert_eq!(report.commerce.totals.views, views, "{date}");
        assert_eq!(report.data_quality.conflicting_ids, conflicts, "{date}");
    }
}

/// The dashboards' conflict figures (`conflicts_daily`): each day counts its identities that
/// also have a row on one of the 7 days before it, so an identity on k days counts k - 1
/// times in all; an earlier row in the previous month counts in `across_months` too. A row
/// arriving later on an earlier day of a day's window makes its next check rebuild it.
#[tokio::test]
async fn conflict_figures_count_each_later_copy_once_and_follow_late_rows() {
    // the first of a month, so that the day before is in the previous month
    let first = time::macros::date!(2026 - 03 - 01);
    let day = |n: i64| first + time::Duration::days(n);
    let sales = [
        // on three days: counted on the second and the third
        view("thrice", "s1", fixture::unix(day(0), 10)),
        view("thrice", "s1", fixture::unix(day(1), 10)),
        view("thrice", "s1", fixture::unix(day(2), 10)),
        // the same id from another store is another event
        view("thrice", "s2", fixture::unix(day(-3), 10)),
        // the previous month's last day, then the first: across months
        view("midnight", "s1", fixture::unix(day(-1), 86_399)),
        view("midnight", "s1", fixture::unix(day(0), 1)),
        // 8 days apart: outside the window
        view("far", "s1", fixture::unix(day(-6), 50)),
        view("far", "s1", fixture::unix(day(2), 50)),
        view("once", "s1", fixture::unix(day(2), 60)),
    ];
    let probes = [
        probe("probe-moved", fixture::unix(day(0), 20)),
        probe("probe-moved", fixture::unix(day(1), 20)),
    ];
    let client = fixture::database().await;
    // every row twice: copies of one row are no conflict
    fixture::insert(&client, &probes, &sales).await;

    let figures = |client: clickhouse::Client| async move {
        client
            .query(
                "SELECT toString(day), conflicts, across_months FROM conflicts_daily FINAL \
                 ORDER BY day",
            )
            .fetch_all::<(String, u64, u64)>()
            .await
            .unwrap()
    };
    for n in -6..=2 {
        let built = rollup::ensure_conflicts(&client, day(n)).await.unwrap();
        assert!(matches!(built, Outcome::Built(_)), "{n}: {built:?}");
    }
    let want = |late: u64| {
        vec![
            ("2026-02-23".to_owned(), 0, 0),
            ("2026-02-24".to_owned(), 0, 0),
            ("2026-02-25".to_owned(), 0, 0),
            ("2026-02-26".to_owned(), 0, 0),
            ("2026-02-27".to_owned(), 0, 0),
            ("2026-02-28".to_owned(), 0, 0),
            ("2026-03-01".to_owned(), 1, 1),
            ("2026-03-02".to_owned(), 2, 0),
            ("2026-03-03".to_owned(), 1 + late, 0),
        ]
    };
    assert_eq!(figures(client.clone()).await, want(0));
    // nothing changed: no rebuild
    assert_eq!(
        rollup::ensure_conflicts(&client, day(2)).await.unwrap(),
        Outcome::Current
    );

    // "once" of day 2 arrives late on day 1 too: day 2's window changed, and it is rebuilt
    fixture::insert(
        &client,
        &[],
        &[view("once", "s1", fixture::unix(day(1), 60))],
    )
    .await;
    assert!(matches!(
        rollup::ensure_conflicts(&client, day(2)).await.unwrap(),
        Outcome::Built(_)
    ));
    assert_eq!(figures(client.clone()).await, want(1));

    // the report of a day brings its figure up to date itself
    fixture::insert(
        &client,
        &[],
        &[view("late", "s1", fixture::unix(day(0), 70))],
    )
    .await;
    fixture::insert(
        &client,
        &[],
        &[view("late", "s1", fixture::unix(day(1), 70))],
    )
    .await;
    let (_bucket, store) = fixture::store().await;
    run_with(&client, &store, day(1), &fixture::options())
        .await
        .unwrap();
    let mut want = want(1);
    want[7].1 += 1;
    assert_eq!(figures(client.clone()).await, want);
}
