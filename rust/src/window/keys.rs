//! The key table: maps each live key to a dense slot holding its state.
//!
//! Slots of removed keys are reused, so the table's size follows the number of keys with open
//! windows, not the number of keys ever seen. A slot is identified together with its key
//! ([`KeyTable::get_checked`]) so stale references (timers of a removed key) are detected.

use rustc_hash::{FxHashMap, FxHashSet};

use super::timers::TimerIndex;
use crate::aggregate::Layout;
use crate::snapshot::{Reader, Writer};
use crate::CoreResult;

/// Per-key window state that can be written to and read from snapshots and changelogs.
pub trait KeyedState: Sized {
    /// Writes the state.
    fn write(&self, layout: &Layout, w: &mut Writer);
    /// Reads a state written by [`KeyedState::write`].
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    fn read(layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self>;
    /// The watermark at which the key's timer is due (`i64::MAX`: none).
    fn timer(&self) -> i64;
    /// Records the sequence number of the key's live timer entry.
    fn set_timer_seq(&mut self, seq: u64);
    /// Open panes or sessions held.
    fn windows(&self) -> usize;
}

/// Writes every live key and its state, in key order (so equal states give equal bytes).
pub fn write_states<S: KeyedState>(keys: &KeyTable<S>, layout: &Layout, w: &mut Writer) {
    let mut live: Vec<(i64, &S)> = keys.iter().map(|(_, k, s)| (k, s)).collect();
    live.sort_unstable_by_key(|&(k, _)| k);
    w.count(live.len());
    for (key, st) in live {
        w.i64(key);
        st.write(layout, w);
    }
}

/// Reads what [`write_states`] wrote into empty tables, scheduling each key's timer. Returns the
/// number of open windows read.
///
/// # Errors
/// [`crate::CoreError::Snapshot`] on malformed bytes.
pub fn read_states<S: KeyedState>(
    layout: &Layout,
    r: &mut Reader<'_>,
    keys: &mut KeyTable<S>,
    timers: &mut TimerIndex,
) -> CoreResult<usize> {
    let mut windows = 0;
    for _ in 0..r.count()? {
        let key = r.i64()?;
        let st = S::read(layout, r)?;
        windows += st.windows();
        put(keys, timers, key, st);
    }
    Ok(windows)
}

/// Inserts a key that is not in the table, with its timer.
fn put<S: KeyedState>(keys: &mut KeyTable<S>, timers: &mut TimerIndex, key: i64, st: S) {
    let timer = st.timer();
    let slot = keys.slot_or_insert_with(key, move || st);
    if timer != i64::MAX {
        let seq = timers.push(timer, slot, key);
        keys.state_mut(slot).set_timer_seq(seq);
    }
}

/// Writes the keys in `changed` (then clears it), in key order: each with its current state, or
/// as removed.
pub fn write_changes<S: KeyedState>(
    keys: &KeyTable<S>,
    layout: &Layout,
    changed: &mut FxHashSet<i64>,
    w: &mut Writer,
) {
    let mut list: Vec<i64> = changed.drain().collect();
    list.sort_unstable();
    w.count(list.len());
    for key in list {
        w.i64(key);
        match keys.slot_of(key).and_then(|slot| keys.get(slot, key)) {
            Some(st) => {
                w.u8(1);
                st.write(layout, w);
            }
            None => w.u8(0),
        }
    }
}

/// Applies changes written by [`write_changes`]; returns the change in open windows.
///
/// # Errors
/// [`crate::CoreError::Snapshot`] on malformed bytes.
pub fn apply_changes<S: KeyedState>(
    layout: &Layout,
    r: &mut Reader<'_>,
    keys: &mut KeyTable<S>,
    timers: &mut TimerIndex,
) -> CoreResult<isize> {
    let mut delta = 0isize;
    for _ in 0..r.count()? {
        let key = r.i64()?;
        if let Some(slot) = keys.slot_of(key) {
            delta -= keys.get(slot, key).map_or(0, |st| st.windows()).cast_signed();
            keys.remove(slot); // its timer entries go stale
        }
        if r.u8()? == 1 {
            let st = S::read(layout, r)?;
            delta += st.windows().cast_signed();
            put(keys, timers, key, st);
        }
    }
    Ok(delta)
}

/// A slot of the key table: the key and its state, aligned to a cache line so that a state of
/// up to 56 bytes costs one line to fetch, not two.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Entry<S>(Option<(i64, S)>);

/// Per-key state `S` stored in dense, reusable slots.
#[derive(Debug, Clone)]
pub struct KeyTable<S> {
    index: FxHashMap<i64, u32>,
    slots: Vec<Entry<S>>,
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
            self.slots[slot as usize] = Entry(Some((key, init())));
            slot
        } else {
            self.slots.push(Entry(Some((key, init()))));
            u32::try_from(self.slots.len() - 1).expect("more than u32::MAX live keys")
        };
        self.index.insert(key, slot);
        slot
    }

    /// State in `slot` (which must be live).
    #[inline]
    pub fn state_mut(&mut self, slot: u32) -> &mut S {
        &mut self.slots[slot as usize].0.as_mut().expect("live slot").1
    }

    /// Key and state in `slot`, if the slot is live and holds `key`.
    #[inline]
    pub fn get_checked(&mut self, slot: u32, key: i64) -> Option<&mut S> {
        match self.slots.get_mut(slot as usize) {
            Some(Entry(Some((k, s)))) if *k == key => Some(s),
            _ => None,
        }
    }

    /// State in `slot`, if the slot is live and holds `key`.
    #[must_use]
    pub fn get(&self, slot: u32, key: i64) -> Option<&S> {
        match self.slots.get(slot as usize) {
            Some(Entry(Some((k, s)))) if *k == key => Some(s),
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
        self.slots.get(slot as usize).and_then(|s| s.0.as_ref().map(|(_, st)| st))
    }

    /// Drops `key` and frees its slot.
    pub fn remove(&mut self, slot: u32) {
        if let Some((key, _)) = self.slots[slot as usize].0.take() {
            self.index.remove(&key);
            self.free.push(slot);
        }
    }

    /// Live (slot, key, state) in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i64, &S)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.0.as_ref().map(|(k, st)| (u32::try_from(i).unwrap_or(u32::MAX), *k, st)))
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
            + self.slots.capacity() * std::mem::size_of::<Entry<S>>()
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
