//! Commerce measures of one scope (the marketplace or one seller): exact sums of the
//! per-item query rows into products, categories and totals, rankings and day-over-day
//! changes.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::money::{Overflow, Rates, add_nanos, nanos_f64, nanos_text, parse_nanos};

/// Funnel counts of one seller, category and product (query `ITEMS`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct ItemRow {
    pub seller_id: u64,
    pub category_code: String,
    pub product_id: u64,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub units: u64,
}

/// Revenue of one seller, category, product and currency (query `ITEM_REVENUE`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct ItemRevenueRow {
    pub seller_id: u64,
    pub category_code: String,
    pub product_id: u64,
    pub currency: String,
    /// Exact decimal text.
    pub revenue: String,
    pub purchases: u64,
}

/// Distinct users and sessions (queries `AUDIENCE`, `SELLER_AUDIENCE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct Audience {
    pub users: u64,
    pub sessions: u64,
}

/// One day of commerce rows, as queried.
#[derive(Clone, Debug, Default)]
pub struct DayRows {
    pub items: Vec<ItemRow>,
    pub revenue: Vec<ItemRevenueRow>,
    pub audience: Audience,
    pub seller_audience: BTreeMap<u64, Audience>,
}

/// Counts and revenue of anything: a product, a category, a scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sales {
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub units: u64,
    /// Nano units per currency.
    pub revenue: BTreeMap<String, i128>,
}

impl Sales {
    fn add(&mut self, item: &ItemRow) {
        self.views += item.views;
        self.carts += item.carts;
        self.purchases += item.purchases;
        self.units += item.units;
    }

    /// Revenue in the reporting currency (nanos) and the currencies the table cannot convert.
    pub fn reporting_nanos(&self, rates: &Rates) -> Result<(i128, Vec<String>), Overflow> {
        let mut total = 0;
        let mut unconverted = Vec::new();
        for (currency, nanos) in &self.revenue {
            match rates.convert(currency, *nanos)? {
                Some(n) => total = add_nanos(total, n, "revenue in the reporting currency")?,
                None => unconverted.push(currency.clone()),
            }
        }
        Ok((total, unconverted))
    }
}

/// `to / from`, 0 when nothing entered the step.
pub fn ratio(from: u64, to: u64) -> f64 {
    if from == 0 {
        0.0
    } else {
        to as f64 / from as f64
    }
}

/// One day of one scope, summed from the rows.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub total: Sales,
    pub audience: Audience,
    /// product id → (category, seller, sales)
    pub products: BTreeMap<u64, (String, u64, Sales)>,
    pub categories: BTreeMap<String, Sales>,
}

impl Scope {
    /// Whether the scope has no commerce data at all on its day.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Sums the rows of `seller` (every seller if `None`).
    pub fn of(day: &DayRows, seller: Option<u64>) -> Result<Scope, String> {
        let mine = |s: u64| seller.is_none_or(|id| id == s);
        let mut scope = Scope {
            audience: match seller {
                None => day.audience,
                Some(id) => day.seller_audience.get(&id).copied().unwrap_or_default(),
            },
            ..Scope::default()
        };
        for item in day.items.iter().filter(|i| mine(i.seller_id)) {
            scope.total.add(item);
            scope
                .categories
                .entry(item.category_code.clone())
                .or_default()
                .add(item);
            scope
                .products
                .entry(item.product_id)
                .or_insert_with(|| (item.category_code.clone(), item.seller_id, Sales::default()))
                .2
                .add(item);
        }
        for row in day.revenue.iter().filter(|r| mine(r.seller_id)) {
            let nanos = parse_nanos(&row.revenue)
                .ok_or_else(|| format!("revenue {:?} is not a decimal", row.revenue))?;
            let credit = |sales: &mut Sales| -> Result<(), String> {
                let sum = sales.revenue.entry(row.currency.clone()).or_default();
                *sum = add_nanos(*sum, nanos, &format!("{} revenue", row.currency))
                    .map_err(|e| e.to_string())?;
                Ok(())
            };
            credit(&mut scope.total)?;
            credit(
                scope
                    .categories
                    .entry(row.category_code.clone())
                    .or_default(),
            )?;
            credit(
                &mut scope
                    .products
                    .entry(row.product_id)
                    .or_insert_with(|| (row.category_code.clone(), row.seller_id, Sales::default()))
                    .2,
            )?;
        }
        Ok(scope)
    }
}

