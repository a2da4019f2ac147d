//! The demo fleet's tokens: how the simulator derives a store's token from a secret, and the
//! secret this repository publishes, so that the gateway can recognise tokens anyone can
//! compute and refuse them where it is exposed (`gateway::preflight`).

use sha2::{Digest, Sha256};

/// The token secret of the demo fleet, published in `.env.example` and behind
/// `deploy/stores.example.toml`: whoever reads this repository can derive those tokens.
pub const PUBLISHED_TOKEN_SECRET: &str = "demo-not-a-secret";

/// The bearer token of simulated store `store_id` when the fleet's secret is `secret`.
pub fn store_token(secret: &str, store_id: &str) -> String {
    format!(
        "sim_{}",
        hex::encode(Sha256::digest(format!("{secret}:{store_id}")))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_secret_and_the_store() {
        let token = store_token(PUBLISHED_TOKEN_SECRET, "eu-1");
        assert!(
            token.starts_with("sim_") && token.len() == 4 + 64,
            "{token}"
        );
        assert_ne!(token, store_token(PUBLISHED_TOKEN_SECRET, "eu-2"));
        assert_ne!(token, store_token("another-secret", "eu-1"));
    }
}
