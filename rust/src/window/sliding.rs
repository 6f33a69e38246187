//! Tumbling and hopping windows over panes (Flink's "slicing").
//!
//! Invariants:
//! - State per key is a deque of non-empty panes sorted by start; an event updates exactly one
//!   pane (O(1) plus a short search from the back for out-of-order events).
//! - `next_end` is the earliest window end of the key that has data and has not fired; the
//!   key's single live timer is `min(next_end - 1, cleanup time of its oldest pane)`.
//! - Every window with data whose `end - 1 <= watermark` has been emitted; so a late event
//!   (within lateness) into a window with other data re-emits it as an `Update`, and into an
//!   empty one emits it for the first time as `Final`.
//! - A pane is dropped once every window containing it is past `end - 1 + allowed_lateness`;
//!   a key is dropped with its last pane. Memory is keys x open panes.

use std::cell::Cell;

use smallvec::SmallVec;

use rustc_hash::FxHashSet;

use super::keys::{apply_changes, read_states, write_changes, write_states, KeyTable, KeyedState};
use super::output::{EmitKind, Output};
use super::timers::TimerIndex;
use super::{EmitMode, Geometry, Rules};
use crate::aggregate::{Acc, Layout};
use crate::batch::Batch;
use crate::snapshot::{Reader, Writer};
use crate::CoreResult;

/// One pane: exactly one cache line (an event touches one pane; keyed state is bound by cache
/// misses, so a pane must not straddle lines).
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Pane {
    start: i64,
    acc: Acc,
}

/// Per-key state: with its key, one cache line in the key table (hot fields only; the rarely
/// used early-firing marks are boxed).
#[derive(Debug, Clone)]
struct KeyState {
    /// Sorted by start (a few panes: a vector shifts less than a deque indexes).
    panes: Vec<Pane>,
    next_end: i64,
    timer: i64,
    /// Sequence number of the live timer entry.
    timer_seq: u64,
    /// Ends of open windows that already fired early on the predicate.
    triggered: Option<Box<SmallVec<[i64; 2]>>>,
}

impl KeyState {
    fn new() -> Self {
        KeyState {
            panes: Vec::new(),
            next_end: i64::MAX,
            timer: i64::MAX,
            timer_seq: u64::MAX,
            triggered: None,
        }
    }

    fn wanted_timer(&self, g: &Geometry, lateness: i64) -> i64 {
        let fire = if self.next_end == i64::MAX { i64::MAX } else { self.next_end - 1 };
        let cleanup = self.panes.first().map_or(i64::MAX, |p| g.last_end(p.start) - 1 + lateness);
        fire.min(cleanup)
    }

    /// Earliest window end after `end` that contains a pane.
    fn next_end_after(&self, g: &Geometry, end: i64) -> i64 {
        let lowest_start = end + g.slide - g.size;
        self.panes
            .iter()
            .find(|p| p.start >= lowest_start)
            .map_or(i64::MAX, |p| (end + g.slide).max(g.first_end(p.start)))
    }
}

/// How many timer entries ahead `on_watermark` prefetches panes (and twice that, key states).
const WATERMARK_PREFETCH: usize = 8;

fn combine(layout: &Layout, panes: &[Pane], window: (i64, i64), into: &mut Acc) {
    layout.reset(into);
    for pane in panes.iter().filter(|p| p.start >= window.0 && p.start < window.1) {
        layout.merge(into, &pane.acc);
    }
}

/// Keyed tumbling/hopping window state.
#[derive(Debug, Clone)]
pub struct SlidingWindows {
    geo: Geometry,
    keys: KeyTable<KeyState>,
    timers: TimerIndex,
    scratch: Acc,
    panes: usize,
    /// `resolve_slots` created key states that `end_batch` must check.
    created: bool,
    /// Keys changed since the last `write_changes`, when tracking.
    changed: Option<FxHashSet<i64>>,
    /// Some pane may hold heap data (`state_bytes` must then visit every pane; otherwise the
    /// key table alone gives the size). Cleared by `state_bytes` when no pane does.
    maybe_heap: Cell<bool>,
}

