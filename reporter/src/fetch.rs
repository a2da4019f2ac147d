//! Runs the queries a day's reports need and collects their rows. With `rollup`, the only
//! module that talks to ClickHouse.

use clickhouse::{Client, Row, RowOwned, RowRead};
use serde::Deserialize;
use time::{Date, Duration};

use crate::{
    commerce::{Audience, DayRows},
    incidents::MinuteRow,
    queries,
    report::{FunnelRow, RevenueRow, StabilityRow, VantageRow},
    uptime::SeriesMinute,
};

/// A query that failed, by its name in `queries::ALL`.
#[derive(Debug, thiserror::Error)]
#[error("query {query} for {date}: {source}")]
pub struct QueryError {
    pub query: &'static str,
    pub date: String,
    pub source: clickhouse::error::Error,
}

#[derive(Clone, Debug, PartialEq, Row, Deserialize)]
pub struct SellerAudienceRow {
    pub seller_id: u64,
    pub users: u64,
    pub sessions: u64,
}

#[derive(Clone, Debug, PartialEq, Row, Deserialize)]
pub struct UnsoldRow {
    pub seller_id: u64,
    pub product_id: u64,
    pub views: u64,
}

/// Every row the reports of one day are built from.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub date: Date,
    pub previous_date: Date,
    /// First day of the unsold window; the window ends on `date`.
    pub unsold_from: Date,
    pub funnel: Vec<FunnelRow>,
    pub revenue: Vec<RevenueRow>,
    pub stability: Vec<StabilityRow>,
    pub previous_stability: Vec<StabilityRow>,
    pub stability_by_target: Vec<StabilityRow>,
    pub stability_by_store: Vec<StabilityRow>,
    pub vantage_matrix: Vec<VantageRow>,
    pub uptime_minutes: Vec<SeriesMinute>,
    pub minutes: Vec<MinuteRow>,
    pub today: DayRows,
    pub previous: DayRows,
    pub unsold: Vec<UnsoldRow>,
    /// The state of the data read, taken before anything else was.
    pub data: DataState,
    /// Identities of the day also seen on another day (query `CONFLICTS`).
    pub conflicts: u64,
}

/// Runs one query with every `?` bound to the dates given, in order.
async fn rows<T>(
    client: &Client,
    name: &'static str,
    sql: &str,
    dates: &[Date],
) -> Result<Vec<T>, QueryError>
where
    T: RowOwned + RowRead,
{
    let mut query = client.query(sql);
    for d in dates {
        query = query.bind(d.to_string());
    }
    query.fetch_all().await.map_err(|source| QueryError {
        query: name,
        date: dates.first().map(Date::to_string).unwrap_or_default(),
        source,
    })
}

async fn day_rows(client: &Client, date: Date) -> Result<DayRows, QueryError> {
    let audience: Vec<Audience> = rows(client, "audience", queries::AUDIENCE, &[date]).await?;
    let sellers: Vec<SellerAudienceRow> =
        rows(client, "seller_audience", queries::SELLER_AUDIENCE, &[date]).await?;
    Ok(DayRows {
        items: rows(client, "items", queries::ITEMS, &[date]).await?,
        revenue: rows(client, "item_revenue", queries::ITEM_REVENUE, &[date]).await?,
        audience: audience.into_iter().next().unwrap_or_default(),
        seller_audience: sellers
            .into_iter()
            .map(|s| {
                (
                    s.seller_id,
                    Audience {
                        users: s.users,
                        sessions: s.sessions,
                    },
                )
            })
            .collect(),
    })
}

/// The first day of the unsold window that ends on `date`.
fn unsold_from(date: Date, unsold_days: u32) -> Date {
    date - Duration::days(i64::from(unsold_days.max(1)) - 1)
}

/// The state of the data a day's reports read (the day, the day before, the unsold window,
/// and the 7 days before the day that its conflict figure in `conflicts_daily` reads), as
/// [`queries::WATERMARK`] reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DataState {
    /// The latest `received_at` in it (Unix seconds), 0 when there is none.
    pub watermark: u32,
    /// Its rows in both event tables, copies included.
    pub rows: u64,
}

/// The state of the data `date`'s reports read now.
pub async fn data_state(
    client: &Client,
    date: Date,
    unsold_days: u32,
) -> Result<DataState, QueryError> {
    let first = unsold_from(date, unsold_days).min(date - Duration::days(7));
    let state: Vec<DataState> = rows(
        client,
        "watermark",
        queries::WATERMARK,
        &[first, date, first, date],
    )
    .await?;
    Ok(state.into_iter().next().unwrap_or_default())
}

/// Queries `date`, the day before it, and the `unsold_days` ending on `date`, after bringing
/// their rollups up to date ([`crate::rollup::ensure_days`]) and the day's conflict figure
/// ([`crate::rollup::ensure_conflicts`]).
///
/// The state of the data comes first: every row it counts is in what the rollups then read,
/// and a row that arrives while they are built or read makes a later state differ, so
/// `serve` writes the day again (`schedule::due_days`). Taken after the builds, it counted
/// rows they had missed, and a day whose last late row came then was never rewritten.
pub async fn fetch(client: &Client, date: Date, unsold_days: u32) -> Result<Fetched, QueryError> {
    let previous_date = date - Duration::days(1);
    let unsold_from = unsold_from(date, unsold_days);
    let data = data_state(client, date, unsold_days).await?;
    crate::rollup::ensure_days(client, unsold_from.min(previous_date), date).await?;
    crate::rollup::ensure_conflicts(client, date).await?;
    // the two days are independent; ClickHouse runs them on separate cores
    let (today, previous) =
        tokio::try_join!(day_rows(client, date), day_rows(client, previous_date))?;
    Ok(Fetched {
        date,
        previous_date,
        unsold_from,
        funnel: rows(client, "funnel", queries::FUNNEL, &[date]).await?,
        revenue: rows(client, "revenue", queries::REVENUE, &[date]).await?,
        stability: rows(client, "stability", queries::STABILITY, &[date]).await?,
        previous_stability: rows(client, "stability", queries::STABILITY, &[previous_date]).await?,
        stability_by_target: rows(
            client,
            "stability_by_target",
            queries::STABILITY_BY_TARGET,
            &[date],
        )
        .await?,
        stability_by_store: rows(
            client,
            "stability_by_store",
            queries::STABILITY_BY_STORE,
            &[date],
        )
        .await?,
        vantage_matrix: rows(client, "vantage_matrix", queries::VANTAGE_MATRIX, &[date]).await?,
        uptime_minutes: rows(client, "uptime_minutes", queries::UPTIME_MINUTES, &[date]).await?,
        minutes: rows(client, "minutes", queries::MINUTES, &[date]).await?,
        today,
        previous,
        unsold: rows(client, "unsold", queries::UNSOLD, &[unsold_from, date]).await?,
        data,
        conflicts: rows(client, "conflicts", queries::CONFLICTS, &[date])
            .await?
            .into_iter()
            .next()
            .unwrap_or(0),
    })
}