/// A product or category with every measure the report ranks by.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// Product id or category code.
    pub key: String,
    pub category_code: String,
    /// The product's seller; absent for categories.
    pub seller_id: Option<u64>,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub units: u64,
    /// Revenue in the reporting currency, exact decimal text.
    pub revenue: String,
    /// Revenue per currency, exact decimal text.
    pub revenue_by_currency: BTreeMap<String, String>,
    pub view_to_cart: f64,
    pub cart_to_purchase: f64,
    pub view_to_purchase: f64,
    #[serde(skip)]
    pub revenue_nanos: i128,
}

impl Line {
    pub fn new(
        key: String,
        category: &str,
        seller: Option<u64>,
        s: &Sales,
        rates: &Rates,
    ) -> Result<Line, Overflow> {
        let (revenue_nanos, _) = s.reporting_nanos(rates)?;
        Ok(Line {
            key,
            category_code: category.to_owned(),
            seller_id: seller,
            views: s.views,
            carts: s.carts,
            purchases: s.purchases,
            units: s.units,
            revenue: nanos_text(revenue_nanos),
            revenue_by_currency: s
                .revenue
                .iter()
                .map(|(c, n)| (c.clone(), nanos_text(*n)))
                .collect(),
            view_to_cart: ratio(s.views, s.carts),
            cart_to_purchase: ratio(s.carts, s.purchases),
            view_to_purchase: ratio(s.views, s.purchases),
            revenue_nanos,
        })
    }

    /// Revenue in whole units of the reporting currency, for ratios and charts.
    pub fn revenue_units(&self) -> f64 {
        nanos_f64(self.revenue_nanos)
    }
}

/// Every product of a scope, by product id.
pub fn product_lines(scope: &Scope, rates: &Rates) -> Result<Vec<Line>, Overflow> {
    scope
        .products
        .iter()
        .map(|(id, (category, seller, s))| {
            Line::new(id.to_string(), category, Some(*seller), s, rates)
        })
        .collect()
}

/// Every category of a scope, by code.
pub fn category_lines(scope: &Scope, rates: &Rates) -> Result<Vec<Line>, Overflow> {
    scope
        .categories
        .iter()
        .map(|(code, s)| Line::new(code.clone(), code, None, s, rates))
        .collect()
}

/// The first `n` lines of a ranking, best first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranking {
    /// e.g. `top_products_by_revenue`; also the CSV file name.
    pub name: String,
    pub rows: Vec<Line>,
}

/// Top and bottom `n` products and categories by revenue, views and view→purchase
/// conversion. Ties go to the smaller key, so rankings are the same on every run.
pub fn rankings(products: &[Line], categories: &[Line], n: usize) -> Vec<Ranking> {
    type Measure = fn(&Line) -> f64;
    let measures: [(&str, Measure); 3] = [
        ("revenue", |l| l.revenue_nanos as f64),
        ("views", |l| l.views as f64),
        ("conversion", |l| l.view_to_purchase),
    ];
    let mut out = Vec::new();
    for (entity, lines) in [("products", products), ("categories", categories)] {
        for (measure, value) in measures {
            let mut sorted: Vec<&Line> = lines.iter().collect();
            sorted.sort_by(|a, b| value(b).total_cmp(&value(a)).then(a.key.cmp(&b.key)));
            let top = sorted.iter().take(n).map(|l| (*l).clone()).collect();
            sorted.reverse();
            sorted.sort_by(|a, b| value(a).total_cmp(&value(b)).then(a.key.cmp(&b.key)));
            let bottom = sorted.iter().take(n).map(|l| (*l).clone()).collect();
            out.push(Ranking {
                name: format!("top_{entity}_by_{measure}"),
                rows: top,
            });
            out.push(Ranking {
                name: format!("bottom_{entity}_by_{measure}"),
                rows: bottom,
            });
        }
    }
    out
}

