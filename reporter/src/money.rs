//! Exact money: decimal text from ClickHouse as nano units, and conversion into the
//! reporting currency with a configured rates table.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

/// Nano units per unit: prices are `Decimal(18, 9)`.
const NANOS: i128 = 1_000_000_000;
/// Rates are kept in millionths so that conversion stays integer arithmetic and a rerun
/// gives identical bytes.
const MICROS: i128 = 1_000_000;

/// A sum or conversion past what `i128` nanos hold (~1.7e29 units): the documented limit
/// of the reports, far beyond what the validation rules let a day reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("money overflow: {0} is past the exact range of i128 nanos (about 1.7e29 units)")]
pub struct Overflow(pub String);

/// Adds nanos exactly, or names what overflowed.
pub fn add_nanos(a: i128, b: i128, what: &str) -> Result<i128, Overflow> {
    a.checked_add(b).ok_or_else(|| Overflow(what.to_owned()))
}

/// Why a rates file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    #[error("reading rates file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing rates file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("rate of {currency} must be a positive number, got {rate}")]
    NotPositive { currency: String, rate: f64 },
}

/// How much one unit of each currency is worth in the reporting currency.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    reporting: String,
    /// Millionths of the reporting currency per unit.
    micros: BTreeMap<String, i128>,
}

/// The rates file (`REPORTER_RATES_FILE`):
/// `reporting_currency = "EUR"` and a `[rates]` table such as `USD = 0.92`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    reporting_currency: String,
    rates: BTreeMap<String, f64>,
}

impl Default for Rates {
    /// A small built-in table in EUR, good enough for a demo; deployments configure theirs.
    fn default() -> Self {
        Rates::from_table(
            "EUR",
            [("USD", 0.92), ("SGD", 0.69), ("GBP", 1.17), ("JPY", 0.0061)]
                .into_iter()
                .map(|(c, r)| (c.to_owned(), r))
                .collect(),
        )
        .expect("built-in rates are positive")
    }
}

