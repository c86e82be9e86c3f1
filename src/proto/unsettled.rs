//! A session's unsettled deliveries by delivery id (a serial number, RFC
//! 1982): a ring for the ids in the order they are assigned, a sorted map
//! for the rest.
//!
//! Delivery ids are assigned one after another within a session, and most
//! deliveries are settled in roughly that order, so almost every id lands
//! at the ring's tail and leaves near its head: insert, lookup and removal
//! are an index computation, with no allocation per delivery (the ring's
//! buffer is reused) — where a `BTreeMap` cost a node walk and, now and
//! then, an allocation for each. Ids out of sequence (a peer is free to
//! choose its own) and old deliveries that stay unsettled while newer ones
//! settle behind them go to the sorted map, so the ring never holds more
//! than about twice its live entries plus [`SLACK`] slots: memory follows
//! the unsettled count, whatever the ids.

use std::collections::{BTreeMap, VecDeque};

/// Empty ring slots tolerated beyond twice the live ones before the
/// oldest entries move to the sorted map.
const SLACK: usize = 1024;
/// The largest gap of missing ids the ring bridges on insert; an id further
/// ahead of the tail goes to the sorted map.
const MAX_GAP: u32 = 64;

/// Unsettled deliveries of one direction of a session, by delivery id.
#[derive(Debug)]
pub(crate) struct DeliveryMap<V> {
    /// `ring[i]` holds id `base + i` (wrapping); the front slot is never
    /// empty unless the ring is.
    ring: VecDeque<Option<V>>,
    base: u32,
    /// Occupied slots of `ring`.
    live: usize,
    /// Ids that are not in the ring's sequence.
    spill: BTreeMap<u32, V>,
}

impl<V> Default for DeliveryMap<V> {
    fn default() -> Self {
        DeliveryMap {
            ring: VecDeque::new(),
            base: 0,
            live: 0,
            spill: BTreeMap::new(),
        }
    }
}