impl SlidingWindows {
    /// Empty state for windows of geometry `geo`.
    #[must_use]
    pub fn new(geo: Geometry, layout: &Layout) -> Self {
        SlidingWindows {
            geo,
            keys: KeyTable::default(),
            timers: TimerIndex::default(),
            scratch: layout.new_acc(),
            panes: 0,
            created: false,
            changed: None,
            maybe_heap: Cell::new(false),
        }
    }

    /// Adds the event at `row`; `wm` is the watermark before it. Returns `false` when the
    /// event is later than allowed lateness for every window it belongs to (state unchanged).
    #[allow(clippy::too_many_arguments)]
    pub fn on_event(
        &mut self,
        rules: &Rules,
        key: i64,
        t: i64,
        row: usize,
        batch: &Batch<'_>,
        wm: i64,
        out: &mut Output,
    ) -> bool {
        self.on_event_at(rules, None, key, t, row, batch, wm, out)
    }

    /// Resolves the slot of every key of a batch up front (independent lookups overlap their
    /// cache misses), creating empty states for new keys. Call [`SlidingWindows::end_batch`]
    /// after the batch to drop the ones no event ended up in.
    pub fn resolve_slots(&mut self, keys: &[i64], slots: &mut Vec<u32>) {
        let before = self.keys.len();
        slots.clear();
        slots.extend(keys.iter().map(|&k| self.keys.slot_or_insert_with(k, KeyState::new)));
        self.created = self.keys.len() > before;
    }

    /// Prefetch hints for the state of a key whose event comes soon: `far` is the slot of an
    /// event further ahead (its table entry is fetched), `near` one closer (its newest pane).
    #[inline]
    pub fn prefetch(&self, far: Option<u32>, near: Option<u32>) {
        if let Some(slot) = far {
            self.keys.prefetch(slot);
        }
        if let Some(pane) = near.and_then(|s| self.keys.state(s)).and_then(|st| st.panes.last()) {
            crate::prefetch::prefetch(pane);
        }
    }

    /// Drops key states created by [`SlidingWindows::resolve_slots`] that received no event
    /// (all their events were late).
    pub fn end_batch(&mut self, slots: &[u32], keys: &[i64]) {
        if !std::mem::take(&mut self.created) {
            return;
        }
        for (&slot, &key) in slots.iter().zip(keys) {
            if self.keys.get(slot, key).is_some_and(|st| st.panes.is_empty()) {
                self.keys.remove(slot);
            }
        }
    }

