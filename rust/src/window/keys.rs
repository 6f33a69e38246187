//! The key table: maps each live key to a dense slot holding its state.
//!
//! Slots of removed keys are reused, so the table's size follows the number of keys with open
//! windows, not the number of keys ever seen. A slot is identified together with its key
//! ([`KeyTable::get_checked`]) so stale references (timers of a removed key) are detected.

use rustc_hash::FxHashSet;

use super::index::KeyIndex;

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
pub fn write_states<S: KeyedState + Recycle>(keys: &KeyTable<S>, layout: &Layout, w: &mut Writer) {
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
pub fn read_states<S: KeyedState + Recycle>(
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
fn put<S: KeyedState + Recycle>(keys: &mut KeyTable<S>, timers: &mut TimerIndex, key: i64, st: S) {
    let timer = st.timer();
    let slot = keys.insert(key, st);
    if timer != i64::MAX {
        let seq = timers.push(timer, slot, key);
        keys.state_mut(slot).set_timer_seq(seq);
    }
}

/// Writes the keys in `changed` (then clears it), in key order: each with its current state, or
/// as removed.
pub fn write_changes<S: KeyedState + Recycle>(
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
pub fn apply_changes<S: KeyedState + Recycle>(
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

/// A per-key state that a freed slot keeps in place for the next key of that slot: dropping a
/// large inline state, or building a new one, would touch every cache line of it.
pub trait Recycle {
    /// A state with nothing in it.
    fn fresh() -> Self;
    /// Makes `self` equivalent to [`Recycle::fresh`], touching as little memory as possible
    /// (its heap data, if any, is released).
    fn recycle(&mut self);
}

/// A slot of the key table: the key and its state, aligned to a cache line. The key comes first
/// and the state right after it (`repr(C)`), so the key and the first 56 bytes of the state
/// share one line; a larger state (sliding windows keep their panes inline) continues on the
/// following lines, in the same page.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Entry<S> {
    key: i64,
    state: S,
}

/// Per-key state `S` stored in dense, reusable slots.
#[derive(Debug, Clone)]
pub struct KeyTable<S> {
    index: KeyIndex,
    slots: Vec<Entry<S>>,
    /// Whether each slot holds a live key (a free slot keeps a recycled state).
    live: Vec<bool>,
    free: Vec<u32>,
}

impl<S> Default for KeyTable<S> {
    fn default() -> Self {
        KeyTable { index: KeyIndex::default(), slots: Vec::new(), live: Vec::new(), free: Vec::new() }
    }
}

impl<S: Recycle> KeyTable<S> {
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

    /// The slot of `key`, with a fresh state when absent (a free slot's recycled state is
    /// reused as it is).
    ///
    /// # Panics
    /// Beyond `u32::MAX` live keys.
    #[inline]
    pub fn slot_or_insert(&mut self, key: i64) -> u32 {
        match self.slot_of(key) {
            Some(slot) => slot,
            None => self.insert_fresh(key),
        }
    }

    /// Like [`KeyTable::slot_or_insert`] without reading the key table: the slot found may
    /// (with odds of about 2^-32 per key compared) hold another key, so callers confirm it with
    /// [`KeyTable::get`] or [`KeyTable::get_checked`] and fall back to
    /// [`KeyTable::slot_or_insert`]. Made for resolving a batch of keys ahead of their events.
    #[inline]
    pub fn slot_or_insert_unchecked(&mut self, key: i64) -> u32 {
        match self.index.candidate(key) {
            Some(slot) => slot,
            None => self.insert_fresh(key),
        }
    }

    /// Inserts `key`, which must be absent, with a fresh (or recycled) state.
    fn insert_fresh(&mut self, key: i64) -> u32 {
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize].key = key;
            self.live[slot as usize] = true;
            slot
        } else {
            self.slots.push(Entry { key, state: S::fresh() });
            self.live.push(true);
            u32::try_from(self.slots.len() - 1).expect("more than u32::MAX live keys")
        };
        self.index.insert_new(key, slot);
        slot
    }

    /// Inserts `key`, which must be absent, with state `st`; returns its slot.
    ///
    /// # Panics
    /// When `key` is live, or beyond `u32::MAX` live keys.
    pub fn insert(&mut self, key: i64, st: S) -> u32 {
        assert!(self.slot_of(key).is_none(), "key {key} is already live");
        let slot = self.slot_or_insert(key);
        self.slots[slot as usize].state = st;
        slot
    }

    /// State in `slot` (which must be live).
    ///
    /// # Panics
    /// When the slot is free.
    #[inline]
    pub fn state_mut(&mut self, slot: u32) -> &mut S {
        assert!(self.live[slot as usize], "live slot");
        &mut self.slots[slot as usize].state
    }

    /// Key and state in `slot`, if the slot is live and holds `key`.
    #[inline]
    pub fn get_checked(&mut self, slot: u32, key: i64) -> Option<&mut S> {
        match self.slots.get_mut(slot as usize) {
            Some(Entry { key: k, state }) if *k == key && self.live[slot as usize] => Some(state),
            _ => None,
        }
    }

    /// State in `slot`, if the slot is live and holds `key`.
    #[must_use]
    pub fn get(&self, slot: u32, key: i64) -> Option<&S> {
        match self.slots.get(slot as usize) {
            Some(Entry { key: k, state }) if *k == key && self.live[slot as usize] => Some(state),
            _ => None,
        }
    }

    /// Hints the CPU to fetch the first cache line of `slot`: its key and the head of its state
    /// (see [`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(entry) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(&entry.key);
        }
    }

    /// Hints the CPU to fetch the index bucket of `key`, to be looked up soon.
    #[inline]
    pub fn prefetch_key(&self, key: i64) {
        self.index.prefetch(key);
    }

    /// State in `slot` whatever its key, if live.
    #[inline]
    #[must_use]
    pub fn state(&self, slot: u32) -> Option<&S> {
        let i = slot as usize;
        self.slots.get(i).filter(|_| self.live[i]).map(|e| &e.state)
    }

    /// Drops `key` and frees its slot (its state is recycled in place).
    pub fn remove(&mut self, slot: u32) {
        let i = slot as usize;
        if self.live[i] {
            self.live[i] = false;
            let entry = &mut self.slots[i];
            entry.state.recycle();
            self.index.remove(entry.key, |s| s == slot);
            self.free.push(slot);
        }
    }

    /// Live (slot, key, state) in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i64, &S)> {
        self.slots
            .iter()
            .zip(&self.live)
            .enumerate()
            .filter(|(_, (_, &live))| live)
            .map(|(i, (e, _))| (u32::try_from(i).unwrap_or(u32::MAX), e.key, &e.state))
    }

    /// Slot of `key`, if live.
    #[must_use]
    pub fn slot_of(&self, key: i64) -> Option<u32> {
        self.index.find(key, |s| self.slots[s as usize].key == key)
    }

    /// Approximate bytes of the table itself (not of the states' heap data).
    #[must_use]
    pub fn table_bytes(&self) -> usize {
        self.index.bytes()
            + self.slots.capacity() * std::mem::size_of::<Entry<S>>()
            + self.live.capacity()
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Recycle for u32 {
        fn fresh() -> Self {
            0
        }
        fn recycle(&mut self) {
            *self = 0;
        }
    }

    #[test]
    fn slots_are_reused_and_checked() {
        let mut t: KeyTable<u32> = KeyTable::default();
        let a = t.insert(10, 1);
        let b = t.insert(20, 2);
        assert_eq!(t.slot_or_insert(10), a);
        *t.state_mut(b) += 5;
        assert_eq!(t.get_checked(b, 20).copied(), Some(7));
        t.remove(a);
        assert_eq!(t.len(), 1);
        assert!(t.get_checked(a, 10).is_none());
        assert!(t.state(a).is_none());
        let c = t.slot_or_insert(30);
        assert_eq!(c, a, "freed slot reused");
        assert_eq!(t.get_checked(c, 30).copied(), Some(0), "a reused slot starts fresh");
        assert!(t.get_checked(c, 10).is_none(), "a stale reference does not see the new key");
        assert_eq!(t.iter().map(|(s, k, &v)| (s, k, v)).collect::<Vec<_>>(), vec![(a, 30, 0), (b, 20, 7)]);
    }
}
