//! The HTML report renders in a real browser (headless chromium) and escapes store text.

use std::process::Command;

use reporter::run::run_with;

use crate::fixture::{self, DAY};

#[tokio::test]
async fn html_report_renders_in_headless_chromium() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    run_with(&client, &store, DAY, &fixture::options())
        .await
        .unwrap();
    let html = testkit::shared_s3()
        .get_object(&bucket, &format!("reports/{DAY}/marketplace/report.html"))
        .unwrap();
    let text = String::from_utf8(html.clone()).unwrap();
    assert!(
        text.contains("&lt;b&gt;books&lt;/b&gt; &amp; co"),
        "category names are escaped"
    );
    assert!(!text.contains("<b>books"));
    assert!(text.contains("<svg"), "charts are inline svg");
    assert!(
        !text.contains("<script") && !text.contains("src=\"http") && !text.contains("href=\"http"),
        "self-contained: no scripts, no external resources"
    );

    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "skipping the browser check: chromium is not installed (scripts/install.sh installs it)"
        );
        return;
    };
    let out_dir = testkit::repo_root().join("test-output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let seller = testkit::shared_s3()
        .get_object(&bucket, &format!("reports/{DAY}/sellers/2/report.html"))
        .unwrap();
    for (name, body) in [("marketplace-report", &html), ("seller-report", &seller)] {
        let page = out_dir.join(format!("{name}.html"));
        let png = out_dir.join(format!("{name}.png"));
        std::fs::write(&page, body).unwrap();
        let _ = std::fs::remove_file(&png);
        let profile = tempfile::tempdir().unwrap();
        let status = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,2000")
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "chromium failed on {name}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let shot = std::fs::read(&png).unwrap();
        assert!(
            shot.len() > 1000 && shot.starts_with(b"\x89PNG"),
            "a non-empty png at {}",
            png.display()
        );
    }
}
