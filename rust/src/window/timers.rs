//! The time-ordered index of per-key timers: finds due work without scanning all keys.
//!
//! Each key has at most one *current* timer (the earliest watermark at which something happens
//! to it: a window fires or state is cleaned). Every push gets a fresh sequence number, which
//! the key remembers; re-scheduling pushes a new entry and leaves the old one stale for good
//! (lazy deletion: an entry is live only while the key still holds its sequence number, so a
//! stale entry can never come back to life when the key is later scheduled at the same time).
//! Callers process the entries of one time in key order, so the rows a watermark advance
//! releases come in (time, key) order: a canonical order that no history (batching, snapshots,
//! changelog restores) can change.

use std::collections::BTreeMap;

/// A timer entry: the key's slot, the key itself (to detect reused slots) and the entry's
/// sequence number (to detect stale entries).
pub type TimerEntry = (u32, i64, u64);

/// Timers ordered by time.
#[derive(Debug, Clone, Default)]
pub struct TimerIndex {
    by_time: BTreeMap<i64, Vec<TimerEntry>>,
    earliest: Option<i64>,
    entries: usize,
    next_seq: u64,
}

impl TimerIndex {
    /// Registers a timer for `(slot, key)` at `time`; returns its sequence number.
    #[inline]
    pub fn push(&mut self, time: i64, slot: u32, key: i64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_time.entry(time).or_default().push((slot, key, seq));
        self.entries += 1;
        if self.earliest.is_none_or(|e| time < e) {
            self.earliest = Some(time);
        }
        seq
    }

    /// Whether some timer is due at watermark `wm` (O(1)).
    #[inline]
    #[must_use]
    pub fn has_due(&self, wm: i64) -> bool {
        self.earliest.is_some_and(|e| e <= wm)
    }

    /// Removes and returns all entries of the earliest time if it is `<= wm`.
    pub fn pop_due(&mut self, wm: i64) -> Option<(i64, Vec<TimerEntry>)> {
        if !self.has_due(wm) {
            return None;
        }
        let (time, entries) = self.by_time.pop_first()?;
        self.entries -= entries.len();
        self.earliest = self.by_time.keys().next().copied();
        Some((time, entries))
    }

    /// Number of entries, stale ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// All entries in firing order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, TimerEntry)> + '_ {
        self.by_time.iter().flat_map(|(&t, es)| es.iter().map(move |&e| (t, e)))
    }

    /// Drops every entry; sequence numbers continue (a number is never given twice).
    pub fn reset(&mut self) {
        *self = TimerIndex { next_seq: self.next_seq, ..TimerIndex::default() };
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        *self = TimerIndex::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut t = TimerIndex::default();
        t.push(30, 0, 1);
        t.push(10, 1, 2);
        t.push(10, 2, 3);
        assert!(!t.has_due(9));
        assert!(t.has_due(10));
        assert_eq!(t.pop_due(100), Some((10, vec![(1, 2, 1), (2, 3, 2)])));
        assert_eq!(t.pop_due(29), None);
        assert_eq!(t.pop_due(30), Some((30, vec![(0, 1, 0)])));
        assert!(t.is_empty());
    }
}
