//! `reporter serve`: at start and then once a day at a fixed UTC time, brings every day of
//! the look-back window up to date, until the shutdown future completes.
//!
//! Up to date means: a day with data has reports, and they were written after the latest
//! data they read arrived. So one pass ([`catch_up`]) writes the days missed while the
//! service was down, and rewrites a day whose data grew after its manifest's watermark: the
//! gateway accepts events up to 7 days late, and they would otherwise never reach a report.
//! A day that fails is retried with capped exponential backoff until it succeeds or the
//! service stops; the other days go first, so one bad day does not hold the rest.

use std::future::Future;

use clickhouse::Client;
use pipeline::retry::Backoff;
use time::{Date, Duration, OffsetDateTime, Time};

use crate::{
    error::Error,
    fetch,
    manifest::{Manifest, Superseded},
    objects::manifest_key,
    run::{RunOptions, run_superseding},
    store::ReportStore,
};

/// How far back a pass looks, and how it retries.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    /// Days before today that are checked on every pass (the gateway's 7-day acceptance
    /// window plus the day before it, by default).
    pub lookback_days: u32,
    /// Delays between attempts at a failed day.
    pub backoff: Backoff,
    /// Between passes, how often the rollups of the window's days are brought up to date.
    pub rollup_interval: std::time::Duration,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            lookback_days: 8,
            backoff: Backoff {
                base: std::time::Duration::from_secs(5),
                max: std::time::Duration::from_secs(600),
            },
            rollup_interval: std::time::Duration::from_secs(600),
        }
    }
}

/// Why a day is (re)written.
#[derive(Clone, Debug, PartialEq)]
pub enum Due {
    /// The day has data but no manifest: missed while the service was down, or failed.
    Missing,
    /// Data arrived since the manifest's run read it: late events (`Manifest::is_older_than`).
    Late(Superseded),
}

/// The first moment at `at` (UTC) strictly after `now`.
pub fn next_run(now: OffsetDateTime, at: Time) -> OffsetDateTime {
    let today = now.date().with_time(at).assume_utc();
    if today > now {
        today
    } else {
        today + Duration::days(1)
    }
}

/// The days of the window ending the day before `today` whose reports are missing or
/// older than their data, oldest first.
pub async fn due_days(
    client: &Client,
    store: &ReportStore,
    today: Date,
    options: &RunOptions,
    lookback_days: u32,
) -> Result<Vec<(Date, Due)>, Error> {
    let mut due = Vec::new();
    for back in (1..=i64::from(lookback_days.max(1))).rev() {
        let day = today - Duration::days(back);
        let now = fetch::data_state(client, day, options.build.plan.unsold_days).await?;
        let manifest = match store.get_if_exists(&manifest_key(&day.to_string())).await? {
            Some(bytes) => Some(
                serde_json::from_slice::<Manifest>(&bytes).map_err(|source| Error::Manifest {
                    date: day.to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        match manifest {
            None if now.rows > 0 => due.push((day, Due::Missing)),
            Some(m) if m.is_older_than(now) => due.push((day, Due::Late(m.superseded()))),
            _ => {}
        }
    }
    Ok(due)
}

/// One pass: every due day of the window before `today` is written, each failed day
/// retried with backoff, until all succeeded or `shutdown` completes (then `false`).
///
/// `clients` are the replicas of `CLICKHOUSE_URL`: a pass starts on the first, and each
/// attempt after a failure moves to the next, so a dead replica costs one backoff step,
/// not the day's reports.
pub async fn catch_up(
    clients: &[Client],
    store: &ReportStore,
    today: Date,
    options: &RunOptions,
    catch_up: CatchUp,
    shutdown: impl Future<Output = ()>,
) -> bool {
    tokio::pin!(shutdown);
    let mut attempt = 0u32;
    loop {
        let Some(client) = clients.get(attempt as usize % clients.len().max(1)) else {
            tracing::error!("{}", Error::NoClickHouse);
            return false;
        };
        let failed = match due_days(client, store, today, options, catch_up.lookback_days).await {
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "checking which days are due failed"
                );
                true
            }
            Ok(due) => {
                let mut failed = false;
                for (day, why) in due {
                    let supersedes = match why {
                        Due::Missing => None,
                        Due::Late(previous) => Some(previous),
                    };
                    let late = supersedes.is_some();
                    match run_superseding(client, store, day, options, supersedes).await {
                        Ok(w) => tracing::info!(
                            date = %day,
                            objects = w.keys.len(),
                            rewritten_for_late_data = late,
                            "report done"
                        ),
                        Err(e) => {
                            failed = true;
                            tracing::error!(date = %day, attempt, error = format!("{e:#}"), "report failed");
                        }
                    }
                }
                failed
            }
        };
        if !failed {
            return true;
        }
        metrics::counter!("reporter_retries_total").increment(1);
        let wait = catch_up.backoff.delay(attempt, jitter());
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = &mut shutdown => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A sample in 0..1 for the backoff's jitter: the clock's nanoseconds are random enough to
/// keep two reporters from retrying in step.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos) / 1e9
}

/// Catches up at start, then at `at` every day, until `shutdown` completes.
pub async fn serve(
    clients: &[Client],
    store: &ReportStore,
    at: Time,
    options: &RunOptions,
    catch_up_with: CatchUp,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let today = OffsetDateTime::now_utc().date();
        if !catch_up(clients, store, today, options, catch_up_with, &mut shutdown).await {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let next = next_run(now, at);
        tracing::info!(next = %next, "next report pass scheduled");
        // until then, the closed days' rollups are kept built, so that the pass's reports
        // read them rather than build them
        loop {
            let now = OffsetDateTime::now_utc();
            let Ok(left) = std::time::Duration::try_from(next - now) else {
                break;
            };
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(left.min(catch_up_with.rollup_interval)) => {}
            }
            if left > catch_up_with.rollup_interval {
                let today = OffsetDateTime::now_utc().date();
                build_rollups(clients, today, catch_up_with.lookback_days).await;
            }
        }
    }
}

/// Brings the rollups of the `lookback_days` before `today` up to date
/// ([`crate::rollup::ensure_days`]), and the hourly rollups of every closed hour since the
/// window's first day ([`crate::rollup::ensure_hours`]: the open hour stays out, the
/// dashboards read it from the events), on the first replica that answers; a failure is
/// logged and left to the next time (a report builds what it reads anyway, and a panel reads
/// an hour that is not built from the events).
pub async fn build_rollups(clients: &[Client], today: Date, lookback_days: u32) {
    let first = today - Duration::days(i64::from(lookback_days.max(1)));
    let last = today - Duration::days(1);
    let open_hour = OffsetDateTime::now_utc();
    for client in clients {
        let built = async {
            crate::rollup::ensure_days(client, first, last).await?;
            crate::rollup::ensure_hours(client, first.midnight().assume_utc(), open_hour).await
        };
        match built.await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "bringing the rollups up to date failed"),
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
