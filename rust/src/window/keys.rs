//! The key table: maps each live key to a dense slot holding its state.
//!
//! Slots of removed keys are reused, and the table compacts (with its index) once fewer than a
//! quarter of its slots are live ([`shrink_if_sparse`]), so its size follows the number of keys
//! with open windows, not the number of keys ever seen nor their peak. A slot is identified together with its key
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
    /// Fewest bytes [`KeyedState::write`] writes for a key with open windows: bounds the keys
    /// that a snapshot's remaining bytes can hold, to reserve room for them up front.
    const MIN_WRITTEN: usize;
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
    let n = r.count()?;
    // Room for all keys at once: no rehash of the index, no copy of the table as it grows.
    keys.reserve(n.min(r.remaining() / (8 + S::MIN_WRITTEN.max(1))));
    for _ in 0..n {
        let key = r.i64()?;
        if keys.slot_of(key).is_some() {
            return Err(crate::CoreError::Snapshot(format!("key {key} appears twice")));
        }
        let st = S::read(layout, r)?;
        windows += st.windows();
        put(keys, timers, key, st);
    }
    Ok(windows)
}

/// Compacts `keys` when few of its slots are live ([`KeyTable::shrink_if_sparse`]); the keys
/// that moved get their timers again (the timer index is rebuilt from the live keys' timers,
/// which also drops its stale entries). Call it only where no slot is held across the call.
pub fn shrink_if_sparse<S: KeyedState + Recycle>(keys: &mut KeyTable<S>, timers: &mut TimerIndex) {
    if !keys.shrink_if_sparse() {
        return;
    }
    timers.reset();
    for (slot, key, st) in keys.iter_mut() {
        let timer = st.timer();
        if timer != i64::MAX {
            let seq = timers.push(timer, slot, key);
            st.set_timer_seq(seq);
        }
    }
}

