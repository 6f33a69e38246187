//! Per-terminal risk with delayed fraud labels: counts and fraud rates over
//! `(t - (n + D), t - D]`, one deque per terminal shared by all its windows.
//!
//! A transaction's label (fraud or not) counts only once it is known. Two sources, usable
//! together:
//! - the delay model: a transaction carries its label, known `D` after the transaction, so
//!   it counts once its time is `<= t - D`, which is exactly when it enters the windows;
//! - label events: `(terminal, transaction time, transaction id, fraud)` applied when they
//!   arrive (`TerminalState::apply_label`); a label changes the fraud count of the windows
//!   that hold its transaction from then on.
//!
//! Invariants (for a terminal whose latest advance was to time `t`):
//! - `entries` holds the terminal's transactions with time `> t - (n_max + D)` in stream order;
//!   `base` is the absolute index of `entries[0]`.
//! - `hi` is the first entry with time `> t - D`; window `j`'s `lo[j]` is the first entry with
//!   time `> t - (n_j + D)`; `base <= lo[j] <= hi <= base + len`.
//! - `frauds[j]` is the number of entries flagged fraud in `lo[j]..hi`. Pointers move only
//!   forward and each entry enters and leaves each window once: O(windows) amortized per event.

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::FeatureColumns;
use crate::snapshot::{Reader, Writer};
use crate::time::Millis;
use crate::{CoreError, CoreResult};

#[derive(Debug, Clone, Copy)]
struct Entry {
    time: Millis,
    id: i64,
    fraud: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct WindowAcc {
    lo: u64,
    frauds: i64,
}

/// The terminal windows `n_j` and the label delay `D`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TerminalWindows {
    pub(crate) sizes: Vec<Millis>,
    pub(crate) longest: usize,
    pub(crate) delay: Millis,
}

/// One terminal's state.
#[derive(Debug, Clone)]
pub(crate) struct TerminalState {
    entries: VecDeque<Entry>,
    base: u64,
    hi: u64,
    windows: SmallVec<[WindowAcc; 4]>,
    /// Time of the latest transaction added.
    last_time: Millis,
}

/// What a label did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelOutcome {
    /// The transaction was found and its flag set.
    Applied,
    /// No such transaction is held (never seen, or already outside every window).
    Unmatched,
}