/// The totals of a scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Totals {
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub units: u64,
    pub users: u64,
    pub sessions: u64,
    /// Revenue in the reporting currency, exact decimal text.
    pub revenue: String,
    pub view_to_cart: f64,
    pub cart_to_purchase: f64,
    pub view_to_purchase: f64,
    /// Currencies the rates table lacks, left out of `revenue`.
    pub unconverted_currencies: Vec<String>,
}

impl Totals {
    pub fn of(scope: &Scope, rates: &Rates) -> Result<Totals, Overflow> {
        let s = &scope.total;
        let (nanos, unconverted_currencies) = s.reporting_nanos(rates)?;
        Ok(Totals {
            views: s.views,
            carts: s.carts,
            purchases: s.purchases,
            units: s.units,
            users: scope.audience.users,
            sessions: scope.audience.sessions,
            revenue: nanos_text(nanos),
            view_to_cart: ratio(s.views, s.carts),
            cart_to_purchase: ratio(s.carts, s.purchases),
            view_to_purchase: ratio(s.views, s.purchases),
            unconverted_currencies,
        })
    }
}

/// Whether a measure could be compared with the previous day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Comparison {
    /// The previous day has data; `previous` and `delta` are set.
    #[serde(rename = "compared")]
    Compared,
    /// The previous day has no data at all for the subject, so there is nothing to compare
    /// with: a difference from zero would read as growth that never happened.
    #[serde(rename = "no data")]
    NoData,
}

/// One measure today against the previous day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// `total`, `category:<code>` or `region:<name>`.
    pub subject: String,
    pub measure: String,
    pub current: f64,
    /// `None` when the previous day has no data ([`Comparison::NoData`]).
    pub previous: Option<f64>,
    /// `None` when the previous day has no data.
    pub delta: Option<f64>,
    /// `None` when the previous day has no data or its value is 0.
    pub delta_pct: Option<f64>,
    pub comparison: Comparison,
}

impl Change {
    /// `previous` is `None` when the previous day has no data for the subject.
    pub fn new(subject: &str, measure: &str, current: f64, previous: Option<f64>) -> Change {
        Change {
            subject: subject.to_owned(),
            measure: measure.to_owned(),
            current,
            previous,
            delta: previous.map(|p| current - p),
            delta_pct: previous
                .filter(|p| *p != 0.0)
                .map(|p| (current - p) * 100.0 / p),
            comparison: if previous.is_some() {
                Comparison::Compared
            } else {
                Comparison::NoData
            },
        }
    }
}

