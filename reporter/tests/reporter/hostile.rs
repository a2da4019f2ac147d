//! Store-supplied text that a spreadsheet would run as a formula is neutralised in every
//! CSV and escaped in HTML; a day whose previous day is empty compares with "no data".

use reporter::run::run_with;

use crate::fixture::{self, DAY, Probe, Sale};

const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"<img src=x>\")";

/// A day ten days after the fixture's, with nothing on the day before it.
fn lonely_day() -> time::Date {
    DAY + time::Duration::days(10)
}

#[tokio::test]
async fn formula_text_is_neutralised_in_csv_and_an_empty_previous_day_is_no_data() {
    let day = lonely_day();
    let client = fixture::database().await;
    let sale = |n: u32, kind: &'static str, category: &'static str| Sale {
        id: format!("h-{n}"),
        store: "s1",
        at: fixture::unix(day, 3_600 + i64::from(n)),
        kind,
        product: u64::from(n),
        category,
        seller: 1,
        currency: "EUR",
        price_nanos: 1_000_000_000,
        quantity: 1,
        user: 1,
        session: "s".into(),
    };
    let sales = [
        sale(1, "purchase", FORMULA),
        sale(2, "view", "-2+3+cmd|' /C calc'!A0"),
        sale(3, "view", "@SUM(A1:A9)"),
    ];
    let probe = Probe {
        id: "h-probe".into(),
        at: fixture::unix(day, 3_600),
        region: "europe",
        target: "+cmd",
        up: true,
        response_ms: 100,
        latency_ms: 10,
        bandwidth: 1,
        load: 0.1,
    };
    fixture::insert(&client, &[probe], &sales).await;
    let (bucket, store) = fixture::store().await;
    run_with(&client, &store, day, &fixture::options())
        .await
        .unwrap();
    let s3 = testkit::shared_s3();
    let object = |name: &str| {
        String::from_utf8(
            s3.get_object(&bucket, &format!("reports/{day}/marketplace/{name}"))
                .unwrap(),
        )
        .unwrap()
    };

    // every CSV cell that starts like a formula carries the leading quote
    let csv_objects: Vec<String> = fixture::keys(&bucket)
        .into_iter()
        .filter(|k| k.ends_with(".csv"))
        .collect();
    assert!(!csv_objects.is_empty());
    for key in &csv_objects {
        let body = s3.get_object(&bucket, key).unwrap();
        for record in csv::Reader::from_reader(&body[..]).records() {
            for cell in record.unwrap().iter() {
                let risky = cell.starts_with(['=', '+', '@', '\t', '\r'])
                    || (cell.starts_with('-') && cell.parse::<f64>().is_err());
                assert!(!risky, "{key}: cell {cell:?} would run as a formula");
            }
        }
    }
    let categories = object("top_categories_by_views.csv");
    assert!(categories.contains("'@SUM(A1:A9)"), "{categories}");
    assert!(categories.contains("'-2+3+cmd"), "{categories}");
    assert!(object("stability_by_target.csv").contains("'+cmd"));

    // HTML shows the text as text, escaped, with no quote added
    let html = object("report.html");
    assert!(html.contains("<td>=HYPERLINK(\"http://evil.example\",\"&lt;img src=x&gt;\")</td>"));
    assert!(!html.contains("<img src=x>"), "html escapes store text");

    // the previous day is empty: every comparison says so, in JSON, CSV and HTML
    let json: serde_json::Value = serde_json::from_str(&object("report.json")).unwrap();
    let changes = json["commerce"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for change in changes
        .iter()
        .chain(json["region_changes"].as_array().unwrap())
    {
        assert_eq!(change["comparison"], "no data", "{change}");
        assert!(change["previous"].is_null() && change["delta"].is_null());
    }
    let csv = object("changes.csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(&record[3], "no data", "{record:?}");
        assert_eq!(&record[4], "no data");
    }
    assert!(html.contains("<td>no data</td>"));
}