/// Inserts a key that is not in the table, with its timer.
fn put<S: KeyedState + Recycle>(keys: &mut KeyTable<S>, timers: &mut TimerIndex, key: i64, st: S) {
    let timer = st.timer();
    let slot = keys.insert_absent(key, st);
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

/// A table with at most this many slots is never compacted.
const MIN_SHRINK_SLOTS: usize = 16;

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

    /// Appends a live entry; a grown table asks for huge pages (see
    /// [`crate::prefetch::advise_huge_pages`]) before its new memory is first touched.
    #[inline]
    fn push_slot(&mut self, entry: Entry<S>) {
        if self.slots.len() == self.slots.capacity() {
            self.grow_slots(self.slots.len().max(4));
        }
        self.slots.push(entry);
        self.live.push(true);
    }

    /// Reallocates the slots with room for `more` entries: the entries move by a copy into a
    /// fresh allocation advised for huge pages first (a `realloc` would move the pages of a
    /// large table as they are, small ones).
    #[inline(never)]
    fn grow_slots(&mut self, more: usize) {
        let mut slots = Vec::with_capacity(self.slots.len() + more);
        crate::prefetch::advise_huge_pages(&slots);
        slots.append(&mut self.slots);
        self.slots = slots;
    }

    /// Inserts `key`, which must be absent, with a fresh (or recycled) state.
    fn insert_fresh(&mut self, key: i64) -> u32 {
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize].key = key;
            self.live[slot as usize] = true;
            slot
        } else {
            self.push_slot(Entry { key, state: S::fresh() });
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
        self.insert_absent(key, st)
    }

    /// [`KeyTable::insert`] of a key known to be absent (not checked): the state is moved into
    /// its slot once (no fresh state is built first).
    fn insert_absent(&mut self, key: i64, st: S) -> u32 {
        let slot = if let Some(slot) = self.free.pop() {
            let entry = &mut self.slots[slot as usize];
            entry.key = key;
            entry.state = st;
            self.live[slot as usize] = true;
            slot
        } else {
            self.push_slot(Entry { key, state: st });
            u32::try_from(self.slots.len() - 1).expect("more than u32::MAX live keys")
        };
        self.index.insert_new(key, slot);
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

    /// Whether the table would compact: fewer than a quarter of its slots are live (and it is
    /// not tiny). After a compaction all slots are live, so the next one needs the removal of
    /// three quarters of the slots: its O(slots) cost is amortised O(1) per removal, and growth
    /// (which doubles) and shrinking never alternate on a small change of the live keys.
    #[must_use]
    pub fn is_sparse(&self) -> bool {
        self.slots.len() > MIN_SHRINK_SLOTS && self.len() * 4 < self.slots.len()
    }

    /// When [`KeyTable::is_sparse`], moves the live entries to the front (in slot order),
    /// releases the rest and rebuilds the index for the live keys; returns whether it did.
    /// Slots change: references to them (timers) must be rebuilt, see [`shrink_if_sparse`].
    pub fn shrink_if_sparse(&mut self) -> bool {
        if !self.is_sparse() {
            return false;
        }
        let mut n = 0;
        for i in 0..self.slots.len() {
            if self.live[i] {
                self.slots.swap(n, i);
                n += 1;
            }
        }
        self.slots.truncate(n);
        let mut slots = Vec::with_capacity(n);
        crate::prefetch::advise_huge_pages(&slots);
        slots.append(&mut self.slots);
        self.slots = slots;
        self.live = vec![true; n];
        self.free = Vec::new();
        self.index = KeyIndex::with_capacity(n);
        for (slot, e) in self.slots.iter().enumerate() {
            self.index.insert_new(e.key, u32::try_from(slot).expect("fewer slots than before"));
        }
        true
    }

    /// Room for `n` more keys without reallocating (the index is sized for them up front).
    pub fn reserve(&mut self, n: usize) {
        let want = self.len() + n;
        if want > self.slots.len() + self.free.len() {
            let more = want - self.slots.len() - self.free.len();
            self.grow_slots(more);
            self.live.reserve_exact(more);
        }
        self.index.reserve(want);
    }

    /// Number of slots (live and free).
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Live (slot, key, state) in slot order, states mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, i64, &mut S)> {
        self.slots
            .iter_mut()
            .zip(&self.live)
            .enumerate()
            .filter(|(_, (_, &live))| live)
            .map(|(i, (e, _))| (u32::try_from(i).unwrap_or(u32::MAX), e.key, &mut e.state))
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
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A test state with a timer: `(value, timer, timer_seq)`.
    #[derive(Debug, Clone, PartialEq)]
    struct Timed(u64, i64, u64);

    impl Recycle for Timed {
        fn fresh() -> Self {
            Timed(0, i64::MAX, u64::MAX)
        }
        fn recycle(&mut self) {
            *self = Timed::fresh();
        }
    }

    impl KeyedState for Timed {
        fn write(&self, _: &Layout, w: &mut Writer) {
            w.i64(self.0.cast_signed());
        }
        fn read(_: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
            Ok(Timed(r.i64()?.cast_unsigned(), i64::MAX, u64::MAX))
        }
        fn timer(&self) -> i64 {
            self.1
        }
        fn set_timer_seq(&mut self, seq: u64) {
            self.2 = seq;
        }
        fn windows(&self) -> usize {
            1
        }
        const MIN_WRITTEN: usize = 8;
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, u64),
        Remove(i64),
        Add(i64, u64),
        /// Removes all keys but every `n`-th (a spike going away).
        Thin(usize),
    }

    fn op(keys: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (keys.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => keys.clone().prop_map(Op::Remove),
            2 => (keys, any::<u64>()).prop_map(|(k, v)| Op::Add(k, v)),
            1 => (1usize..8).prop_map(Op::Thin),
        ]
    }

    /// Every key's state, slot lookup, timer (its live entry points at its current slot) and
    /// the table's size agree with a `HashMap`.
    fn check_against(t: &mut KeyTable<Timed>, timers: &TimerIndex, oracle: &HashMap<i64, u64>) {
        assert_eq!(t.len(), oracle.len());
        for (&k, &v) in oracle {
            let slot = t.slot_of(k).expect("live key found");
            assert_eq!(t.get(slot, k).map(|s| s.0), Some(v));
            assert_eq!(t.get_checked(slot, k).map(|s| s.0), Some(v));
            let st = t.get(slot, k).unwrap();
            let live: Vec<_> = timers.iter().filter(|(_, (_, key, seq))| *key == k && *seq == st.2).collect();
            assert_eq!(live.len(), 1, "one live timer entry");
            assert_eq!(live[0].0, st.1);
            assert_eq!(live[0].1 .0, slot, "the timer points at the key's slot");
        }
        assert_eq!(t.iter().count(), oracle.len());
        assert!(!t.is_sparse(), "a sparse table is compacted");
    }

    fn run(ops: Vec<Op>) {
        let mut t: KeyTable<Timed> = KeyTable::default();
        let mut timers = TimerIndex::default();
        let mut oracle: HashMap<i64, u64> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = oracle.entry(k) {
                        e.insert(v);
                        put(&mut t, &mut timers, k, Timed(v, k.rem_euclid(1000), u64::MAX));
                    }
                }
                Op::Remove(k) => {
                    if let Some(slot) = t.slot_of(k) {
                        t.remove(slot);
                    }
                    oracle.remove(&k);
                }
                Op::Add(k, v) => {
                    let slot = t.slot_or_insert(k);
                    let st = t.state_mut(slot);
                    st.0 = st.0.wrapping_add(v);
                    if st.1 == i64::MAX {
                        st.1 = 7;
                        st.2 = timers.push(7, slot, k);
                    }
                    let e = oracle.entry(k).or_insert(0);
                    *e = e.wrapping_add(v);
                }
                Op::Thin(n) => {
                    let mut all: Vec<i64> = oracle.keys().copied().collect();
                    all.sort_unstable();
                    for (i, k) in all.into_iter().enumerate() {
                        if i % n != 0 {
                            t.remove(t.slot_of(k).unwrap());
                            oracle.remove(&k);
                        }
                    }
                }
            }
            shrink_if_sparse(&mut t, &mut timers);
            check_against(&mut t, &timers, &oracle);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random inserts and removals through growth and compaction keep every key's state,
        /// lookup and timer.
        #[test]
        fn states_and_lookups_survive_grow_and_shrink(ops in prop::collection::vec(op(0i64..300), 0..600)) {
            run(ops);
        }

        #[test]
        fn any_keys_survive_grow_and_shrink(
            ops in prop::collection::vec(op(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX)]), 0..300)
        ) {
            run(ops);
        }
    }

    #[test]
    fn reading_states_sizes_the_table_once_and_rejects_duplicate_keys() {
        let layout =
            Layout::new(&[crate::aggregate::AggSpec::new("n", crate::aggregate::AggKind::Count, None)])
                .unwrap();
        let mut w = Writer::default();
        w.count(1000);
        for k in 0..1000 {
            w.i64(k * 7);
            Timed(k.cast_unsigned(), i64::MAX, u64::MAX).write(&layout, &mut w);
        }
        let bytes = w.into_bytes();
        let (mut t, mut timers) = (KeyTable::<Timed>::default(), TimerIndex::default());
        assert_eq!(read_states(&layout, &mut Reader::new(&bytes), &mut t, &mut timers).unwrap(), 1000);
        assert_eq!(t.slots.capacity(), 1000, "reserved exactly, never grown");
        assert_eq!(t.index.capacity(), 2048);
        assert!((0..1000)
            .all(|k| t.slot_of(k * 7).and_then(|s| t.get(s, k * 7)).map(|s| s.0) == Some(k.cast_unsigned())));

        let mut w = Writer::default();
        w.count(2);
        for _ in 0..2 {
            w.i64(5);
            Timed(1, i64::MAX, u64::MAX).write(&layout, &mut w);
        }
        let bytes = w.into_bytes();
        let (mut t, mut timers) = (KeyTable::<Timed>::default(), TimerIndex::default());
        assert!(
            read_states(&layout, &mut Reader::new(&bytes), &mut t, &mut timers).is_err(),
            "an error, no panic"
        );
    }

    #[test]
    fn capacity_follows_live_keys() {
        let mut t: KeyTable<Timed> = KeyTable::default();
        let mut timers = TimerIndex::default();
        for k in 0..100_000 {
            put(&mut t, &mut timers, k, Timed(k.cast_unsigned(), k % 10, u64::MAX));
        }
        let big = t.table_bytes();
        assert_eq!(t.slots(), 100_000);
        // Remove all but every 100th key: the table compacts once a quarter are left.
        for k in (0..100_000).filter(|k| k % 100 != 0) {
            t.remove(t.slot_of(k).unwrap());
            shrink_if_sparse(&mut t, &mut timers);
        }
        assert_eq!(t.len(), 1000);
        assert!(t.slots() < 4 * 1000, "slots {}", t.slots());
        assert!(t.table_bytes() * 20 < big, "{} vs {big}", t.table_bytes());
        assert!(timers.len() <= t.slots(), "stale timer entries dropped: {}", timers.len());
        let oracle: HashMap<i64, u64> =
            (0i64..100_000).step_by(100).map(|k| (k, k.cast_unsigned())).collect();
        check_against(&mut t, &timers, &oracle);
        // Everything goes: back to the minimum.
        for k in (0..100_000).step_by(100) {
            t.remove(t.slot_of(k).unwrap());
            shrink_if_sparse(&mut t, &mut timers);
        }
        assert!(t.slots() <= MIN_SHRINK_SLOTS);
        assert!(t.table_bytes() < 4096, "{}", t.table_bytes());
        // No flapping: a table just compacted does not compact again on one removal and
        // reinsertion.
        for k in 0..64 {
            put(&mut t, &mut timers, k, Timed(0, 1, u64::MAX));
        }
        assert!(!t.shrink_if_sparse());
        t.remove(t.slot_of(5).unwrap());
        assert!(!t.shrink_if_sparse());
    }

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
