//! Tumbling and hopping windows with the panes kept per key: each key's open panes together
//! in its key-table entry (Flink's "slicing"; panes of `gcd(size, slide)`). The engine uses this
//! layout for windows of several partitions, whose disorder is unbounded (one partition may run
//! far ahead): see [`super::PaneLayout`]; [`super::panes_by_time`] keeps the same windows by pane
//! time, with the same rows and state bytes.
//!
//! Invariants:
//! - State per key is a list of non-empty panes sorted by start, held inline in the key's
//!   table entry (up to `N`, chosen per engine from the window geometry by [`inline_panes`],
//!   else on the heap); an event updates exactly one pane
//!   (O(1) plus a short search from the back for out-of-order events).
//! - `next_end` is the earliest window end of the key that has data and has not fired; the
//!   key's single live timer is `min(next_end - 1, cleanup time of its oldest pane)`.
//! - Every window with data whose `end - 1 <= watermark` has been emitted; so a late event
//!   (within lateness) into a window with other data re-emits it as an `Update`, and into an
//!   empty one emits it for the first time as `Final`.
//! - A pane is dropped once every window containing it is past `end - 1 + allowed_lateness`;
//!   a key is dropped with its last pane. Memory is keys x open panes (a key's entry has room
//!   for `N`); the key table compacts when most of its slots are free (after `end_batch` or a
//!   watermark step outside a batch, never while a batch holds resolved slots).
//! - Firing visits the keys due at one time in slot order (memory order of the key table), then
//!   emits their rows in key order, the canonical order of `docs/semantics.md`.
//! - With a cap on live keys ([`WindowOperator::set_max_keys`], see [`super::cap`]), a key's recency
//!   is the start of its newest pane; a key with no pane that gets one while the cap is
//!   reached first evicts the key whose newest pane is the oldest (its panes dropped, no row).

mod combine;
mod state;

use std::cell::Cell;

use smallvec::SmallVec;

use self::combine::{has_data, PaneList};
pub(super) use self::state::{write_key, KeyPanes};
use super::emit::{emit_for_event_windows, EventWindow};
use super::keys::{
    apply_changes, read_states, shrink_if_sparse, write_changes, write_states, KeyTable, Recycle,
};
use super::operator::{Book, Event, StateContext, StateSize, WindowOperator, PREFETCH_DISTANCE};
use super::output::{EmitKind, Output};
use super::timers::TimerIndex;
use super::{EmitMode, Geometry, PaneSpan, Rules};
use crate::aggregate::{Acc, Layout};
use crate::predicate::Predicate;
use crate::snapshot::{Reader, Writer};
use crate::window::combine::{combine, WindowCombos};
use crate::CoreResult;

/// One pane: exactly one cache line (an event touches one pane; keyed state is bound by cache
/// misses, so a pane must not straddle lines). Panes live inline in the key table's entry right
/// after its first line, which keeps them 64-byte aligned.
#[derive(Debug, Clone, Default)]
struct Pane {
    start: i64,
    acc: Acc,
}

/// Most panes held inline in a key's table entry; a key with more open panes moves all of them
/// to the heap until they fit again. 7 covers HOP(size, slide) with size/slide <= 5 plus bounded
/// disorder without an allocation per key. The capacity of an engine follows its geometry
/// ([`inline_panes`]): every inline pane costs a cache line per key, open or not.
pub const MAX_INLINE_PANES: usize = 7;

/// The inline capacities compiled (each one a monomorphic copy of the window code).
pub const INLINE_CAPACITIES: [usize; 4] = [2, 3, 4, MAX_INLINE_PANES];

