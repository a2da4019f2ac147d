//! Commerce measures of one scope (the marketplace or one seller): exact sums of the
//! per-item query rows into products, categories, brands and totals, rankings and
//! day-over-day changes.
//!
//! Categories are keyed by `category_id`; `category_code` is only their label. Stores send
//! many products without a code (the public e-commerce datasets leave it empty for about a
//! third), and keying by code would merge all of those into one category "".

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::money::{Overflow, Rates, add_nanos, nanos_f64, nanos_text, parse_nanos};

/// Funnel counts of one seller, category, brand and product (query `ITEMS`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct ItemRow {
    pub seller_id: u64,
    pub category_id: u64,
    pub category_code: String,
    pub brand: String,
    pub product_id: u64,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub units: u64,
}

/// Revenue of one seller, category, brand, product and currency (query `ITEM_REVENUE`).
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct ItemRevenueRow {
    pub seller_id: u64,
    pub category_id: u64,
    pub category_code: String,
    pub brand: String,
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

/// What a product is, as its events describe it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProductInfo {
    pub category_id: u64,
    pub category_code: String,
    pub brand: String,
    pub seller_id: u64,
}

/// A category's sales and label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CategorySales {
    /// The category's code: the greatest non-empty code its events carried (one id should
    /// have one code; if stores disagree, the choice is still the same on every run), or
    /// empty when none had one.
    pub code: String,
    /// Products of the category with any event on the day: its visible assortment.
    pub products: u64,
    pub sales: Sales,
}

/// One day of one scope, summed from the rows.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub total: Sales,
    pub audience: Audience,
    pub products: BTreeMap<u64, (ProductInfo, Sales)>,
    /// By category id.
    pub categories: BTreeMap<u64, CategorySales>,
    /// By brand; products without a brand under "".
    pub brands: BTreeMap<String, Sales>,
}

impl ProductInfo {
    fn of(seller_id: u64, category_id: u64, category_code: &str, brand: &str) -> ProductInfo {
        ProductInfo {
            category_id,
            category_code: category_code.to_owned(),
            brand: brand.to_owned(),
            seller_id,
        }
    }
}

impl CategorySales {
    fn label(&mut self, code: &str) {
        if code > self.code.as_str() {
            self.code = code.to_owned();
        }
    }
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
            let category = scope.categories.entry(item.category_id).or_default();
            category.label(&item.category_code);
            category.sales.add(item);
            scope
                .brands
                .entry(item.brand.clone())
                .or_default()
                .add(item);
            scope
                .products
                .entry(item.product_id)
                .or_insert_with(|| {
                    let info = ProductInfo::of(
                        item.seller_id,
                        item.category_id,
                        &item.category_code,
                        &item.brand,
                    );
                    (info, Sales::default())
                })
                .1
                .add(item);
        }
        // a product in two categories (stores disagreeing) counts in its first one only
        for (info, _) in scope.products.values() {
            if let Some(c) = scope.categories.get_mut(&info.category_id) {
                c.products += 1;
            }
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
            let category = scope.categories.entry(row.category_id).or_default();
            category.label(&row.category_code);
            credit(&mut category.sales)?;
            credit(scope.brands.entry(row.brand.clone()).or_default())?;
            credit(
                &mut scope
                    .products
                    .entry(row.product_id)
                    .or_insert_with(|| {
                        let info = ProductInfo::of(
                            row.seller_id,
                            row.category_id,
                            &row.category_code,
                            &row.brand,
                        );
                        (info, Sales::default())
                    })
                    .1,
            )?;
        }
        Ok(scope)
    }
}

/// A product, category or brand with every measure the report ranks by.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// Product id, category id or brand.
    pub key: String,
    /// The product's category, or the category itself; absent for brands.
    pub category_id: Option<u64>,
    /// The category's code, a label; may be empty.
    pub category_code: String,
    /// The product's brand; absent for categories and brands.
    pub brand: Option<String>,
    /// The product's seller; absent for categories and brands.
    pub seller_id: Option<u64>,
    /// Products of a category with any event on the day; absent for products and brands.
    pub products: Option<u64>,
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

/// What a line is, besides its sales.
#[derive(Clone, Debug, Default)]
pub struct LineOf {
    pub key: String,
    pub category_id: Option<u64>,
    pub category_code: String,
    pub brand: Option<String>,
    pub seller_id: Option<u64>,
    pub products: Option<u64>,
}

