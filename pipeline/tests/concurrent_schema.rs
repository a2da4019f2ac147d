//! The consumer and the reporter both apply the migrations at start, and in a deployment
//! they start together: two runs on one fresh database at once must both succeed and leave
//! the schema a single run leaves (real ClickHouse 18.16 from testkit).

use pipeline::schema;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_a_fresh_database_at_once_both_succeed_and_agree() {
    let server = testkit::shared_clickhouse();
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let tables = |database: String| {
        let client = client.clone();
        async move {
            client
                .query("SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name")
                .bind(database)
                .fetch_all::<(String, String)>()
                .await
                .unwrap()
        }
    };
    let alone = testkit::unique_name("migrate_alone");
    schema::migrate(&client, &alone).await.unwrap();
    let want = tables(alone).await;
    let last = schema::MIGRATIONS.last().unwrap().version;
    for round in 0..3 {
        let database = testkit::unique_name("migrate_twice");
        let (a, b) = tokio::join!(
            schema::migrate(&client, &database),
            schema::migrate(&client, &database)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        // every version applied by one run or the other, none left for a third
        let mut applied: Vec<u32> = a.into_iter().chain(b).collect();
        applied.sort_unstable();
        applied.dedup();
        assert_eq!(applied, (1..=last).collect::<Vec<_>>(), "round {round}");
        assert_eq!(tables(database.clone()).await, want, "round {round}");
        assert!(
            schema::migrate(&client, &database)
                .await
                .unwrap()
                .is_empty(),
            "round {round}"
        );
    }
}
