//! The simulated stores: ids, regions and tokens derived from a secret.

use pipeline::region::Region;
use sha2::{Digest, Sha256};

use crate::scenario::Scenario;

/// One simulated store backend.
#[derive(Clone, Debug)]
pub struct Store {
    pub id: String,
    pub region: Region,
    pub token: String,
}

/// The prefix of a region's store ids.
pub fn prefix(region: Region) -> &'static str {
    match region {
        Region::Europe => "eu",
        Region::America => "us",
        Region::Asia => "asia",
    }
}

/// `per_region` stores in each region, e.g. `eu-1`, `us-1`, `asia-1`.
pub fn fleet(per_region: usize, secret: &str) -> Vec<Store> {
    Region::ALL
        .iter()
        .flat_map(|&region| (1..=per_region).map(move |n| store(region, n, secret)))
        .collect()
}

/// The fleet of a scenario: its per-region store counts, `default_per_region` where it
/// sets none.
pub fn scenario_fleet(scenario: &Scenario, default_per_region: usize, secret: &str) -> Vec<Store> {
    Region::ALL
        .iter()
        .flat_map(|&region| {
            (1..=scenario.stores_in(region, default_per_region))
                .map(move |n| store(region, n, secret))
        })
        .collect()
}

/// Store number `n` (from 1) of `region`, with its token derived from `secret`.
pub fn store(region: Region, n: usize, secret: &str) -> Store {
    let id = format!("{}-{n}", prefix(region));
    let token = pipeline::demo::store_token(secret, &id);
    Store { id, region, token }
}

/// The gateway stores file for a fleet: only token hashes, never tokens.
pub fn stores_file(stores: &[Store]) -> String {
    let mut out =
        String::from("# Simulated stores; tokens are derived from SIMULATOR_TOKEN_SECRET.\n");
    for s in stores {
        out.push_str(&format!(
            "\n[[store]]\nid = \"{}\"\nregion = \"{}\"\ntoken_sha256 = \"{}\"\n",
            s.id,
            s.region,
            hex::encode(Sha256::digest(s.token.as_bytes()))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleets_are_deterministic_and_cover_every_region() {
        let a = fleet(2, "s");
        assert_eq!(a.len(), 6);
        assert_eq!(a[0].id, "eu-1");
        assert_eq!(a[5].id, "asia-2");
        assert_eq!(a[0].token, fleet(2, "s")[0].token);
        assert_ne!(a[0].token, fleet(2, "t")[0].token);
        let file = stores_file(&a);
        assert_eq!(file.matches("[[store]]").count(), 6);
        assert!(!file.contains(&a[0].token), "the file holds hashes only");
    }
}
