//! The key table: maps each live key to a dense slot holding its state.
//!
//! Slots of removed keys are reused, so the table's size follows the number of keys with open
//! windows, not the number of keys ever seen. A slot is identified together with its key
//! ([`KeyTable::get_checked`]) so stale references (timers of a removed key) are detected.

use rustc_hash::FxHashMap;

/// Per-key state `S` stored in dense, reusable slots.
#[derive(Debug, Clone)]
pub struct KeyTable<S> {
    index: FxHashMap<i64, u32>,
    slots: Vec<Option<(i64, S)>>,
    free: Vec<u32>,
}

impl<S> Default for KeyTable<S> {
    fn default() -> Self {
        KeyTable { index: FxHashMap::default(), slots: Vec::new(), free: Vec::new() }
    }
}

impl<S> KeyTable<S> {
    /// Number of live keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The slot of `key`, creating its state with `init` when absent.
    ///
    /// # Panics
    /// Beyond `u32::MAX` live keys.
    #[inline]
    pub fn slot_or_insert_with(&mut self, key: i64, init: impl FnOnce() -> S) -> u32 {
        if let Some(&slot) = self.index.get(&key) {
            return slot;
        }
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = Some((key, init()));
            slot
        } else {
            self.slots.push(Some((key, init())));
            u32::try_from(self.slots.len() - 1).expect("more than u32::MAX live keys")
        };
        self.index.insert(key, slot);
        slot
    }

    /// State in `slot` (which must be live).
    #[inline]
    pub fn state_mut(&mut self, slot: u32) -> &mut S {
        &mut self.slots[slot as usize].as_mut().expect("live slot").1
    }

    /// Key and state in `slot`, if the slot is live and holds `key`.
    #[inline]
    pub fn get_checked(&mut self, slot: u32, key: i64) -> Option<&mut S> {
        match self.slots.get_mut(slot as usize) {
            Some(Some((k, s))) if *k == key => Some(s),
            _ => None,
        }
    }

    /// State in `slot`, if the slot is live and holds `key`.
    #[must_use]
    pub fn get(&self, slot: u32, key: i64) -> Option<&S> {
        match self.slots.get(slot as usize) {
            Some(Some((k, s))) if *k == key => Some(s),
            _ => None,
        }
    }

    /// Hints the CPU to fetch the state in `slot` (see [`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(entry) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(entry);
        }
    }

    /// State in `slot` whatever its key, if live.
    #[inline]
    #[must_use]
    pub fn state(&self, slot: u32) -> Option<&S> {
        self.slots.get(slot as usize).and_then(|s| s.as_ref().map(|(_, st)| st))
    }

    /// Drops `key` and frees its slot.
    pub fn remove(&mut self, slot: u32) {
        if let Some((key, _)) = self.slots[slot as usize].take() {
            self.index.remove(&key);
            self.free.push(slot);
        }
    }

    /// Live (slot, key, state) in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i64, &S)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(k, st)| (u32::try_from(i).unwrap_or(u32::MAX), *k, st)))
    }

    /// Slot of `key`, if live.
    #[must_use]
    pub fn slot_of(&self, key: i64) -> Option<u32> {
        self.index.get(&key).copied()
    }

    /// Approximate bytes of the table itself (not of the states' heap data).
    #[must_use]
    pub fn table_bytes(&self) -> usize {
        self.index.capacity() * (8 + 4 + 1)
            + self.slots.capacity() * std::mem::size_of::<Option<(i64, S)>>()
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_checked() {
        let mut t: KeyTable<u32> = KeyTable::default();
        let a = t.slot_or_insert_with(10, || 1);
        let b = t.slot_or_insert_with(20, || 2);
        assert_eq!(t.slot_or_insert_with(10, || 99), a);
        *t.state_mut(b) += 5;
        assert_eq!(t.get_checked(b, 20).copied(), Some(7));
        t.remove(a);
        assert_eq!(t.len(), 1);
        assert!(t.get_checked(a, 10).is_none());
        let c = t.slot_or_insert_with(30, || 3);
        assert_eq!(c, a, "freed slot reused");
        assert!(t.get_checked(c, 10).is_none(), "a stale reference does not see the new key");
    }
}
