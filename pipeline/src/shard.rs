//! The stream shards: which Redis keys hold the queue, and which shard a store writes to.
//!
//! One stream is one Redis key, so one Redis Cluster slot and one node; `STREAM_SHARDS`
//! splits it into several keys so that a cluster spreads them over its masters.
//!
//! - One shard (the default): the key is `STREAM_KEY` itself, as before sharding existed.
//! - N shards: the keys are `{STREAM_KEY:0}` … `{STREAM_KEY:N-1}`. The braces are a Redis
//!   Cluster hash tag: the slot is computed from what is inside them, so every key derived
//!   from a shard key by appending (its dead-letter stream `{events:0}:dead`, its
//!   interrupted-load counts) lands in the same slot as the shard, while different shards
//!   land in different slots.
//!
//! The rule: a store's requests always go to shard `fnv1a64(store_id) % N`. A store's
//! entries therefore stay in one stream, in the order the gateway appended them, which is
//! the ordering guarantee that remains after sharding (there is none across stores, and
//! there was none across a store's concurrent requests before). Round-robin would even out
//! the load better but scatter a store's entries; with thousands of stores the hash spreads
//! well enough. FNV-1a, not the standard library's hasher, because every gateway (any
//! build, any version) must pick the same shard.

/// The shards of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shards {
    keys: Vec<String>,
}

impl Shards {
    /// The shards of `stream_key` split `count` ways (at least one).
    pub fn new(stream_key: &str, count: u16) -> Shards {
        let keys = match count {
            0 | 1 => vec![stream_key.to_owned()],
            n => (0..n).map(|i| format!("{{{stream_key}:{i}}}")).collect(),
        };
        Shards { keys }
    }

    /// Every shard key, in shard order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The shard a store's requests go to.
    pub fn of_store(&self, store_id: &str) -> usize {
        (fnv1a64(store_id.as_bytes()) % self.keys.len() as u64) as usize
    }

    /// The key of shard `index`.
    pub fn key(&self, index: usize) -> &str {
        &self.keys[index]
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, and cheap for short ids.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_is_the_plain_key() {
        let s = Shards::new("events", 1);
        assert_eq!(s.keys(), ["events"]);
        assert_eq!(s.of_store("eu-store-001"), 0);
        assert_eq!(Shards::new("events", 0), s);
    }

    #[test]
    fn shard_keys_carry_hash_tags() {
        let s = Shards::new("events", 3);
        assert_eq!(s.keys(), ["{events:0}", "{events:1}", "{events:2}"]);
    }

    #[test]
    fn a_store_always_maps_to_the_same_shard_and_stores_spread() {
        // Published FNV-1a test vectors: the rule must never change between builds.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let s = Shards::new("events", 4);
        let mut per_shard = [0usize; 4];
        for n in 0..1000 {
            let store = format!("store-{n:04}");
            let shard = s.of_store(&store);
            assert_eq!(shard, s.of_store(&store));
            per_shard[shard] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 150), "{per_shard:?}");
    }
}