impl<V> DeliveryMap<V> {
    /// Entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live + self.spill.len()
    }

    /// Whether there are none.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring slot of `id`, if the ring covers it.
    fn slot(&self, id: u32) -> Option<usize> {
        let off = id.wrapping_sub(self.base) as usize;
        (off < self.ring.len()).then_some(off)
    }

    /// Inserts `value` under `id`; returns the value it replaces.
    pub(crate) fn insert(&mut self, id: u32, value: V) -> Option<V> {
        if self.ring.is_empty() {
            self.base = id;
        }
        if let Some(i) = self.slot(id) {
            let old = self.ring[i].replace(value);
            if old.is_some() {
                return old;
            }
            self.live += 1;
            // An id spilled while it was far ahead, now under the ring.
            return self.spill_remove(id);
        }
        let gap = id.wrapping_sub(self.base.wrapping_add(self.ring.len() as u32));
        if gap > MAX_GAP {
            return self.spill.insert(id, value);
        }
        let old = self.spill_remove(id);
        for _ in 0..gap {
            self.ring.push_back(None);
        }
        self.ring.push_back(Some(value));
        self.live += 1;
        self.compact();
        old
    }

    /// Moves the oldest entries to the sorted map while the ring is mostly
    /// holes (an old delivery left unsettled while newer ones settle).
    fn compact(&mut self) {
        while self.ring.len() > 2 * self.live + SLACK {
            if let Some(Some(v)) = self.ring.pop_front() {
                self.live -= 1;
                self.spill.insert(self.base, v);
            }
            self.base = self.base.wrapping_add(1);
            self.trim_front();
        }
    }

    fn spill_remove(&mut self, id: u32) -> Option<V> {
        if self.spill.is_empty() {
            None
        } else {
            self.spill.remove(&id)
        }
    }

    /// Drops empty slots at the front.
    fn trim_front(&mut self) {
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base = self.base.wrapping_add(1);
        }
    }

    /// The value under `id`.
    pub(crate) fn get(&self, id: u32) -> Option<&V> {
        // A ring slot may be empty while the id sits in the sorted map
        // (spilled when it was far ahead of the ring).
        match self.slot(id).and_then(|i| self.ring[i].as_ref()) {
            Some(v) => Some(v),
            None if self.spill.is_empty() => None,
            None => self.spill.get(&id),
        }
    }

    /// Whether `id` is present.
    pub(crate) fn contains_key(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    /// Removes and returns the value under `id`.
    pub(crate) fn remove(&mut self, id: u32) -> Option<V> {
        let Some(v) = self.slot(id).and_then(|i| {
            let v = self.ring[i].take()?;
            Some((i, v))
        }) else {
            return self.spill_remove(id);
        };
        let (i, v) = v;
        self.live -= 1;
        if i == 0 {
            self.trim_front();
        }
        Some(v)
    }

    /// Puts in `ids` (cleared first) the ids present in the serial range
    /// `first..=last` (`last` at most 2^31 - 1 past `first`), in no
    /// particular order. Costs the number of ids the range covers in the
    /// ring, not the ring's size.
    pub(crate) fn ids_in(&self, first: u32, last: u32, ids: &mut Vec<u32>) {
        let span = last.wrapping_sub(first) as u64;
        let len = self.ring.len() as u64;
        ids.clear();
        // Ring offsets (from `base`) the range covers.
        let from_first = first.wrapping_sub(self.base) as u64;
        let before_base = self.base.wrapping_sub(first) as u64;
        let offsets = if from_first < len {
            Some((from_first, (from_first + span).min(len - 1)))
        } else if before_base <= span && len > 0 {
            Some((0, (span - before_base).min(len - 1)))
        } else {
            None
        };
        if let Some((a, b)) = offsets {
            for off in a..=b {
                if self.ring[off as usize].is_some() {
                    ids.push(self.base.wrapping_add(off as u32));
                }
            }
        }
        if !self.spill.is_empty() {
            if first <= last {
                ids.extend(self.spill.range(first..=last).map(|(k, _)| *k));
            } else {
                ids.extend(self.spill.range(first..).map(|(k, _)| *k));
                ids.extend(self.spill.range(..=last).map(|(k, _)| *k));
            }
        }
    }

    /// Every entry, the out-of-sequence ones first, then the ring's in id
    /// order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        let ring = self
            .ring
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((self.base.wrapping_add(i as u32), v.as_ref()?)));
        self.spill.iter().map(|(k, v)| (*k, v)).chain(ring)
    }

    /// Keeps the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u32, &V) -> bool) {
        self.spill.retain(|k, v| keep(*k, v));
        for (i, slot) in self.ring.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|v| !keep(self.base.wrapping_add(i as u32), v))
            {
                *slot = None;
                self.live -= 1;
            }
        }
        self.trim_front();
        if self.live == 0 {
            self.ring.clear();
        }
    }

    /// Takes every value out, the out-of-sequence ones first, then the
    /// ring's in id order.
    pub(crate) fn take_values(&mut self) -> Vec<V> {
        let spill = std::mem::take(&mut self.spill);
        let ring = std::mem::take(&mut self.ring);
        self.live = 0;
        spill
            .into_values()
            .chain(ring.into_iter().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Each operation on the map and on a `BTreeMap` model gives the same
    /// answer, for a sequence of operations drawn from a small PRNG.
    fn agrees_with_model(seed: u64, start: u32, ops: usize) {
        let mut rng = seed;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut map = DeliveryMap::default();
        let mut model = BTreeMap::new();
        let mut next_id = start;
        for step in 0..ops {
            let r = next();
            match r % 10 {
                // In sequence, sometimes skipping a few ids.
                0..=4 => {
                    next_id = next_id.wrapping_add(1 + (r >> 8) as u32 % 3 * ((r >> 4) % 2) as u32);
                    assert_eq!(map.insert(next_id, step), model.insert(next_id, step));
                }
                // Anywhere (a hostile peer).
                5 => {
                    let id = (r >> 16) as u32;
                    assert_eq!(map.insert(id, step), model.insert(id, step));
                }
                // Remove a recent id, or the oldest.
                6..=8 => {
                    let id = if r % 3 == 0 {
                        model.keys().next().copied().unwrap_or(0)
                    } else {
                        next_id.wrapping_sub((r >> 8) as u32 % 50)
                    };
                    assert_eq!(map.remove(id), model.remove(&id));
                }
                _ => {
                    let first = next_id.wrapping_sub((r >> 8) as u32 % 100);
                    let last = first.wrapping_add((r >> 20) as u32 % 40);
                    let mut got = Vec::new();
                    map.ids_in(first, last, &mut got);
                    got.sort_unstable();
                    let mut want: Vec<u32> = model
                        .keys()
                        .copied()
                        .filter(|k| k.wrapping_sub(first) <= last.wrapping_sub(first))
                        .collect();
                    want.sort_unstable();
                    assert_eq!(got, want, "ids_in({first}, {last})");
                }
            }
            assert_eq!(map.len(), model.len());
            let probe = next_id.wrapping_sub((r >> 24) as u32 % 64);
            assert_eq!(map.get(probe), model.get(&probe));
            assert!(map.ring.len() <= 2 * map.live + SLACK + MAX_GAP as usize + 1);
        }
        let mut all: Vec<(u32, usize)> = map.iter().map(|(k, v)| (k, *v)).collect();
        all.sort_unstable();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn agrees_with_a_btreemap() {
        for seed in 1..20 {
            agrees_with_model(seed * 7919, 0, 5_000);
        }
    }

    #[test]
    fn agrees_across_the_wrap() {
        for seed in 1..10 {
            agrees_with_model(seed * 104_729, u32::MAX - 2_000, 5_000);
        }
    }

    #[test]
    fn in_order_ids_stay_in_the_ring() {
        let mut m = DeliveryMap::default();
        for id in 0..10_000u32 {
            m.insert(id, id);
            if id >= 1000 {
                assert_eq!(m.remove(id - 1000), Some(id - 1000));
            }
        }
        assert!(m.spill.is_empty());
        assert_eq!(m.len(), 1000);
        assert_eq!(m.ring.len(), 1000);
    }

    #[test]
    fn a_straggler_moves_out_of_the_ring() {
        let mut m = DeliveryMap::default();
        m.insert(0, 0);
        for id in 1..100_000u32 {
            m.insert(id, id);
            m.remove(id);
        }
        // The unsettled delivery 0 does not keep 100,000 slots alive.
        assert!(m.ring.len() <= SLACK + 2, "ring {}", m.ring.len());
        assert_eq!(m.get(0), Some(&0));
        assert_eq!(m.remove(0), Some(0));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn far_ids_do_not_grow_the_ring() {
        let mut m = DeliveryMap::default();
        m.insert(0, 0);
        m.insert(1_000_000, 1);
        m.insert(u32::MAX, 2);
        assert_eq!(m.ring.len(), 1);
        let mut ids = Vec::new();
        m.ids_in(u32::MAX - 1, 5, &mut ids);
        assert_eq!(ids, vec![0, u32::MAX]);
        assert_eq!(m.get(1_000_000), Some(&1));
    }
}
