//! Maps keyed by our own ids (sessions, links, sends): the keys are
//! counters we hand out, never values a peer chooses, so a cheap
//! multiplicative hash replaces SipHash (which guards maps whose keys a
//! peer controls, such as its channel and handle numbers; those keep it).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by one of our ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of the id's integers.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::LinkId;

    #[test]
    fn sequential_ids_spread() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i, i * 2);
        }
        assert!((0..10_000).all(|i| m[&i] == i * 2));
        let mut h = IdHasher::default();
        std::hash::Hash::hash(&LinkId(7), &mut h);
        assert_ne!(h.finish(), 7);
    }
}