/// Totals and categories of `today` against `previous`; `previous` is `None` when the
/// previous day has no commerce data at all.
pub fn changes(
    today: &Scope,
    previous: Option<&Scope>,
    rates: &Rates,
) -> Result<Vec<Change>, Overflow> {
    let t = Totals::of(today, rates)?;
    let p = previous.map(|p| Totals::of(p, rates)).transpose()?;
    let revenue = |text: &str| parse_nanos(text).map_or(0.0, nanos_f64);
    let before = |f: fn(&Totals) -> f64| p.as_ref().map(f);
    let mut out = vec![
        Change::new("total", "views", t.views as f64, before(|p| p.views as f64)),
        Change::new("total", "carts", t.carts as f64, before(|p| p.carts as f64)),
        Change::new(
            "total",
            "purchases",
            t.purchases as f64,
            before(|p| p.purchases as f64),
        ),
        Change::new("total", "units", t.units as f64, before(|p| p.units as f64)),
        Change::new(
            "total",
            "revenue",
            revenue(&t.revenue),
            p.as_ref().map(|p| revenue(&p.revenue)),
        ),
        Change::new("total", "users", t.users as f64, before(|p| p.users as f64)),
        Change::new(
            "total",
            "sessions",
            t.sessions as f64,
            before(|p| p.sessions as f64),
        ),
        Change::new(
            "total",
            "view_to_purchase",
            t.view_to_purchase,
            before(|p| p.view_to_purchase),
        ),
    ];
    let empty = Sales::default();
    let mut codes: Vec<&String> = today.categories.keys().collect();
    codes.extend(previous.iter().flat_map(|p| p.categories.keys()));
    codes.sort();
    codes.dedup();
    for code in codes {
        let now = today.categories.get(code).unwrap_or(&empty);
        // a category absent from a previous day that has data sold nothing: a true 0
        let before = previous.map(|p| p.categories.get(code).unwrap_or(&empty));
        let subject = format!("category:{code}");
        out.push(Change::new(
            &subject,
            "revenue",
            nanos_f64(now.reporting_nanos(rates)?.0),
            before
                .map(|b| b.reporting_nanos(rates).map(|r| nanos_f64(r.0)))
                .transpose()?,
        ));
        out.push(Change::new(
            &subject,
            "views",
            now.views as f64,
            before.map(|b| b.views as f64),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seller: u64, category: &str, product: u64, views: u64, purchases: u64) -> ItemRow {
        ItemRow {
            seller_id: seller,
            category_code: category.to_owned(),
            product_id: product,
            views,
            carts: purchases,
            purchases,
            units: purchases,
        }
    }

    fn revenue(
        seller: u64,
        category: &str,
        product: u64,
        currency: &str,
        text: &str,
    ) -> ItemRevenueRow {
        ItemRevenueRow {
            seller_id: seller,
            category_code: category.to_owned(),
            product_id: product,
            currency: currency.to_owned(),
            revenue: text.to_owned(),
            purchases: 1,
        }
    }

    #[test]
    fn scopes_sum_exactly_and_filter_by_seller() {
        let day = DayRows {
            items: vec![
                item(1, "a", 10, 10, 2),
                item(2, "a", 20, 5, 1),
                item(2, "b", 30, 4, 0),
            ],
            revenue: vec![
                revenue(1, "a", 10, "EUR", "10.5"),
                revenue(1, "a", 10, "USD", "100.000000000"),
                revenue(2, "a", 20, "EUR", "0.000000001"),
            ],
            ..DayRows::default()
        };
        let all = Scope::of(&day, None).unwrap();
        assert_eq!(all.total.views, 19);
        assert_eq!(all.total.revenue["EUR"], 10_500_000_001);
        assert_eq!(all.categories["a"].purchases, 3);
        let rates = Rates::default();
        // 10.5 EUR + 100 USD × 0.92 + 1 nano EUR
        assert_eq!(Totals::of(&all, &rates).unwrap().revenue, "102.500000001");
        let seller2 = Scope::of(&day, Some(2)).unwrap();
        assert_eq!(seller2.total.views, 9);
        assert_eq!(seller2.products.len(), 2);
    }

    #[test]
    fn rankings_break_ties_by_key() {
        let rates = Rates::default();
        let lines: Vec<Line> = [("1", 5), ("2", 9), ("3", 5)]
            .iter()
            .map(|(k, v)| {
                let s = Sales {
                    views: *v,
                    ..Sales::default()
                };
                Line::new(k.to_string(), "c", Some(1), &s, &rates).unwrap()
            })
            .collect();
        let r = rankings(&lines, &[], 2);
        let keys = |name: &str| -> Vec<String> {
            r.iter()
                .find(|r| r.name == name)
                .unwrap()
                .rows
                .iter()
                .map(|l| l.key.clone())
                .collect()
        };
        assert_eq!(keys("top_products_by_views"), ["2", "1"]);
        assert_eq!(keys("bottom_products_by_views"), ["1", "3"]);
    }

    #[test]
    fn changes_report_deltas_and_skip_percent_from_zero() {
        let c = Change::new("total", "views", 150.0, Some(100.0));
        assert_eq!((c.delta, c.delta_pct), (Some(50.0), Some(50.0)));
        assert_eq!(c.comparison, Comparison::Compared);
        let from_zero = Change::new("total", "views", 5.0, Some(0.0));
        assert_eq!((from_zero.delta, from_zero.delta_pct), (Some(5.0), None));
    }

    #[test]
    fn an_empty_previous_day_is_no_data_not_zero() {
        let c = Change::new("total", "views", 524.0, None);
        assert_eq!((c.previous, c.delta, c.delta_pct), (None, None, None));
        assert_eq!(c.comparison, Comparison::NoData);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["comparison"], "no data");
        assert!(json["previous"].is_null() && json["delta"].is_null());
        let today = Scope::default();
        assert!(
            changes(&today, None, &Rates::default())
                .unwrap()
                .iter()
                .all(|c| c.comparison == Comparison::NoData)
        );
    }
}
