//! `reporter serve`: once a day at a fixed UTC time, report the previous day, until the
//! shutdown future completes.

use std::future::Future;

use clickhouse::Client;
use time::{Duration, OffsetDateTime, Time};

use crate::{
    run::{RunOptions, run_with},
    store::ReportStore,
};

/// The first moment at `at` (UTC) strictly after `now`.
pub fn next_run(now: OffsetDateTime, at: Time) -> OffsetDateTime {
    let today = now.date().with_time(at).assume_utc();
    if today > now {
        today
    } else {
        today + Duration::days(1)
    }
}

/// Reports the previous day at `at` every day until `shutdown` completes. A failed run is
/// logged and retried the next day, so one bad day does not stop the service.
pub async fn serve(
    client: &Client,
    store: &ReportStore,
    at: Time,
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let now = OffsetDateTime::now_utc();
        let next = next_run(now, at);
        let wait = (next - now).try_into().unwrap_or_default();
        tracing::info!(next = %next, "next report run scheduled");
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let day = next.date() - Duration::days(1);
        match run_with(client, store, day, options).await {
            Ok(w) => tracing::info!(date = %day, objects = w.keys.len(), "daily report done"),
            Err(e) => tracing::error!(date = %day, error = format!("{e:#}"), "daily report failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, time};

    #[test]
    fn next_run_is_today_or_tomorrow_at_the_hour() {
        let at = time!(02:30);
        assert_eq!(
            next_run(datetime!(2026-01-15 01:00 UTC), at),
            datetime!(2026-01-15 02:30 UTC)
        );
        assert_eq!(
            next_run(datetime!(2026-01-15 02:30 UTC), at),
            datetime!(2026-01-16 02:30 UTC)
        );
        assert_eq!(
            next_run(datetime!(2026-12-31 23:59 UTC), at),
            datetime!(2027-01-01 02:30 UTC)
        );
    }
}