/// The panes a key can hold open at once, rounded up to a compiled capacity (at most
/// [`MAX_INLINE_PANES`]). Open panes of a key start within `(wm + 1 - size - lateness, wm +
/// disorder]` (a pane is dropped at `last end - 1 + lateness <= wm`, events come at most
/// `disorder` after the watermark): at most `ceil((size + lateness + disorder - 1) / pane)` of
/// them, plus one opened by an event far ahead, before the watermark moves past the others.
/// `disorder` is `None` when unbounded (several partitions: one may run ahead of the
/// watermark).
#[must_use]
pub fn inline_panes(geo: &Geometry, lateness: i64, disorder: Option<i64>) -> usize {
    let Some(disorder) = disorder else { return MAX_INLINE_PANES };
    let span = i128::from(geo.size) + i128::from(lateness.max(0)) + i128::from(disorder.max(0)) - 1;
    let pane = i128::from(geo.pane.max(1));
    let want = (span + pane - 1) / pane + 1;
    INLINE_CAPACITIES
        .into_iter()
        .find(|&c| i128::try_from(c).is_ok_and(|c| c >= want))
        .unwrap_or(MAX_INLINE_PANES)
}

/// A key's open panes, sorted by start: inline (`inline[..len]`) while they fit, else all in
/// `spill`. With the key and the fields before it in [`KeyState`], the head is one cache line
/// and each inline pane one more line of the same entry (no pointer to chase, one page).
#[derive(Debug, Clone)]
#[repr(C)]
struct Panes<const N: usize> {
    /// (Boxed: 8 bytes in the head, not 24.)
    #[allow(clippy::box_collection)]
    spill: Option<Box<Vec<Pane>>>,
    len: u32,
    /// Fills the head to 56 bytes, so that the inline panes start on a line of their own.
    _pad: [u8; 12],
    inline: [Pane; N],
}

impl<const N: usize> Panes<N> {
    fn new() -> Self {
        Panes { spill: None, len: 0, _pad: [0; 12], inline: std::array::from_fn(|_| Pane::default()) }
    }