impl TerminalState {
    pub(crate) fn new(w: &TerminalWindows) -> Self {
        TerminalState {
            entries: VecDeque::new(),
            base: 0,
            hi: 0,
            windows: (0..w.sizes.len()).map(|_| WindowAcc::default()).collect(),
            last_time: Millis::MIN,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    // the cast is lossless: offsets into the deque are < its length
    fn entry(&self, abs: u64) -> &Entry {
        &self.entries[(abs - self.base) as usize]
    }

    /// Moves the windows to `t`: labels of transactions up to `t - D` become known; entries
    /// older than the longest window are dropped.
    pub(crate) fn advance(&mut self, w: &TerminalWindows, t: Millis) {
        let known = t.saturating_sub(w.delay);
        let end = self.end();
        while self.hi < end {
            let e = *self.entry(self.hi);
            if e.time > known {
                break;
            }
            if e.fraud {
                for acc in &mut self.windows {
                    acc.frauds += 1;
                }
            }
            self.hi += 1;
        }
        for j in 0..self.windows.len() {
            let boundary = known.saturating_sub(w.sizes[j]);
            let mut acc = self.windows[j];
            while acc.lo < self.hi {
                let e = *self.entry(acc.lo);
                if e.time > boundary {
                    break;
                }
                acc.frauds -= i64::from(e.fraud);
                acc.lo += 1;
            }
            self.windows[j] = acc;
        }
        let keep_from = self.windows[w.longest].lo;
        while self.base < keep_from {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    /// Whether nothing is left.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every transaction held is outside every window at any time `>= t`: the
    /// terminal can be dropped without changing a feature.
    pub(crate) fn expired(&self, w: &TerminalWindows, t: Millis) -> bool {
        self.last_time <= t.saturating_sub(w.delay).saturating_sub(w.sizes[w.longest])
    }

    /// Hints the CPU to fetch every entry held (what [`Self::write`] reads).
    #[inline]
    pub(crate) fn prefetch_held(&self) {
        let (a, b) = self.entries.as_slices();
        crate::prefetch::prefetch(a);
        crate::prefetch::prefetch(b);
    }

    /// Hints the CPU to fetch the entries the next advance reads.
    #[inline]
    pub(crate) fn prefetch_entries(&self) {
        // the cast is lossless: offsets are <= len
        for abs in self.windows.iter().map(|a| a.lo).chain([self.hi]) {
            if let Some(e) = self.entries.get((abs - self.base) as usize) {
                crate::prefetch::prefetch(e);
            }
        }
    }

    /// Number of transactions held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Advances to the transaction, writes its terminal features, then adds it with its
    /// delay-model label (`fraud`, false when labels come as events).
    pub(crate) fn on_event(
        &mut self,
        w: &TerminalWindows,
        time: Millis,
        id: i64,
        fraud: bool,
        out: &mut FeatureColumns,
    ) {
        self.advance(w, time);
        for (j, acc) in self.windows.iter().enumerate() {
            let n = (self.hi - acc.lo) as i64;
            out.terminal_nb_tx[j].push(n);
            out.terminal_nb_fraud[j].push(acc.frauds);
            out.terminal_risk[j].push(if n > 0 { acc.frauds as f64 / n as f64 } else { 0.0 });
        }
        let last = self.hi > self.base && self.entry(self.hi - 1).fraud;
        out.terminal_last_known_fraud.push(i8::from(last));
        self.entries.push_back(Entry { time, id, fraud });
        self.last_time = time;
    }

    /// Sets the fraud flag of transaction `(time, id)`.
    pub(crate) fn apply_label(&mut self, time: Millis, id: i64, fraud: bool) -> LabelOutcome {
        let Ok(rel) = self.entries.binary_search_by(|e| (e.time, e.id).cmp(&(time, id))) else {
            return LabelOutcome::Unmatched;
        };
        let k = self.base + rel as u64;
        let e = &mut self.entries[rel];
        if e.fraud != fraud {
            e.fraud = fraud;
            let delta = if fraud { 1 } else { -1 };
            for acc in &mut self.windows {
                if acc.lo <= k && k < self.hi {
                    acc.frauds += delta;
                }
            }
        }
        LabelOutcome::Applied
    }

    /// Approximate heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// Writes the state; positions relative to the first entry held (see
    /// `CustomerState::write`).
    pub(crate) fn write(&self, out: &mut Writer) {
        out.u64(self.hi - self.base);
        out.i64(self.last_time);
        out.count(self.entries.len());
        for e in &self.entries {
            out.i64(e.time);
            out.i64(e.id);
            out.u8(u8::from(e.fraud));
        }
        out.count(self.windows.len());
        for acc in &self.windows {
            out.u64(acc.lo - self.base);
        }
    }

    /// Reads what [`TerminalState::write`] wrote, or with `absolute` the first layout (the
    /// absolute position of the first entry, then positions absolute too).
    pub(crate) fn read(w: &TerminalWindows, r: &mut Reader<'_>, absolute: bool) -> CoreResult<Self> {
        let mut st = TerminalState::new(w);
        st.base = if absolute { r.u64()? } else { 0 };
        st.hi = r.u64()?;
        st.last_time = r.i64()?;
        let n = r.count()?;
        if st.base.checked_add(n as u64).is_none() {
            return Err(CoreError::Snapshot(format!("terminal position {} out of range", st.base)));
        }
        for _ in 0..n {
            st.entries.push_back(Entry { time: r.i64()?, id: r.i64()?, fraud: r.u8()? != 0 });
        }
        if st.hi < st.base || st.hi > st.end() {
            return Err(CoreError::Snapshot(format!("terminal pointer {} out of range", st.hi)));
        }
        r.expect_len(w.sizes.len(), "terminal windows")?;
        for j in 0..w.sizes.len() {
            let lo = r.u64()?;
            if lo < st.base || lo > st.hi {
                return Err(CoreError::Snapshot(format!("terminal window pointer {lo} out of range")));
            }
            let frauds = (lo..st.hi).map(|k| i64::from(st.entry(k).fraud)).sum();
            st.windows[j] = WindowAcc { lo, frauds };
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(sizes: &[Millis], delay: Millis) -> TerminalWindows {
        let longest = (0..sizes.len()).max_by_key(|&i| sizes[i]).unwrap();
        TerminalWindows { sizes: sizes.to_vec(), longest, delay }
    }

    #[test]
    fn delayed_window_counts_known_labels_only() {
        let w = windows(&[10], 5);
        let mut st = TerminalState::new(&w);
        let mut out = FeatureColumns::new(0, 1, false, 8);
        // (time, fraud): the window at t is (t - 15, t - 5]
        for (i, (t, f)) in [(0, true), (3, false), (5, true), (8, false), (20, false)].into_iter().enumerate()
        {
            st.on_event(&w, t, i as i64, f, &mut out);
        }
        assert_eq!(out.terminal_nb_tx[0], vec![0, 0, 1, 2, 1]);
        assert_eq!(out.terminal_nb_fraud[0], vec![0, 0, 1, 1, 0]);
        assert_eq!(out.terminal_risk[0], vec![0.0, 0.0, 1.0, 0.5, 0.0]);
        assert_eq!(out.terminal_last_known_fraud, vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn label_events_change_the_windows_that_hold_their_transaction() {
        let w = windows(&[10, 100], 0);
        let mut st = TerminalState::new(&w);
        let mut out = FeatureColumns::new(0, 2, false, 8);
        st.on_event(&w, 0, 1, false, &mut out);
        st.on_event(&w, 1, 2, false, &mut out);
        assert_eq!(st.apply_label(0, 1, true), LabelOutcome::Applied);
        assert_eq!(st.apply_label(0, 99, true), LabelOutcome::Unmatched);
        st.on_event(&w, 12, 3, false, &mut out); // window 10: (2, 12] is empty; 100 holds both
        assert_eq!(out.terminal_nb_fraud[0][2], 0);
        assert_eq!((out.terminal_nb_tx[1][2], out.terminal_nb_fraud[1][2]), (2, 1));
        st.apply_label(0, 1, false);
        st.apply_label(12, 3, true); // not yet in a window: counts once it enters
        st.on_event(&w, 13, 4, false, &mut out);
        assert_eq!((out.terminal_nb_tx[1][3], out.terminal_nb_fraud[1][3]), (3, 1));
    }

    #[test]
    fn entries_past_the_longest_window_are_dropped() {
        let w = windows(&[10, 20], 5);
        let mut st = TerminalState::new(&w);
        let mut out = FeatureColumns::new(0, 2, false, 8);
        st.on_event(&w, 0, 0, true, &mut out);
        st.on_event(&w, 10, 1, false, &mut out);
        st.advance(&w, 25);
        assert_eq!(st.len(), 1, "t=0 is outside (25-25, 20]");
        assert!(!st.expired(&w, 34) && st.expired(&w, 35), "t=10 leaves (t - 25, t - 5] at t=35");
        st.advance(&w, 40);
        assert!(st.is_empty());
    }
}
