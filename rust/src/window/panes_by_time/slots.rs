//! Key slots: a key's column in every slice, assigned on its first event, freed when its last
//! accumulator empties, compacted when most are free.

use super::PanesByTime;
use crate::window::index::KeyIndex;

/// A table with at most this many slots is never compacted.
const MIN_SHRINK_SLOTS: usize = 16;

impl PanesByTime {
    /// Slot of `key`, if live.
    pub(super) fn slot_of(&self, key: i64) -> Option<u32> {
        self.index.find(key, |s| self.keys[s as usize] == key && self.live[s as usize])
    }

    pub(super) fn insert_key(&mut self, key: i64) -> u32 {
        let slot = if let Some(slot) = self.free.pop() {
            let i = slot as usize;
            self.keys[i] = key;
            self.live[i] = true;
            self.fired[i] = i64::MIN;
            if self.early_marks {
                self.triggered[i] = None; // (all `None` otherwise)
            }
            slot
        } else {
            let slot = u32::try_from(self.keys.len()).expect("more than u32::MAX live keys");
            self.keys.push(key);
            self.live.push(true);
            self.open.push(0);
            self.fired.push(i64::MIN);
            self.triggered.push(None);
            self.rank.push(0);
            if self.keys.len() > self.capacity {
                self.grow((self.capacity * 2).max(self.keys.len()).max(64));
            }
            slot
        };
        self.index.insert_new(key, slot);
        slot
    }

    pub(super) fn slot_or_insert(&mut self, key: i64) -> u32 {
        match self.slot_of(key) {
            Some(slot) => slot,
            None => self.insert_key(key),
        }
    }

    /// Room for `capacity` slots in every slice.
    fn grow(&mut self, capacity: usize) {
        let (width, empty) = (self.width, &self.empty);
        for s in self.slices.iter_mut().chain(&mut self.spare) {
            s.accs.reserve_exact((capacity - self.capacity) * width);
            for _ in self.capacity..capacity {
                s.accs.extend_from_slice(empty);
            }
        }
        self.capacity = capacity;
    }

    /// Drops the key of `slot` if it has no data left.
    pub(super) fn drop_if_empty(&mut self, slot: u32) {
        let i = slot as usize;
        if self.live[i] && self.open[i] == 0 {
            self.live[i] = false;
            if self.early_marks {
                self.triggered[i] = None; // (all `None` otherwise)
            }
            let key = self.keys[i];
            self.index.remove(key, |s| s == slot);
            self.free.push(slot);
        }
    }

    /// Compacts the slots when fewer than a quarter are live (memory follows the live keys
    /// after a spike); only between batches, since slots change.
    pub(super) fn shrink(&mut self) {
        let live = self.index.len();
        if self.in_batch || self.keys.len() <= MIN_SHRINK_SLOTS || live * 4 >= self.keys.len() {
            return;
        }
        let mut new_slot = vec![u32::MAX; self.keys.len()];
        let mut keys = Vec::with_capacity(live);
        let mut open = Vec::with_capacity(live);
        let mut triggered = Vec::with_capacity(live);
        for (i, slot) in new_slot.iter_mut().enumerate() {
            if self.live[i] {
                *slot = u32::try_from(keys.len()).expect("fewer slots than before");
                keys.push(self.keys[i]);
                open.push(self.open[i]);
                triggered.push(self.triggered[i].take());
            }
        }
        let width = self.width;
        for s in &mut self.slices {
            let mut accs = Vec::with_capacity(live * width);
            for (old, &new) in new_slot.iter().enumerate() {
                if new != u32::MAX {
                    accs.extend_from_slice(&s.accs[old * width..(old + 1) * width]);
                }
            }
            s.accs = accs;
            let mut touched: Vec<u32> = s
                .touched
                .iter()
                .map(|&old| new_slot[old as usize])
                .filter(|&new| new != u32::MAX && s.accs[new as usize * width] > 0)
                .collect();
            touched.sort_unstable();
            touched.dedup();
            s.touched = touched;
            s.stale = false;
            s.overflow = std::mem::take(&mut s.overflow)
                .into_iter()
                .filter_map(|(old, o)| {
                    Some(new_slot[old as usize]).filter(|&new| new != u32::MAX).map(|new| (new, o))
                })
                .collect();
        }
        self.spare = Vec::new();
        self.index = KeyIndex::with_capacity(live);
        for (slot, &key) in keys.iter().enumerate() {
            self.index.insert_new(key, u32::try_from(slot).expect("fewer slots than before"));
        }
        self.live = vec![true; live];
        self.fired = vec![i64::MIN; live];
        self.triggered = triggered;
        self.rank = vec![0; live];
        self.keys = keys;
        self.open = open;
        self.free = Vec::new();
        self.doomed = Vec::new();
        self.capacity = live;
    }
}