impl Rates {
    /// Builds a table; the reporting currency is always worth 1.
    pub fn from_table(reporting: &str, rates: BTreeMap<String, f64>) -> Result<Rates, RatesError> {
        let mut micros = BTreeMap::new();
        for (currency, rate) in rates {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(RatesError::NotPositive { currency, rate });
            }
            micros.insert(currency, (rate * MICROS as f64).round() as i128);
        }
        micros.insert(reporting.to_owned(), MICROS);
        Ok(Rates {
            reporting: reporting.to_owned(),
            micros,
        })
    }

    /// Reads a rates file.
    pub fn load(path: &Path) -> Result<Rates, RatesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RatesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Rates::parse(&text).map_err(|e| match e {
            RatesError::Parse { source, .. } => RatesError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses the text of a rates file.
    pub fn parse(text: &str) -> Result<Rates, RatesError> {
        let file: RatesFile = toml::from_str(text).map_err(|source| RatesError::Parse {
            path: String::new(),
            source,
        })?;
        Rates::from_table(&file.reporting_currency, file.rates)
    }

    pub fn reporting(&self) -> &str {
        &self.reporting
    }

    /// `nanos` of `currency` in nanos of the reporting currency, truncated toward zero;
    /// `Ok(None)` for a currency the table does not know. Exact: `nanos × rate / 10⁶` is
    /// computed as `q × rate + r × rate / 10⁶` with `nanos = q × 10⁶ + r`, so the product
    /// never needs more room than the result; a result past `i128` is an [`Overflow`].
    pub fn convert(&self, currency: &str, nanos: i128) -> Result<Option<i128>, Overflow> {
        let Some(&m) = self.micros.get(currency) else {
            return Ok(None);
        };
        let (q, r) = (nanos / MICROS, nanos % MICROS);
        q.checked_mul(m)
            .and_then(|whole| whole.checked_add(r * m / MICROS))
            .map(Some)
            .ok_or_else(|| {
                Overflow(format!(
                    "{currency} revenue converted to {}",
                    self.reporting
                ))
            })
    }
}

/// Parses ClickHouse decimal text (`"12.5"`, `"12.500000000"`, `"-3"`) into nano units.
/// Current releases drop trailing zeros that 18.16 prints, so both forms are accepted.
pub fn parse_nanos(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || fraction.len() > 9 {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    // decimal text past i128 is refused, not wrapped
    let n = whole.checked_mul(NANOS)?.checked_add(fraction)?;
    Some(if negative { -n } else { n })
}

/// Nano units as exact decimal text with nine decimals, as ClickHouse 18.16 prints them.
pub fn nanos_text(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / NANOS as u128, n % NANOS as u128)
}

/// Nano units as a float of whole units, for ratios and charts only.
pub fn nanos_f64(nanos: i128) -> f64 {
    nanos as f64 / NANOS as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_round_trips_in_both_engine_spellings() {
        for (text, nanos) in [
            ("12.5", 12_500_000_000),
            ("12.500000000", 12_500_000_000),
            ("-3", -3_000_000_000),
            ("0.000000001", 1),
        ] {
            assert_eq!(parse_nanos(text), Some(nanos), "{text}");
        }
        assert_eq!(parse_nanos("1.0000000001"), None);
        assert_eq!(parse_nanos(&format!("{}", i128::MAX)), None);
        assert_eq!(parse_nanos("x"), None);
        assert_eq!(nanos_text(12_500_000_000), "12.500000000");
        assert_eq!(nanos_text(-1), "-0.000000001");
    }

    #[test]
    fn conversion_is_exact_integer_arithmetic() {
        let rates = Rates::default();
        assert_eq!(rates.reporting(), "EUR");
        assert_eq!(rates.convert("EUR", 7), Ok(Some(7)));
        assert_eq!(rates.convert("USD", 100 * NANOS), Ok(Some(92 * NANOS)));
        assert_eq!(rates.convert("USD", 1), Ok(Some(0)));
        assert_eq!(rates.convert("XXX", 1), Ok(None));
    }

    #[test]
    fn conversion_stays_exact_at_the_extremes_and_names_an_overflow() {
        // the largest Decimal(38, 9) sum ClickHouse can return, in a currency worth 0.92
        let max = 10i128.pow(38) - 1;
        let rates = Rates::default();
        assert_eq!(
            rates.convert("USD", max).unwrap().unwrap(),
            max / 100 * 92 + 99 * 92 / 100
        );
        let dear = Rates::parse("reporting_currency = \"JPY\"\n[rates]\nEUR = 163.5\n").unwrap();
        assert!(dear.convert("EUR", i128::MAX / 2).is_err());
        assert_eq!(
            add_nanos(i128::MAX, 1, "total").unwrap_err().to_string(),
            "money overflow: total is past the exact range of i128 nanos (about 1.7e29 units)"
        );
        assert_eq!(nanos_text(max), "99999999999999999999999999999.999999999");
        assert_eq!(
            parse_nanos("99999999999999999999999999999.999999999"),
            Some(max)
        );
    }

    #[test]
    fn rates_file_is_parsed_and_checked() {
        let rates = Rates::parse("reporting_currency = \"USD\"\n[rates]\nEUR = 1.25\n").unwrap();
        assert_eq!(rates.reporting(), "USD");
        assert_eq!(rates.convert("EUR", 4 * NANOS), Ok(Some(5 * NANOS)));
        assert_eq!(rates.convert("USD", 4), Ok(Some(4)));
        assert!(matches!(
            Rates::parse("reporting_currency = \"EUR\"\n[rates]\nUSD = -1.0\n"),
            Err(RatesError::NotPositive { .. })
        ));
        assert!(matches!(
            Rates::parse("currency = 1"),
            Err(RatesError::Parse { .. })
        ));
    }
}
