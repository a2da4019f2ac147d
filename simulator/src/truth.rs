//! The ground truth: what the gateway acknowledged, aggregated the way reports aggregate,
//! so tests can compare a report with what was really sent.

use std::collections::BTreeMap;

use pipeline::{
    proto::ingest::{CommerceEventType, Event, event::Payload},
    region::Region,
};
use serde::Serialize;

/// Counts of one funnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Funnel {
    pub views: u64,
    pub carts: u64,
    pub removals: u64,
    pub purchases: u64,
    /// Units purchased.
    pub units: u64,
    /// Purchase revenue per currency, in nano units.
    pub revenue_nanos: BTreeMap<String, i128>,
}

/// Probes of one region.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Probes {
    pub probes: u64,
    pub up: u64,
    /// Every response time, for exact quantiles.
    #[serde(skip)]
    pub response_times_ms: Vec<u32>,
}

/// What was sent and acknowledged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retried_requests: u64,
    pub failed: u64,
    pub total: Funnel,
    pub by_product: BTreeMap<u64, Funnel>,
    pub by_category: BTreeMap<String, Funnel>,
    pub by_region: BTreeMap<String, Funnel>,
    pub probes_by_region: BTreeMap<String, Probes>,
    /// Ids of every acknowledged event, in acknowledgement order.
    #[serde(skip)]
    pub accepted_ids: Vec<String>,
}

impl Funnel {
    fn add(&mut self, kind: CommerceEventType, quantity: u32, currency: &str, price_nanos: i128) {
        match kind {
            CommerceEventType::View => self.views += 1,
            CommerceEventType::Cart => self.carts += 1,
            CommerceEventType::RemoveFromCart => self.removals += 1,
            CommerceEventType::Purchase => {
                self.purchases += 1;
                self.units += quantity as u64;
                *self.revenue_nanos.entry(currency.to_owned()).or_default() +=
                    price_nanos * quantity as i128;
            }
            CommerceEventType::Unspecified => {}
        }
    }
}

impl Truth {
    /// Records one acknowledged event.
    pub fn accept(&mut self, event: &Event) {
        self.accepted += 1;
        self.accepted_ids.push(event.event_id.clone());
        let region = Region::from_proto(event.region).map_or("unspecified", Region::as_str);
        match &event.payload {
            Some(Payload::Commerce(c)) => {
                let kind = CommerceEventType::try_from(c.r#type).unwrap_or_default();
                let (currency, nanos) = c.price.as_ref().map_or(("", 0), |m| {
                    (
                        m.currency_code.as_str(),
                        m.units as i128 * 1_000_000_000 + m.nanos as i128,
                    )
                });
                for funnel in [
                    &mut self.total,
                    self.by_product.entry(c.product_id).or_default(),
                    self.by_category.entry(c.category_code.clone()).or_default(),
                    self.by_region.entry(region.to_owned()).or_default(),
                ] {
                    funnel.add(kind, c.quantity, currency, nanos);
                }
            }
            Some(Payload::Probe(p)) => {
                let probes = self.probes_by_region.entry(region.to_owned()).or_default();
                probes.probes += 1;
                probes.up += p.up as u64;
                probes.response_times_ms.push(p.response_time_ms);
            }
            None => {}
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("truth serialises")
    }
}

/// Nano units as exact decimal text with nine decimals, as ClickHouse prints Decimal(_, 9).
pub fn decimal_text(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_like_clickhouse() {
        assert_eq!(decimal_text(19_990_000_000), "19.990000000");
        assert_eq!(decimal_text(5), "0.000000005");
        assert_eq!(decimal_text(-1_500_000_000), "-1.500000000");
    }
}