impl Line {
    pub fn new(of: LineOf, s: &Sales, rates: &Rates) -> Result<Line, Overflow> {
        let (revenue_nanos, _) = s.reporting_nanos(rates)?;
        Ok(Line {
            key: of.key,
            category_id: of.category_id,
            category_code: of.category_code,
            brand: of.brand,
            seller_id: of.seller_id,
            products: of.products,
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

    /// How a category line is named in text: its code and id, or its id alone when it has
    /// no code.
    pub fn category_name(&self) -> String {
        category_name(self.category_id.unwrap_or_default(), &self.category_code)
    }
}

/// `electronics.phone (id 12)`, or `id 12` for a category without a code.
pub fn category_name(id: u64, code: &str) -> String {
    if code.is_empty() {
        format!("id {id}")
    } else {
        format!("{code} (id {id})")
    }
}

/// Every product of a scope, by product id.
pub fn product_lines(scope: &Scope, rates: &Rates) -> Result<Vec<Line>, Overflow> {
    scope
        .products
        .iter()
        .map(|(id, (info, s))| {
            let of = LineOf {
                key: id.to_string(),
                category_id: Some(info.category_id),
                category_code: info.category_code.clone(),
                brand: Some(info.brand.clone()),
                seller_id: Some(info.seller_id),
                products: None,
            };
            Line::new(of, s, rates)
        })
        .collect()
}

/// Every category of a scope, by id.
pub fn category_lines(scope: &Scope, rates: &Rates) -> Result<Vec<Line>, Overflow> {
    scope
        .categories
        .iter()
        .map(|(id, c)| {
            let of = LineOf {
                key: id.to_string(),
                category_id: Some(*id),
                category_code: c.code.clone(),
                products: Some(c.products),
                ..LineOf::default()
            };
            Line::new(of, &c.sales, rates)
        })
        .collect()
}

/// Every brand of a scope, by name.
pub fn brand_lines(scope: &Scope, rates: &Rates) -> Result<Vec<Line>, Overflow> {
    scope
        .brands
        .iter()
        .map(|(brand, s)| {
            let of = LineOf {
                key: brand.clone(),
                ..LineOf::default()
            };
            Line::new(of, s, rates)
        })
        .collect()
}

/// The first `n` lines of a ranking, best first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranking {
    /// e.g. `top_products_by_revenue`; also the CSV file name.
    pub name: String,
    pub rows: Vec<Line>,
}

/// Top and bottom `n` products, categories and brands by revenue, views and view→purchase
/// conversion. Ties go to the smaller key, so rankings are the same on every run.
pub fn rankings(products: &[Line], categories: &[Line], brands: &[Line], n: usize) -> Vec<Ranking> {
    type Measure = fn(&Line) -> f64;
    let measures: [(&str, Measure); 3] = [
        ("revenue", |l| l.revenue_nanos as f64),
        ("views", |l| l.views as f64),
        ("conversion", |l| l.view_to_purchase),
    ];
    let mut out = Vec::new();
    for (entity, lines) in [
        ("products", products),
        ("categories", categories),
        ("brands", brands),
    ] {
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
    let empty = CategorySales::default();
    let mut ids: Vec<&u64> = today.categories.keys().collect();
    ids.extend(previous.iter().flat_map(|p| p.categories.keys()));
    ids.sort();
    ids.dedup();
    for id in ids {
        let now = today.categories.get(id).unwrap_or(&empty);
        // a category absent from a previous day that has data sold nothing: a true 0
        let before = previous.map(|p| p.categories.get(id).unwrap_or(&empty));
        let code = if now.code.is_empty() {
            before.map_or("", |b| b.code.as_str())
        } else {
            &now.code
        };
        let subject = format!("category:{}", category_name(*id, code));
        let (now, before) = (&now.sales, before.map(|b| &b.sales));
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

    /// Test categories are one letter; their id is the letter's code.
    fn category_id(code: &str) -> u64 {
        u64::from(code.as_bytes()[0])
    }

    fn item(seller: u64, category: &str, product: u64, views: u64, purchases: u64) -> ItemRow {
        ItemRow {
            seller_id: seller,
            category_id: category_id(category),
            category_code: category.to_owned(),
            brand: String::new(),
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
            category_id: category_id(category),
            category_code: category.to_owned(),
            brand: String::new(),
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
        assert_eq!(all.categories[&category_id("a")].sales.purchases, 3);
        assert_eq!(all.categories[&category_id("a")].products, 2);
        let rates = Rates::default();
        // 10.5 EUR + 100 USD × 0.92 + 1 nano EUR
        assert_eq!(Totals::of(&all, &rates).unwrap().revenue, "102.500000001");
        let seller2 = Scope::of(&day, Some(2)).unwrap();
        assert_eq!(seller2.total.views, 9);
        assert_eq!(seller2.products.len(), 2);
    }

    #[test]
    fn categories_without_a_code_stay_apart_by_id_and_brands_sum() {
        let row = |category_id: u64, code: &str, brand: &str, product: u64, views: u64| ItemRow {
            seller_id: 1,
            category_id,
            category_code: code.to_owned(),
            brand: brand.to_owned(),
            product_id: product,
            views,
            carts: 0,
            purchases: 0,
            units: 0,
        };
        let day = DayRows {
            items: vec![
                row(7, "", "acme", 1, 3),
                row(8, "", "acme", 2, 4),
                row(9, "kids.toys", "", 3, 5),
                // the same id with a code from another store: the code labels it
                row(8, "garden.tools", "", 4, 1),
            ],
            ..DayRows::default()
        };
        let scope = Scope::of(&day, None).unwrap();
        let lines = category_lines(&scope, &Rates::default()).unwrap();
        let got: Vec<(&str, &str, u64, Option<u64>)> = lines
            .iter()
            .map(|l| {
                (
                    l.key.as_str(),
                    l.category_code.as_str(),
                    l.views,
                    l.products,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("7", "", 3, Some(1)),
                ("8", "garden.tools", 5, Some(2)),
                ("9", "kids.toys", 5, Some(1))
            ]
        );
        assert_eq!(lines[0].category_name(), "id 7");
        assert_eq!(lines[1].category_name(), "garden.tools (id 8)");
        let brands = brand_lines(&scope, &Rates::default()).unwrap();
        let got: Vec<(&str, u64)> = brands.iter().map(|l| (l.key.as_str(), l.views)).collect();
        assert_eq!(got, [("", 6), ("acme", 7)]);
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
                let of = LineOf {
                    key: k.to_string(),
                    seller_id: Some(1),
                    ..LineOf::default()
                };
                Line::new(of, &s, &rates).unwrap()
            })
            .collect();
        let r = rankings(&lines, &[], &[], 2);
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