    /// [`SlidingWindows::on_event`] with the key's slot resolved in advance (it is re-checked:
    /// the key may have been dropped and re-created since).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn on_event_at(
        &mut self,
        rules: &Rules,
        slot: Option<u32>,
        key: i64,
        t: i64,
        row: usize,
        batch: &Batch<'_>,
        wm: i64,
        out: &mut Output,
    ) -> bool {
        let g = self.geo;
        let lateness = rules.allowed_lateness;
        let layout = &rules.layout;
        let ps = g.pane_start(t);
        let last_end = g.last_end(ps);
        if last_end - 1 + lateness <= wm {
            return false;
        }
        let slot = match slot {
            Some(s) if self.keys.get(s, key).is_some() => s,
            _ => self.keys.slot_or_insert_with(key, KeyState::new),
        };
        if let Some(changed) = &mut self.changed {
            changed.insert(key);
        }
        let st = self.keys.state_mut(slot);
        let mut idx = st.panes.len();
        while idx > 0 && st.panes[idx - 1].start > ps {
            idx -= 1;
        }
        let new_pane = !(idx > 0 && st.panes[idx - 1].start == ps);
        if new_pane {
            st.panes.insert(idx, Pane { start: ps, acc: layout.new_acc() });
            self.panes += 1;
        } else {
            idx -= 1;
        }
        let acc = &mut st.panes[idx].acc;
        layout.add(acc, batch, row, t);
        if acc.has_heap() {
            self.maybe_heap.set(true);
        }

        let first_end = g.first_end(ps);
        if first_end - 1 <= wm || rules.emit != EmitMode::Final {
            let mut end = first_end;
            while end <= last_end {
                let window = (end - g.size, end);
                if end - 1 <= wm {
                    if end - 1 + lateness > wm {
                        combine(layout, &st.panes, window, &mut self.scratch);
                        let kind = if self.scratch.count > 1 { EmitKind::Update } else { EmitKind::Final };
                        out.push(layout, key, window, kind, &self.scratch);
                    }
                } else {
                    match &rules.emit {
                        EmitMode::Final => {}
                        EmitMode::EveryUpdate => {
                            combine(layout, &st.panes, window, &mut self.scratch);
                            out.push(layout, key, window, EmitKind::Early, &self.scratch);
                        }
                        EmitMode::When(pred) => {
                            if !st.triggered.as_ref().is_some_and(|t| t.contains(&end)) {
                                combine(layout, &st.panes, window, &mut self.scratch);
                                if pred.eval(layout, &self.scratch) {
                                    st.triggered.get_or_insert_default().push(end);
                                    out.push(layout, key, window, EmitKind::Early, &self.scratch);
                                }
                            }
                        }
                    }
                }
                end += g.slide;
            }
        }

        if new_pane {
            if let Some(end) = g.first_unfired_end(ps, wm) {
                st.next_end = st.next_end.min(end);
            }
            // The timer is already at most the cleanup time of the oldest pane, unless the new
            // pane is the oldest (reading the oldest pane would cost a cache miss per new pane).
            let timer = if idx == 0 {
                st.wanted_timer(&g, lateness)
            } else if st.next_end == i64::MAX {
                i64::MAX
            } else {
                st.next_end - 1
            };
            if timer < st.timer {
                st.timer = timer;
                st.timer_seq = self.timers.push(timer, slot, key);
            }
        }
        true
    }

    /// Fires every window with `end - 1 <= wm` in time order and drops expired panes.
    pub fn on_watermark(&mut self, rules: &Rules, wm: i64, out: &mut Output) {
        let g = self.geo;
        let layout = &rules.layout;
        while let Some((time, mut entries)) = self.timers.pop_due(wm) {
            entries.sort_unstable_by_key(|&(_, key, _)| key); // rows of one time: by key
            for (i, &(slot, key, seq)) in entries.iter().enumerate() {
                if let Some(&(ahead, _, _)) = entries.get(i + 2 * WATERMARK_PREFETCH) {
                    self.keys.prefetch(ahead);
                }
                if let Some(st) = entries.get(i + WATERMARK_PREFETCH).and_then(|e| self.keys.state(e.0)) {
                    crate::prefetch::prefetch(st.panes.as_slice());
                }
                let Some(st) = self.keys.get_checked(slot, key) else { continue };
                if st.timer_seq != seq {
                    continue;
                }
                if let Some(changed) = &mut self.changed {
                    changed.insert(key);
                }
                st.timer = i64::MAX;
                if st.next_end != i64::MAX && st.next_end - 1 <= time {
                    let end = st.next_end;
                    let window = (end - g.size, end);
                    combine(layout, &st.panes, window, &mut self.scratch);
                    if self.scratch.count > 0 {
                        out.push(layout, key, window, EmitKind::Final, &self.scratch);
                    }
                    if let Some(t) = &mut st.triggered {
                        t.retain(|e| *e > end);
                        if t.is_empty() {
                            st.triggered = None;
                        }
                    }
                    st.next_end = st.next_end_after(&g, end);
                }
                let expired = st
                    .panes
                    .iter()
                    .take_while(|p| g.last_end(p.start) - 1 + rules.allowed_lateness <= time)
                    .count();
                if expired > 0 {
                    st.panes.drain(..expired);
                    self.panes -= expired;
                }
                if st.panes.is_empty() {
                    self.keys.remove(slot);
                } else {
                    st.timer = st.wanted_timer(&g, rules.allowed_lateness);
                    st.timer_seq = self.timers.push(st.timer, slot, key);
                }
            }
        }
    }

    /// Live keys.
    #[must_use]
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Open panes over all keys.
    #[must_use]
    pub fn panes(&self) -> usize {
        self.panes
    }

    /// Pending timer entries (stale ones included).
    #[must_use]
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    /// Approximate bytes of state.
    #[must_use]
    pub fn state_bytes(&self) -> usize {
        let per_pane = std::mem::size_of::<Pane>();
        let panes: usize = self.keys.iter().map(|(_, _, st)| st.panes.capacity()).sum::<usize>() * per_pane;
        let mut heap = 0;
        if self.maybe_heap.get() {
            heap = self
                .keys
                .iter()
                .flat_map(|(_, _, st)| &st.panes)
                .map(|p| Layout::heap_bytes(&p.acc))
                .sum::<usize>();
            self.maybe_heap.set(heap > 0); // heap data always has a size
        }
        self.keys.table_bytes() + panes + heap + self.timers.len() * 24
    }

    /// Starts (or stops) recording which keys change, for [`SlidingWindows::write_changes`].
    pub fn track_changes(&mut self, on: bool) {
        self.changed = on.then(FxHashSet::default);
    }

    /// Whether changes are being recorded.
    #[must_use]
    pub fn tracks_changes(&self) -> bool {
        self.changed.is_some()
    }

    /// Writes every key's state.
    pub fn write(&self, layout: &Layout, w: &mut Writer) {
        write_states(&self.keys, layout, w);
    }

    /// Reads what [`SlidingWindows::write`] wrote.
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn read(geo: Geometry, layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut op = SlidingWindows::new(geo, layout);
        op.panes = read_states(layout, r, &mut op.keys, &mut op.timers)?;
        op.maybe_heap.set(true);
        Ok(op)
    }

    /// Writes the keys changed since the last call (tracking must be on).
    pub fn write_changes(&mut self, layout: &Layout, w: &mut Writer) {
        let mut changed = self.changed.take().unwrap_or_default();
        write_changes(&self.keys, layout, &mut changed, w);
        self.changed = Some(changed);
    }

    /// Applies changes written by [`SlidingWindows::write_changes`].
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn apply_changes(&mut self, layout: &Layout, r: &mut Reader<'_>) -> CoreResult<()> {
        let delta = apply_changes(layout, r, &mut self.keys, &mut self.timers)?;
        self.maybe_heap.set(true);
        self.panes = self.panes.saturating_add_signed(delta);
        Ok(())
    }
}

