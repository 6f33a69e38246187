//! Per-key state in dense slots, with a sweep cursor that visits every slot in turn.
//!
//! Invariants:
//! - `index` maps exactly the live keys to their slots; freed slots are reused, so the table
//!   grows with the number of keys holding state, not with the keys ever seen.
//! - A slot handed out by [`Table::slot`] stays valid until the key is removed; only
//!   [`Table::sweep`] removes keys, so a batch resolves its slots after sweeping.
//! - The sweep cursor wraps around, so every live key is examined once per `slots` steps:
//!   idle keys are dropped in amortized O(1) work per event.

use rustc_hash::FxHashMap;

/// Keyed state `S` in reusable slots.
#[derive(Debug, Clone)]
pub(crate) struct Table<S> {
    index: FxHashMap<i64, u32>,
    slots: Vec<Option<(i64, S)>>,
    free: Vec<u32>,
    cursor: usize,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Table { index: FxHashMap::default(), slots: Vec::new(), free: Vec::new(), cursor: 0 }
    }
}

impl<S> Table<S> {
    /// Number of live keys.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`, its state created with `init` when absent.
    #[inline]
    pub(crate) fn slot(&mut self, key: i64, init: impl FnOnce() -> S) -> u32 {
        if let Some(&slot) = self.index.get(&key) {
            return slot;
        }
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = Some((key, init()));
            slot
        } else {
            self.slots.push(Some((key, init())));
            // more than u32::MAX live keys cannot fit in memory anyway
            u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
        };
        self.index.insert(key, slot);
        slot
    }

    /// The state in a live `slot` (from [`Table::slot`], not swept since).
    #[inline]
    pub(crate) fn state_mut(&mut self, slot: u32) -> &mut S {
        match &mut self.slots[slot as usize] {
            Some((_, s)) => s,
            None => unreachable!("slots handed out stay live until swept"),
        }
    }

    /// The state in `slot`, if live.
    #[inline]
    pub(crate) fn state(&self, slot: u32) -> Option<&S> {
        self.slots.get(slot as usize).and_then(|s| s.as_ref().map(|(_, st)| st))
    }

    /// Hints the CPU to fetch the slot's header.
    #[inline]
    pub(crate) fn prefetch(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(s);
        }
    }

    /// The state of `key`, if live.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: i64) -> Option<&mut S> {
        let slot = *self.index.get(&key)? as usize;
        self.slots[slot].as_mut().map(|(_, s)| s)
    }

    /// Inserts `key` with `state`; false (and no change) when the key is already live.
    pub(crate) fn insert(&mut self, key: i64, state: S) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.slot(key, move || state);
        true
    }

    /// Drops `key` if its state passes `drop` (its slot is freed for reuse).
    pub(crate) fn remove_if(&mut self, key: i64, drop: impl FnOnce(&S) -> bool) {
        let Some(&slot) = self.index.get(&key) else { return };
        if self.slots[slot as usize].as_ref().is_some_and(|(_, st)| drop(st)) {
            self.slots[slot as usize] = None;
            self.index.remove(&key);
            self.free.push(slot);
        }
    }

    /// Examines the next `budget` slots; a key whose state fails `keep` is dropped.
    pub(crate) fn sweep(&mut self, budget: usize, mut keep: impl FnMut(&S) -> bool) {
        for _ in 0..budget.min(self.slots.len()) {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let slot = self.cursor;
            self.cursor += 1;
            let drop_key = match &self.slots[slot] {
                Some((key, state)) => (!keep(state)).then_some(*key),
                None => None,
            };
            if let Some(key) = drop_key {
                self.slots[slot] = None;
                self.index.remove(&key);
                // a u32 slot index: the table never holds more than u32::MAX slots
                self.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
            }
        }
    }

    /// Live (key, state) in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, &S)> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(k, st)| (*k, st)))
    }

    /// Live (key, state) whose state passes `keep`, in ascending key order (an order that does
    /// not depend on which slots the keys happen to hold).
    pub(crate) fn sorted(&self, keep: impl Fn(&S) -> bool) -> Vec<(i64, &S)> {
        let mut live: Vec<(i64, &S)> = self.iter().filter(|(_, st)| keep(st)).collect();
        live.sort_unstable_by_key(|&(key, _)| key);
        live
    }

    /// Approximate bytes of the table itself (not the states' heap data).
    pub(crate) fn table_bytes(&self) -> usize {
        self.index.capacity() * 13 + self.slots.capacity() * std::mem::size_of::<Option<(i64, S)>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_visits_every_slot_and_frees_dropped_keys() {
        let mut t: Table<u32> = Table::default();
        for k in 0..5 {
            let slot = t.slot(k, || 0);
            *t.state_mut(slot) += u32::try_from(k).unwrap();
        }
        t.sweep(3, |s| *s % 2 == 0);
        t.sweep(3, |s| *s % 2 == 0);
        assert_eq!(t.len(), 3);
        assert!(t.get_mut(1).is_none() && t.get_mut(3).is_none());
        assert_eq!(t.get_mut(4).copied(), Some(4));
        t.slot(9, || 9);
        assert_eq!(t.slots.len(), 5, "a freed slot is reused");
        assert!(!t.insert(9, 1));
        let keys: Vec<i64> = t.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 4);
    }
}
