//! A cap on the live keys of a window operator, and its eviction order.
//!
//! Invariants:
//! - `live` holds `(recency, key)` for exactly the keys that have data (open panes or
//!   sessions); `recency` is the start of the key's newest pane (tumbling/hopping: the pane of
//!   its latest event) or the end of its newest session (its latest event + gap).
//! - A key that gets its first data while `max` keys are live first evicts the smallest
//!   `(recency, key)`: the key whose latest event is the oldest, ties by the smaller key. The
//!   order depends on the state alone (it is rebuilt from it on restore), so a restored
//!   operator evicts exactly the keys the original would have.
//! - An evicted key's windows are dropped without a row; a later event of it starts afresh.
//!   Evictions are counted (`evicted`, written with the engine's counters).
//! - Work: a B-tree update when a key's newest pane (or session) changes, O(log keys); none
//!   for the other events.

use std::collections::BTreeSet;

/// The cap and the live keys in eviction order.
#[derive(Debug, Clone)]
pub struct KeyCap {
    max: usize,
    live: BTreeSet<(i64, i64)>,
    evicted: u64,
}

impl KeyCap {
    /// A cap of `max` live keys (at least 1), none live yet.
    #[must_use]
    pub fn new(max: usize) -> Self {
        KeyCap { max: max.max(1), live: BTreeSet::new(), evicted: 0 }
    }

    /// Admits `key`, which has no data yet and gets some with `recency`: returns the key to
    /// evict first when the cap is reached (counted as evicted), else `None`.
    pub fn admit(&mut self, key: i64, recency: i64) -> Option<i64> {
        let victim = if self.live.len() >= self.max { self.live.pop_first().map(|(_, k)| k) } else { None };
        if victim.is_some() {
            self.evicted += 1;
        }
        self.live.insert((recency, key));
        victim
    }

    /// `key`'s recency moves from `old` to `new`.
    pub fn update(&mut self, key: i64, old: i64, new: i64) {
        if old != new {
            self.live.remove(&(old, key));
            self.live.insert((new, key));
        }
    }

    /// `key` (with `recency`) has no data any more.
    pub fn remove(&mut self, key: i64, recency: i64) {
        self.live.remove(&(recency, key));
    }

    /// Rebuilds the order from the live keys' `(recency, key)` (after state was read).
    pub fn rebuild(&mut self, live: impl IntoIterator<Item = (i64, i64)>) {
        self.live.clear();
        self.live.extend(live);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_with_the_oldest_recency_goes_first_ties_by_key() {
        let mut cap = KeyCap::new(2);
        assert_eq!(cap.admit(7, 10), None);
        assert_eq!(cap.admit(3, 10), None);
        assert_eq!(cap.admit(5, 20), Some(3), "same recency: the smaller key");
        cap.update(7, 10, 30);
        assert_eq!(cap.admit(1, 25), Some(5));
        cap.remove(7, 30);
        assert_eq!(cap.admit(2, 0), None, "a removed key frees its place");
        assert_eq!(cap.evicted(), 2);
    }
}