impl KeyedState for KeyState {
    fn write(&self, layout: &Layout, w: &mut Writer) {
        w.i64(self.next_end);
        w.i64(self.timer);
        let triggered = self.triggered.as_deref().map_or(&[][..], |t| t.as_slice());
        w.count(triggered.len());
        triggered.iter().for_each(|&e| w.i64(e));
        w.count(self.panes.len());
        for pane in &self.panes {
            w.i64(pane.start);
            layout.write_acc(&pane.acc, w);
        }
    }

    fn read(layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut st = KeyState::new();
        st.next_end = r.i64()?;
        st.timer = r.i64()?;
        for _ in 0..r.count()? {
            st.triggered.get_or_insert_default().push(r.i64()?);
        }
        for _ in 0..r.count()? {
            let start = r.i64()?;
            st.panes.push(Pane { start, acc: layout.read_acc(r)? });
        }
        Ok(st)
    }

    fn timer(&self) -> i64 {
        self.timer
    }

    fn set_timer_seq(&mut self, seq: u64) {
        self.timer_seq = seq;
    }

    fn windows(&self) -> usize {
        self.panes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_state_fits_cache_lines() {
        assert_eq!(std::mem::size_of::<Pane>(), 64, "a pane is one cache line");
        assert!(std::mem::size_of::<KeyState>() <= 56, "key + state fit one line in the key table");
    }
}
