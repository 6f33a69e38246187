//! A cap on the live keys of a window operator, and its eviction order.
//!
//! Invariants:
//! - A key is live while it has data (open panes or sessions); `live` counts them. A key's
//!   recency is the start of its newest pane (tumbling/hopping: the pane of its latest event)
//!   or the end of its latest session (its latest event + gap).
//! - A key that gets its first data while `max` keys are live first evicts the key with the
//!   smallest `(recency, key)`: the key whose latest event is the oldest, ties by the smaller
//!   key. The order depends on the state alone (it is rebuilt from it on restore), so a
//!   restored operator evicts exactly the keys the original would have.
//! - An evicted key's windows are dropped without a row; a later event of it starts afresh.
//!   Evictions are counted (`evicted`, written with the engine's counters).
//! - `buckets` maps a recency to keys that had it, lazily: every live key is in the bucket of
//!   its current recency, and other entries are stale (the key moved on or lost its data). An
//!   entry is checked against the operator's state (`current`) only when it is a candidate for
//!   eviction; stale entries are then dropped, buckets of recencies no key can have any more
//!   are dropped by [`KeyCap::expire`], and all stale entries are compacted away once they
//!   outnumber the live keys several times ([`COMPACT_FACTOR`]).
//! - Work: a push on a bucket's min-heap when a key gets a new pane (per event for sessions,
//!   whose end moves; mostly O(1) for keys in random order), plus the map's O(log recencies),
//!   and the live recencies of tumbling/hopping windows are a handful of panes; per eviction,
//!   heap pops of the stale entries skipped and the victim's, O(log n) each, amortised.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Stale entries are compacted away once the entries outnumber the live keys this many times
/// (plus a constant): rarely for tumbling/hopping windows, whose stale entries go with their
/// pane (a key has at most one per open pane, and an eviction takes at least one), so the
/// compaction's state look-ups mostly cost nothing; regularly for sessions, whose end moves
/// with every event.
const COMPACT_FACTOR: usize = 8;

/// Keys that had one recency, smallest first.
type Bucket = BinaryHeap<Reverse<i64>>;

/// The cap and the live keys in eviction order (see the module invariants).
#[derive(Debug, Clone)]
pub struct KeyCap {
    max: usize,
    live: usize,
    entries: usize,
    buckets: BTreeMap<i64, Bucket>,
    evicted: u64,
}

impl KeyCap {
    /// A cap of `max` live keys (at least 1), none live yet.
    #[must_use]
    pub fn new(max: usize) -> Self {
        KeyCap { max: max.max(1), live: 0, entries: 0, buckets: BTreeMap::new(), evicted: 0 }
    }

    /// Admits `key`, which had no data and gets some with `recency`: returns the key to evict
    /// first when the cap is reached (counted as evicted; the caller drops its data), else
    /// `None`. `current(k)` is the recency of key `k` in the operator's state (`None`: no data).
    pub fn admit(
        &mut self,
        key: i64,
        recency: i64,
        mut current: impl FnMut(i64) -> Option<i64>,
    ) -> Option<i64> {
        let victim = if self.live >= self.max { self.pop_oldest(&mut current) } else { None };
        self.live += 1;
        self.note(key, recency, current);
        victim
    }

    /// [`KeyCap::admit`] of a key that had no data (`first`), else [`KeyCap::note`].
    pub fn record(
        &mut self,
        key: i64,
        recency: i64,
        first: bool,
        current: impl FnMut(i64) -> Option<i64>,
    ) -> Option<i64> {
        if first {
            return self.admit(key, recency, current);
        }
        self.note(key, recency, current);
        None
    }

    /// `key`, live, now has `recency` (or got data at that recency; an entry that is not its
    /// newest is stale and harmless).
    pub fn note(&mut self, key: i64, recency: i64, current: impl FnMut(i64) -> Option<i64>) {
        // (before the entry goes in: the state may not show the new recency yet)
        if self.entries >= COMPACT_FACTOR * self.live + 1024 {
            self.compact(current);
        }
        self.buckets.entry(recency).or_default().push(Reverse(key));
        self.entries += 1;
    }

