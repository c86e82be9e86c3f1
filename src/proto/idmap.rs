//! Maps keyed by our own ids (sessions, links, sends): the keys are
//! counters we hand out, never values a peer chooses, so a cheap
//! multiplicative hash replaces SipHash. Channel and handle numbers (a
//! peer chooses its own) go in a [`NumberMap`]: a direct slot for the
//! small numbers every peer uses, SipHash for the rest.

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

/// Numbers below this have a direct slot in a [`NumberMap`].
const DIRECT: u32 = 64;

/// A map keyed by channel or handle numbers: numbers below [`DIRECT`] (the
/// ones peers use: they count from 0) index a vector, grown to the largest
/// such number seen; others, which a peer may choose freely, go in a
/// SipHash map. Each lookup of a frame's channel and handle is then an
/// index, and the memory stays bounded by the entries whatever the
/// numbers.
#[derive(Debug)]
pub(crate) struct NumberMap<K, V> {
    direct: Vec<Option<V>>,
    /// Entries in `direct`.
    live: usize,
    other: HashMap<K, V>,
}

impl<K, V> Default for NumberMap<K, V> {
    fn default() -> Self {
        NumberMap {
            direct: Vec::new(),
            live: 0,
            other: HashMap::new(),
        }
    }
}

impl<K: Copy + Into<u32> + Eq + std::hash::Hash, V> NumberMap<K, V> {
    fn slot(k: K) -> Option<usize> {
        let n = k.into();
        (n < DIRECT).then_some(n as usize)
    }

    /// The value under `k`.
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        match Self::slot(*k) {
            Some(i) => self.direct.get(i)?.as_ref(),
            None => self.other.get(k),
        }
    }

    /// Whether `k` is present.
    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    /// Inserts `v` under `k`; returns the value it replaces.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let Some(i) = Self::slot(k) else {
            return self.other.insert(k, v);
        };
        if self.direct.len() <= i {
            self.direct.resize_with(i + 1, || None);
        }
        let old = self.direct[i].replace(v);
        if old.is_none() {
            self.live += 1;
        }
        old
    }

    /// Removes and returns the value under `k`.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let Some(i) = Self::slot(*k) else {
            return self.other.remove(k);
        };
        let old = self.direct.get_mut(i)?.take();
        if old.is_some() {
            self.live -= 1;
            if self.live == 0 {
                self.direct = Vec::new();
            }
        }
        old
    }

    /// Entries.
    pub(crate) fn len(&self) -> usize {
        self.live + self.other.len()
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.direct.iter().flatten().chain(self.other.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::LinkId;

    #[test]
    fn number_map_small_and_large_keys() {
        let mut m: NumberMap<u32, u32> = NumberMap::default();
        for k in [0, 1, 63, 64, 1000, u32::MAX] {
            assert_eq!(m.insert(k, k.wrapping_add(1)), None);
        }
        assert_eq!(m.insert(1, 5), Some(2));
        assert_eq!(m.len(), 6);
        assert_eq!(m.get(&1), Some(&5));
        assert_eq!(m.get(&u32::MAX), Some(&u32::MAX.wrapping_add(1)));
        assert!(!m.contains_key(&2) && !m.contains_key(&65));
        let mut vals: Vec<u32> = m.values().copied().collect();
        vals.sort_unstable();
        assert_eq!(vals, vec![0, 1, 5, 64, 65, 1001]);
        for k in [0, 1, 63, 64, 1000, u32::MAX] {
            assert!(m.remove(&k).is_some());
        }
        assert_eq!(m.len(), 0);
        assert!(m.direct.is_empty(), "the direct slots are freed when empty");
        // A peer's large numbers never grow the direct slots.
        m.insert(4_000_000, 1);
        assert!(m.direct.is_empty());
    }

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