    #[inline]
    fn as_slice(&self) -> &[Pane] {
        match &self.spill {
            Some(v) => v,
            None => &self.inline[..self.len as usize],
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [Pane] {
        match &mut self.spill {
            Some(v) => v,
            None => &mut self.inline[..self.len as usize],
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn first(&self) -> Option<&Pane> {
        self.as_slice().first()
    }

    fn iter(&self) -> std::slice::Iter<'_, Pane> {
        self.as_slice().iter()
    }

    /// Inserts `pane` at `idx` (`<= len`, keeping starts sorted).
    #[inline]
    fn insert(&mut self, idx: usize, pane: Pane) {
        let len = self.len as usize;
        if let Some(v) = &mut self.spill {
            v.insert(idx, pane);
        } else if len < N {
            if idx < len {
                self.inline[idx..=len].rotate_right(1);
            }
            self.inline[idx] = pane;
            self.len += 1;
        } else {
            let mut v: Vec<Pane> = Vec::with_capacity(2 * N);
            v.extend(self.inline.iter_mut().map(std::mem::take));
            v.insert(idx, pane);
            self.spill = Some(Box::new(v));
            self.len = 0;
        }
    }

    /// Drops the `n` oldest panes.
    fn drain_front(&mut self, n: usize) {
        if let Some(v) = &mut self.spill {
            v.drain(..n);
            if v.len() <= N {
                let len = v.len();
                for (slot, pane) in self.inline.iter_mut().zip(v.drain(..)) {
                    *slot = pane;
                }
                self.len = u32::try_from(len).unwrap_or(u32::MAX);
                self.spill = None;
            }
        } else {
            let len = self.len as usize;
            // Release heap data while the panes are where they were just read, then move the
            // rest down (swaps of whole lines, in cache: no call to a general rotation).
            for pane in &mut self.inline[..n] {
                if pane.acc.has_heap() {
                    *pane = Pane::default();
                }
            }
            for i in n..len {
                self.inline.swap(i - n, i);
            }
            self.len -= u32::try_from(n).unwrap_or(u32::MAX);
        }
    }

    /// Prefetch hint for the newest pane and the slot after it (where a new pane would go).
    #[inline]
    fn prefetch_tail(&self) {
        match &self.spill {
            Some(v) => {
                if let Some(p) = v.last() {
                    crate::prefetch::prefetch(p);
                }
            }
            None => {
                let len = self.len as usize;
                crate::prefetch::prefetch(&self.inline[len.saturating_sub(1)..(len + 1).min(N)]);
            }
        }
    }

    /// Empties the panes; the inline slots beyond the open panes never hold heap data, so only
    /// open ones are visited.
    fn clear(&mut self) {
        if self.spill.take().is_none() {
            for pane in &mut self.inline[..self.len as usize] {
                if pane.acc.has_heap() {
                    *pane = Pane::default();
                }
            }
        }
        self.len = 0;
    }

    /// Bytes held on the heap for the panes themselves (not their accumulators' heap data).
    fn heap_bytes(&self) -> usize {
        self.spill.as_ref().map_or(0, |v| v.capacity() * std::mem::size_of::<Pane>())
    }
}

/// Per-key state: with its key, the first line of the key-table entry holds the hot fields
/// (the rarely used early-firing marks are boxed); the inline panes follow.
#[derive(Debug, Clone)]
#[repr(C)]
struct KeyState<const N: usize> {
    next_end: i64,
    timer: i64,
    /// Sequence number of the live timer entry.
    timer_seq: u64,
    /// Ends of open windows that already fired early on the predicate.
    triggered: Option<Box<SmallVec<[i64; 2]>>>,
    /// Sorted by start.
    panes: Panes<N>,
}

impl<const N: usize> KeyState<N> {
    fn new() -> Self {
        KeyState {
            panes: Panes::new(),
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

/// How many keys ahead `resolve_slots` prefetches index buckets.
const INDEX_PREFETCH: usize = 16;

/// How many timer entries ahead `on_watermark` prefetches panes (and twice that, key states).
const WATERMARK_PREFETCH: usize = 8;

/// Scratch space for firing: the rows of one firing time in slot order, and their keys with
/// positions, sorted to append them in key order.
#[derive(Debug, Clone)]
struct Firing {
    stage: Output,
    by_key: Vec<(i64, u32)>,
    sort_tmp: Vec<(i64, u32)>,
}

/// Keyed tumbling/hopping window state.
#[derive(Debug, Clone)]
pub struct PanesPerKey<const N: usize> {
    geo: Geometry,
    keys: KeyTable<KeyState<N>>,
    timers: TimerIndex,
    scratch: Acc,
    /// Scratch space of the early-firing path (boxed: cold for final-only windows).
    combos: Box<WindowCombos<Acc>>,
    /// The pane of the last event and its window ends (see [`PaneSpan::of`]).
    span: PaneSpan,
    /// Scratch space of `on_watermark` (boxed: large and cold).
    firing: Box<Firing>,
    panes: usize,
    /// `resolve_slots` created key states that `end_batch` must check.
    created: bool,
    /// Between `resolve_slots` and `end_batch`: slots are held, so the key table must not be
    /// compacted (`on_watermark` leaves that to `end_batch`).
    in_batch: bool,
    /// Some pane may hold heap data (`state_bytes` must then visit every pane; otherwise the
    /// key table alone gives the size). Cleared by `state_bytes` when no pane does.
    maybe_heap: Cell<bool>,
    /// The keys changed since the changes were last written, and the cap on live keys.
    book: Book,
}

impl<const N: usize> PanesPerKey<N> {
    /// Empty state for windows of geometry `geo`.
    #[must_use]
    pub fn new(geo: Geometry, layout: &Layout) -> Self {
        PanesPerKey {
            geo,
            keys: KeyTable::default(),
            timers: TimerIndex::default(),
            scratch: layout.new_acc(),
            combos: Box::new(WindowCombos::new(layout.new_acc())),
            span: PaneSpan::NONE,
            firing: Box::new(Firing {
                stage: Output::for_layout(layout),
                by_key: Vec::new(),
                sort_tmp: Vec::new(),
            }),
            panes: 0,
            created: false,
            in_batch: false,
            maybe_heap: Cell::new(false),
            book: Book::default(),
        }
    }

    /// Records that `key` (in `slot`) gets data in pane `ps`: a key without panes is admitted
    /// under the cap, another noted at `ps` when that is its newest pane.
    #[inline(never)]
    fn admit(&mut self, slot: u32, key: i64, ps: i64) {
        let newest = self.keys.state(slot).and_then(|st| st.panes.as_slice().last()).map(|p| p.start);
        if newest.is_some_and(|n| n >= ps) {
            return;
        }
        self.record_recency(key, ps, newest.is_none());
    }

    /// Compacts the key table when few of its slots are live (memory follows the live keys
    /// after a spike).
    fn shrink(&mut self) {
        shrink_if_sparse(&mut self.keys, &mut self.timers);
    }

    /// Approximate bytes of state.
    #[must_use]
    fn state_bytes(&self) -> usize {
        let panes: usize = self.keys.iter().map(|(_, _, st)| st.panes.heap_bytes()).sum();
        let mut heap = 0;
        if self.maybe_heap.get() {
            heap = self
                .keys
                .iter()
                .flat_map(|(_, _, st)| st.panes.iter())
                .map(|p| Layout::heap_bytes(&p.acc))
                .sum::<usize>();
            self.maybe_heap.set(heap > 0); // heap data always has a size
        }
        self.keys.table_bytes() + panes + heap + self.timers.len() * 24
    }

    /// Reads what [`WindowOperator::snapshot`] wrote (of either tumbling/hopping layout).
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn read(geo: Geometry, layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut op = PanesPerKey::new(geo, layout);
        op.panes = read_states(layout, r, &mut op.keys, &mut op.timers)?;
        op.maybe_heap.set(true);
        Ok(op)
    }
}

impl<const N: usize> WindowOperator for PanesPerKey<N> {
    fn state_size(&self) -> StateSize {
        StateSize::of((self.keys.len(), self.panes, self.timers.len()), self.state_bytes())
    }

    keeps_book!();

    /// The start of the key's newest pane.
    fn recency(&self, key: i64) -> Option<i64> {
        let slot = self.keys.slot_of(key)?;
        self.keys.state(slot)?.panes.as_slice().last().map(|p| p.start)
    }

    /// Drops the state of `key` without a row (its slot is freed: a batch holding it re-checks).
    fn evict(&mut self, key: i64) {
        if let Some(slot) = self.keys.slot_of(key) {
            self.panes -= self.keys.state(slot).map_or(0, |st| st.panes.len());
            self.keys.remove(slot); // its timer entries go stale
        }
        self.book.changes.record(key);
    }

    /// The eviction order from the state (after it was read).
    fn rebuild_cap(&mut self) {
        if let Some(cap) = &mut self.book.cap {
            cap.rebuild(
                self.keys
                    .iter()
                    .filter_map(|(_, key, st)| st.panes.as_slice().last().map(|p| (p.start, key))),
            );
        }
    }

    /// Resolves the slot of every key up front, creating empty states for new keys. The slots
    /// are candidates, confirmed when each event is handled (see
    /// [`KeyTable::slot_or_insert_unchecked`]); `end_batch` drops the ones no event ended up in.
    fn begin_batch(&mut self, keys: &[i64], slots: &mut Vec<u32>) {
        let before = self.keys.len();
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + INDEX_PREFETCH) {
                self.keys.prefetch_key(ahead);
            }
            slots.push(self.keys.slot_or_insert_unchecked(key));
        }
        self.created = self.keys.len() > before;
        self.in_batch = true;
    }

    /// The head of the table entry of the key two prefetch distances ahead, and the newest pane
    /// (and the slot after it) of the key one distance ahead.
    #[inline]
    fn prefetch(&self, slots: &[u32], row: usize) {
        if let Some(&slot) = slots.get(row + 2 * PREFETCH_DISTANCE) {
            self.keys.prefetch(slot);
        }
        if let Some(st) = slots.get(row + PREFETCH_DISTANCE).and_then(|&s| self.keys.state(s)) {
            st.panes.prefetch_tail();
        }
    }

    /// Adds the event to the one pane of its key it falls in (the slot resolved in advance is
    /// re-checked: the key may have been dropped and re-created since).
    #[inline]
    fn on_event(&mut self, rules: &Rules, event: Event<'_>, out: &mut Output) -> bool {
        let Event { key, t, row, slot, batch, wm } = event;
        let g = self.geo;
        let lateness = rules.allowed_lateness;
        let layout = &rules.layout;
        let PaneSpan { start: ps, first_end, last_end } = self.span.of(&self.geo, t);
        if last_end - 1 + lateness <= wm {
            return false;
        }
        let slot = if self.keys.get(slot, key).is_some() { slot } else { self.keys.slot_or_insert(key) };
        if self.book.cap.is_some() {
            self.admit(slot, key, ps);
        }
        self.book.changes.record(key);
        let st = self.keys.state_mut(slot);
        let mut idx = st.panes.len();
        while idx > 0 && st.panes.as_slice()[idx - 1].start > ps {
            idx -= 1;
        }
        let new_pane = !(idx > 0 && st.panes.as_slice()[idx - 1].start == ps);
        if new_pane {
            st.panes.insert(idx, Pane { start: ps, acc: layout.new_acc() });
            self.panes += 1;
        } else {
            idx -= 1;
        }
        let acc = &mut st.panes.as_mut_slice()[idx].acc;
        layout.add(acc, batch, row, t);
        if acc.has_heap() {
            self.maybe_heap.set(true);
        }

        if first_end - 1 <= wm || rules.emit != EmitMode::Final {
            // (A late event of final-only windows updates one or two: those are merged
            // directly, in the order `PanesByTime` merges them, so both layouts give the same
            // bits; early firing builds the windows of the pane through `WindowCombos`.)
            let direct = rules.emit == EmitMode::Final;
            let from = first_end - g.size;
            let mut windows = KeyWindows {
                st: &mut *st,
                combos: &mut self.combos,
                scratch: &mut self.scratch,
                idx,
                from,
                direct,
                ready: false,
            };
            emit_for_event_windows(
                rules,
                key,
                (g.size, g.slide),
                (first_end, last_end),
                wm,
                &mut windows,
                out,
            );
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
    /// Whether some timer is due at watermark `wm`.
    #[inline]
    fn has_due(&self, wm: i64) -> bool {
        self.timers.has_due(wm)
    }

    /// Fires every window with `end - 1 <= wm` in time order and drops expired panes.
    #[inline(never)]
    fn on_watermark(&mut self, rules: &Rules, wm: i64, out: &mut Output) {
        let g = self.geo;
        let layout = &rules.layout;
        while let Some((time, mut entries)) = self.timers.pop_due(wm) {
            // Keys are visited in slot order, i.e. in memory order of the key table (all keys
            // with data often fire at the same time: that is a sequential scan, not a random
            // walk); the rows of one time are then put in key order.
            // (Stable sort: the entries mostly come in runs already in slot order, those pushed
            // by the previous firing, which it merges in linear time.)
            entries.sort_by_key(|&(slot, _, _)| slot);
            self.firing.stage.clear();
            self.firing.stage.trigger = out.trigger;
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
                self.book.changes.record(key);
                st.timer = i64::MAX;
                if st.next_end != i64::MAX && st.next_end - 1 <= time {
                    let end = st.next_end;
                    let window = (end - g.size, end);
                    if rules.final_rows {
                        combine(&PaneList { layout, panes: st.panes.as_slice() }, window, &mut self.scratch);
                        if self.scratch.count > 0 {
                            self.firing.stage.push(layout, key, window, EmitKind::Final, &self.scratch);
                        }
                    } else if has_data(st.panes.as_slice(), window) {
                        out.withheld += 1;
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
                    if let (Some(cap), true) = (&mut self.book.cap, expired == st.panes.len()) {
                        cap.remove();
                    }
                    st.panes.drain_front(expired);
                    self.panes -= expired;
                }
                if st.panes.is_empty() {
                    self.keys.remove(slot);
                } else {
                    st.timer = st.wanted_timer(&g, rules.allowed_lateness);
                    st.timer_seq = self.timers.push(st.timer, slot, key);
                }
            }
            let f = &mut *self.firing;
            out.append_by_key(&f.stage, &mut f.by_key, &mut f.sort_tmp);
        }
        if let Some(cap) = &mut self.book.cap {
            let lateness = rules.allowed_lateness;
            cap.expire(|ps| g.last_end(ps) - 1 + lateness <= wm);
        }
        if !self.in_batch {
            self.shrink();
        }
    }
    /// Drops key states created by `begin_batch` that received no event (all their events
    /// were late).
    fn end_batch(&mut self, slots: &[u32], keys: &[i64]) {
        if std::mem::take(&mut self.created) {
            for (&slot, &key) in slots.iter().zip(keys) {
                if self.keys.get(slot, key).is_some_and(|st| st.panes.is_empty()) {
                    self.keys.remove(slot);
                }
            }
        }
        self.in_batch = false;
        self.shrink();
    }

    fn snapshot(&self, ctx: StateContext<'_>, w: &mut Writer) {
        write_states(&self.keys, &ctx.rules.layout, w);
    }

    fn write_changes(&mut self, ctx: StateContext<'_>, w: &mut Writer) {
        write_changes(&self.keys, &ctx.rules.layout, &mut self.book.changes.take(), w);
    }

    fn apply_changes(&mut self, ctx: StateContext<'_>, r: &mut Reader<'_>) -> CoreResult<()> {
        self.maybe_heap.set(true); // (panes read may hold heap data)
        let delta = apply_changes(&ctx.rules.layout, r, &mut self.keys, &mut self.timers)?;
        self.panes = self.panes.saturating_add_signed(delta);
        self.shrink();
        self.rebuild_cap();
        Ok(())
    }
}

/// The windows of one event's pane of a key, as the emit decision reads them: combined from
/// the panes directly (final-only windows) or through `combos`, prepared on first use.
struct KeyWindows<'a, const N: usize> {
    st: &'a mut KeyState<N>,
    combos: &'a mut WindowCombos<Acc>,
    scratch: &'a mut Acc,
    /// The event's pane, and the start of its earliest window.
    idx: usize,
    from: i64,
    direct: bool,
    /// `combos` holds this event's pane.
    ready: bool,
}

impl<const N: usize> EventWindow for KeyWindows<'_, N> {
    #[inline]
    fn aggregate(&mut self, layout: &Layout, window: (i64, i64)) {
        let panes = PaneList { layout, panes: self.st.panes.as_slice() };
        if self.direct {
            return combine(&panes, window, self.scratch);
        }
        if !self.ready {
            self.combos.start(&panes, self.idx, self.from);
            self.ready = true;
        }
        self.combos.window(&panes, window, self.scratch);
    }

    fn emitted_before(&self) -> bool {
        self.scratch.count > 1
    }

    fn triggered(&self, end: i64) -> bool {
        self.st.triggered.as_ref().is_some_and(|t| t.contains(&end))
    }

    fn mark_triggered(&mut self, end: i64) {
        self.st.triggered.get_or_insert_default().push(end);
    }

    fn holds(&self, layout: &Layout, predicate: &Predicate) -> bool {
        predicate.eval(layout, self.scratch)
    }

    fn push(&self, layout: &Layout, out: &mut Output, key: i64, window: (i64, i64), kind: EmitKind) {
        out.push(layout, key, window, kind, self.scratch);
    }
}

impl<const N: usize> Recycle for KeyState<N> {
    fn fresh() -> Self {
        KeyState::new()
    }

    /// Keeps the inline panes' storage (a removed key usually has no open pane, so only the
    /// head line is written).
    fn recycle(&mut self) {
        self.panes.clear();
        self.next_end = i64::MAX;
        self.timer = i64::MAX;
        self.timer_seq = u64::MAX;
        self.triggered = None;
    }
}

#[cfg(test)]
mod tests;