    /// A live key lost all its data (its entries go stale).
    pub fn remove(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    /// Drops the buckets of the oldest recencies while `gone(recency)`: no key can hold data
    /// at such a recency any more (its windows are past their cleanup time).
    pub fn expire(&mut self, gone: impl Fn(i64) -> bool) {
        while let Some(entry) = self.buckets.first_entry() {
            if !gone(*entry.key()) {
                break;
            }
            self.entries -= entry.get().len();
            entry.remove();
        }
    }

    /// The live key with the smallest `(recency, key)`, taken out (counted as evicted).
    fn pop_oldest(&mut self, current: &mut impl FnMut(i64) -> Option<i64>) -> Option<i64> {
        while let Some(mut entry) = self.buckets.first_entry() {
            let recency = *entry.key();
            let bucket = entry.get_mut();
            while let Some(Reverse(key)) = bucket.pop() {
                self.entries -= 1;
                if current(key) == Some(recency) {
                    self.live -= 1;
                    self.evicted += 1;
                    if bucket.is_empty() {
                        entry.remove();
                    }
                    return Some(key);
                }
            }
            entry.remove();
        }
        None
    }

    /// Keeps the entries that are the current recency of their key, once each.
    fn compact(&mut self, mut current: impl FnMut(i64) -> Option<i64>) {
        let mut entries = 0;
        self.buckets.retain(|&recency, bucket| {
            let mut keys: Vec<i64> =
                bucket.drain().map(|Reverse(k)| k).filter(|&k| current(k) == Some(recency)).collect();
            keys.sort_unstable();
            keys.dedup();
            entries += keys.len();
            *bucket = keys.into_iter().map(Reverse).collect();
            !bucket.is_empty()
        });
        self.entries = entries;
    }

    /// Rebuilds the order from the live keys' `(recency, key)` (after state was read).
    pub fn rebuild(&mut self, live: impl IntoIterator<Item = (i64, i64)>) {
        self.buckets.clear();
        self.live = 0;
        for (recency, key) in live {
            self.buckets.entry(recency).or_default().push(Reverse(key));
            self.live += 1;
        }
        self.entries = self.live;
    }

    /// Keys evicted.
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Sets the count of evicted keys (read back from a snapshot's counters).
    pub fn set_evicted(&mut self, n: u64) {
        self.evicted = n;
    }
}

/// The count of keys evicted by an operator's cap, if it has one.
#[must_use]
pub fn evicted(cap: Option<&KeyCap>) -> u64 {
    cap.map_or(0, KeyCap::evicted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A cap and the state it is checked against: key -> recency.
    struct Model {
        cap: KeyCap,
        state: HashMap<i64, i64>,
    }

    impl Model {
        fn new(max: usize) -> Self {
            Model { cap: KeyCap::new(max), state: HashMap::new() }
        }

        /// `key` gets data at `recency`; returns the key it evicts.
        fn event(&mut self, key: i64, recency: i64) -> Option<i64> {
            let state = &self.state;
            let victim = match state.get(&key) {
                Some(&r) => {
                    if recency > r {
                        self.cap.note(key, recency, |k| state.get(&k).copied());
                    }
                    None
                }
                None => self.cap.admit(key, recency, |k| state.get(&k).copied()),
            };
            if let Some(v) = victim {
                self.state.remove(&v);
            }
            let r = self.state.entry(key).or_insert(recency);
            *r = (*r).max(recency);
            victim
        }

        fn drop_key(&mut self, key: i64) {
            if self.state.remove(&key).is_some() {
                self.cap.remove();
            }
        }
    }

    #[test]
    fn the_key_with_the_oldest_recency_goes_first_ties_by_key() {
        let mut m = Model::new(2);
        assert_eq!(m.event(7, 10), None);
        assert_eq!(m.event(3, 10), None);
        assert_eq!(m.event(5, 20), Some(3), "same recency: the smaller key");
        assert_eq!(m.event(7, 30), None, "a live key evicts nothing");
        assert_eq!(m.event(1, 25), Some(5));
        m.drop_key(7);
        assert_eq!(m.event(2, 0), None, "a dropped key frees its place");
        assert_eq!(m.event(9, 40), Some(2), "an older recency, noted after newer ones, goes first");
        assert_eq!(m.cap.evicted(), 3);
    }

    proptest::proptest! {
        /// Against a plain model: the victim is always the smallest (recency, key) of the live
        /// keys, and stale entries stay bounded by the live keys.
        #[test]
        fn the_victim_is_the_smallest_recency_and_key(
            events in proptest::collection::vec((0i64..40, 0i64..30, proptest::bool::weighted(0.1)), 0..400),
            max in 1usize..8,
        ) {
            let mut m = Model::new(max);
            for (key, recency, drop) in events {
                if drop {
                    m.drop_key(key);
                    continue;
                }
                let full = m.state.len() >= max && !m.state.contains_key(&key);
                let want = full.then(|| m.state.iter().map(|(&k, &r)| (r, k)).min().unwrap().1);
                proptest::prop_assert_eq!(m.event(key, recency), want);
                proptest::prop_assert!(m.state.len() <= max);
                proptest::prop_assert_eq!(m.cap.live, m.state.len());
                proptest::prop_assert!(m.cap.entries <= COMPACT_FACTOR * m.cap.live + 1025);
            }
        }
    }
}
