//! Tumbling and hopping windows with the panes kept by pane time: one column of flat
//! accumulators per pane ("slice", as Flink calls a pane shared by all keys), indexed by key
//! slot. The engine uses this layout for windows of one partition (see
//! [`super::PaneLayout`]).
//!
//! Why: [`super::panes_per_key`] keeps each key's panes together, so an event of one of many keys
//! misses the cache twice (the key's entry, then its pane). Here an event touches one
//! accumulator of the newest slice, which all recent events share and which stays in cache;
//! a window that fires reads its keys' accumulators from a few slices, a pass that prefetches
//! well. Same semantics, same output (early rows included, merged in the same order), same
//! snapshot bytes as [`super::panes_per_key::PanesPerKey`]; the engine uses this operator for windows
//! of one partition (bounded disorder, so a bounded number of live slices). Distinct values
//! outside the bitmaps (see [`Layout::fits_flat`]) go to a per-slice map beside the flat
//! accumulators.
//!
//! Invariants:
//! - `slices` are the live panes, sorted by start. The accumulator of a slot in a slice is
//!   empty unless the slot's key had events in that pane; `touched` lists the slots whose
//!   accumulator became non-empty (a slot can appear twice after its key was dropped and
//!   another took the slot; empty accumulators are skipped). A slice is `stale` when some slot
//!   it lists may have been emptied since (by `set_key`, applying changes); in a slice that is
//!   not stale every slot listed has data.
//! - `open[slot]` counts the non-empty accumulators of a slot over the live slices; a key is
//!   dropped when that reaches 0 (at the end of a batch while one is running: the batch holds
//!   resolved slots).
//! - Every window with data whose `end - 1 <= wm` has been emitted; `next_fire` is the
//!   earliest end of a window with data that has not fired. A late event (within lateness)
//!   re-emits its windows that fired, as in `PanesPerKey`.
//! - A slice is dropped once every window containing it is past `end - 1 + allowed_lateness`
//!   (`next_expiry` is the earliest such time).
//! - With a cap on live keys ([`WindowOperator::set_max_keys`]) keys are evicted as in `PanesPerKey`
//!   (see [`super::cap`]): the cap counts the slots with `open > 0`, a key's recency is the
//!   start of its newest slice with data. An evicted key's accumulators are emptied at once
//!   (its slices become `stale`); its slot is dropped as when its last slice expires.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::emit::{emit_for_event_windows, EventWindow};
use super::index::KeyIndex;
use super::operator::{Book, Event, StateContext, StateSize, WindowOperator, PREFETCH_DISTANCE};
use super::output::{sort_by_key_radix, EmitKind, Output};
use super::panes_per_key::{write_key, KeyPanes};
use super::{EmitMode, Geometry, PaneSpan, Rules};
use crate::aggregate::{Acc, Layout, Overflow};
use crate::batch::Batch;
use crate::predicate::Predicate;
use crate::snapshot::{Reader, Writer};
use crate::CoreResult;

/// How many keys ahead `resolve_slots` prefetches index buckets.
const INDEX_PREFETCH: usize = 16;

/// A table with at most this many slots is never compacted.
const MIN_SHRINK_SLOTS: usize = 16;

/// One pane time of all keys.
#[derive(Debug, Clone)]
struct Slice {
    start: i64,
    /// Flat accumulators by slot, `width` words each.
    accs: Vec<u64>,
    /// Slots whose accumulator became non-empty.
    touched: Vec<u32>,
    /// Distinct values outside the bitmaps, of the slots that have any.
    overflow: FxHashMap<u32, Overflow>,
    /// Some slot in `touched` may have no data here any more (`set_key` emptied it); else
    /// every slot listed has a non-empty accumulator.
    stale: bool,
}

impl Slice {
    /// The overflow of `slot`, if it may have one.
    #[inline]
    fn overflow_of(&self, slot: u32) -> Option<&Overflow> {
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.get(&slot)
        }
    }
}

/// Where the windows of one event stand (see `PanesByTime::window_acc`).
#[derive(Debug, Clone, Copy)]
struct EventCombos {
    /// First slice of the earliest window.
    lo: usize,
    /// First slice after the pivot not yet merged into `after`.
    next_after: usize,
    /// Whether the suffixes in `before` are used (no overflow in the windows' slices).
    shared: bool,
}

/// Ends of open windows that fired early on the predicate, in the order they did (boxed: rare).
type Triggered = Option<Box<SmallVec<[i64; 2]>>>;

/// Keyed tumbling/hopping window state stored by pane time; see the module documentation.
#[derive(Debug, Clone)]
pub struct PanesByTime {
    geo: Geometry,
    /// Words of one flat accumulator.
    width: usize,
    /// An empty flat accumulator.
    empty: Vec<u64>,
    index: KeyIndex,
    /// Key of each slot.
    keys: Vec<i64>,
    live: Vec<bool>,
    /// Non-empty accumulators of each slot over the live slices.
    open: Vec<u32>,
    /// Window end a slot last fired for (to list a key once per firing).
    fired: Vec<i64>,
    /// Ends of open windows of each slot that fired early on the predicate (as in `PanesPerKey`).
    triggered: Vec<Triggered>,
    /// Some window ever fired early on the predicate (else `triggered` is all `None`).
    early_marks: bool,
    free: Vec<u32>,
    /// Slots to drop at the end of the batch if they still have no data (new keys whose events
    /// were all late, keys whose last slice expired mid-batch).
    doomed: Vec<u32>,
    /// Slots every slice has room for.
    capacity: usize,
    /// Live slices, by start.
    slices: Vec<Slice>,
    /// Expired slices with every accumulator empty again, for reuse.
    spare: Vec<Slice>,
    /// Index in `slices` of the last event's slice (most events share one).
    last: usize,
    span: PaneSpan,
    next_fire: i64,
    next_expiry: i64,
    /// Non-empty accumulators over all slices (open panes).
    panes: usize,
    in_batch: bool,
    scratch: Vec<u64>,
    scratch_overflow: Overflow,
    /// The parts of a window before and after one slice (see [`PanesByTime::combine_around`]);
    /// `before` holds one accumulator per suffix in `window_acc`.
    before: Vec<u64>,
    after: Vec<u64>,
    order: Vec<(i64, u32)>,
    sort_tmp: Vec<(i64, u32)>,
    /// Row of each slot in the firing in progress.
    rank: Vec<u32>,
    /// Slots of the firing in progress, in slot order.
    by_slot: Vec<u32>,
    /// The keys changed since the changes were last written, and the cap on live keys.
    book: Book,
}

impl PanesByTime {
    /// Empty state for windows of geometry `geo`.
    #[must_use]
    pub fn new(geo: Geometry, layout: &Layout) -> Self {
        PanesByTime {
            geo,
            width: layout.flat_width(),
            empty: layout.flat_empty(),
            index: KeyIndex::default(),
            keys: Vec::new(),
            live: Vec::new(),
            open: Vec::new(),
            fired: Vec::new(),
            triggered: Vec::new(),
            early_marks: false,
            free: Vec::new(),
            doomed: Vec::new(),
            capacity: 0,
            slices: Vec::new(),
            spare: Vec::new(),
            last: 0,
            span: PaneSpan::NONE,
            next_fire: i64::MAX,
            next_expiry: i64::MAX,
            panes: 0,
            in_batch: false,
            scratch: layout.flat_empty(),
            scratch_overflow: None,
            before: layout.flat_empty(),
            after: layout.flat_empty(),
            order: Vec::new(),
            sort_tmp: Vec::new(),
            rank: Vec::new(),
            by_slot: Vec::new(),
            book: Book::default(),
        }
    }

    /// Start of the newest slice where `slot` has data.
    fn newest_pane(&self, slot: u32) -> Option<i64> {
        let at = slot as usize * self.width;
        self.slices.iter().rev().find(|s| s.accs[at] > 0).map(|s| s.start)
    }

    /// Records that `key` (in `slot`) gets data in the slice starting at `ps`, where it had
    /// none: a key without data is admitted under the cap, evicting the key with the oldest
    /// newest pane when it is reached; another one is noted at `ps` (lazily: an entry that is
    /// not the key's newest pane is skipped, see [`super::cap`]), without reading its slices.
    #[inline(never)]
    fn admit(&mut self, slot: u32, key: i64, ps: i64) {
        self.record_recency(key, ps, self.open[slot as usize] == 0);
    }

    /// Empties every accumulator of `slot` (the slices holding one become `stale`).
    fn clear_slot(&mut self, slot: u32) {
        let at = slot as usize * self.width;
        for s in &mut self.slices {
            let acc = &mut s.accs[at..at + self.width];
            if acc[0] > 0 {
                acc.copy_from_slice(&self.empty);
                s.overflow.remove(&slot);
                s.stale = true;
                self.panes -= 1;
            }
        }
        self.open[slot as usize] = 0;
    }

    /// Time at which the slice starting at `start` expires.
    fn expiry(&self, start: i64, lateness: i64) -> i64 {
        self.geo.last_end(start) - 1 + lateness
    }

    // ------------------------------------------------------------------ keys and slots

    /// Slot of `key`, if live.
    fn slot_of(&self, key: i64) -> Option<u32> {
        self.index.find(key, |s| self.keys[s as usize] == key && self.live[s as usize])
    }

    fn insert_key(&mut self, key: i64) -> u32 {
        let slot = if let Some(slot) = self.free.pop() {
            let i = slot as usize;
            self.keys[i] = key;
            self.live[i] = true;
            self.fired[i] = i64::MIN;
            if self.early_marks {
                self.triggered[i] = None; // (all `None` otherwise)
            }
            slot
        } else {
            let slot = u32::try_from(self.keys.len()).expect("more than u32::MAX live keys");
            self.keys.push(key);
            self.live.push(true);
            self.open.push(0);
            self.fired.push(i64::MIN);
            self.triggered.push(None);
            self.rank.push(0);
            if self.keys.len() > self.capacity {
                self.grow((self.capacity * 2).max(self.keys.len()).max(64));
            }
            slot
        };
        self.index.insert_new(key, slot);
        slot
    }

    fn slot_or_insert(&mut self, key: i64) -> u32 {
        match self.slot_of(key) {
            Some(slot) => slot,
            None => self.insert_key(key),
        }
    }

    /// Room for `capacity` slots in every slice.
    fn grow(&mut self, capacity: usize) {
        let (width, empty) = (self.width, &self.empty);
        for s in self.slices.iter_mut().chain(&mut self.spare) {
            s.accs.reserve_exact((capacity - self.capacity) * width);
            for _ in self.capacity..capacity {
                s.accs.extend_from_slice(empty);
            }
        }
        self.capacity = capacity;
    }

    /// Drops the key of `slot` if it has no data left.
    fn drop_if_empty(&mut self, slot: u32) {
        let i = slot as usize;
        if self.live[i] && self.open[i] == 0 {
            self.live[i] = false;
            if self.early_marks {
                self.triggered[i] = None; // (all `None` otherwise)
            }
            let key = self.keys[i];
            self.index.remove(key, |s| s == slot);
            self.free.push(slot);
        }
    }

    /// Approximate bytes of state.
    #[must_use]
    fn state_bytes(&self) -> usize {
        let overflow = |s: &Slice| {
            s.overflow.capacity() * (std::mem::size_of::<(u32, Overflow)>() + 1)
                + s.overflow.values().map(Layout::overflow_bytes).sum::<usize>()
        };
        let slices: usize = self
            .slices
            .iter()
            .chain(&self.spare)
            .map(|s| s.accs.capacity() * 8 + s.touched.capacity() * 4 + overflow(s))
            .sum();
        self.index.bytes()
            + self.keys.capacity() * 8
            + self.live.capacity()
            + self.open.capacity() * 4
            + self.fired.capacity() * 8
            + self.triggered.capacity() * 8
            + self
                .triggered
                .iter()
                .flatten()
                .map(|t| std::mem::size_of_val::<SmallVec<[i64; 2]>>(t))
                .sum::<usize>()
            + self.rank.capacity() * 4
            + (self.free.capacity() + self.doomed.capacity()) * 4
            + slices
    }

    /// Compacts the slots when fewer than a quarter are live (memory follows the live keys
    /// after a spike); only between batches, since slots change.
    fn shrink(&mut self) {
        let live = self.index.len();
        if self.in_batch || self.keys.len() <= MIN_SHRINK_SLOTS || live * 4 >= self.keys.len() {
            return;
        }
        let mut new_slot = vec![u32::MAX; self.keys.len()];
        let mut keys = Vec::with_capacity(live);
        let mut open = Vec::with_capacity(live);
        let mut triggered = Vec::with_capacity(live);
        for (i, slot) in new_slot.iter_mut().enumerate() {
            if self.live[i] {
                *slot = u32::try_from(keys.len()).expect("fewer slots than before");
                keys.push(self.keys[i]);
                open.push(self.open[i]);
                triggered.push(self.triggered[i].take());
            }
        }
        let width = self.width;
        for s in &mut self.slices {
            let mut accs = Vec::with_capacity(live * width);
            for (old, &new) in new_slot.iter().enumerate() {
                if new != u32::MAX {
                    accs.extend_from_slice(&s.accs[old * width..(old + 1) * width]);
                }
            }
            s.accs = accs;
            let mut touched: Vec<u32> = s
                .touched
                .iter()
                .map(|&old| new_slot[old as usize])
                .filter(|&new| new != u32::MAX && s.accs[new as usize * width] > 0)
                .collect();
            touched.sort_unstable();
            touched.dedup();
            s.touched = touched;
            s.stale = false;
            s.overflow = std::mem::take(&mut s.overflow)
                .into_iter()
                .filter_map(|(old, o)| {
                    Some(new_slot[old as usize]).filter(|&new| new != u32::MAX).map(|new| (new, o))
                })
                .collect();
        }
        self.spare = Vec::new();
        self.index = KeyIndex::with_capacity(live);
        for (slot, &key) in keys.iter().enumerate() {
            self.index.insert_new(key, u32::try_from(slot).expect("fewer slots than before"));
        }
        self.live = vec![true; live];
        self.fired = vec![i64::MIN; live];
        self.triggered = triggered;
        self.rank = vec![0; live];
        self.keys = keys;
        self.open = open;
        self.free = Vec::new();
        self.doomed = Vec::new();
        self.capacity = live;
    }

    // ------------------------------------------------------------------ slices

    /// Index in `slices` of the slice starting at `start`, created (empty) when absent.
    #[inline]
    fn slice_at(&mut self, start: i64, rules: &Rules, wm: i64) -> usize {
        if self.slices.get(self.last).is_some_and(|s| s.start == start) {
            return self.last;
        }
        let at = match self.slices.binary_search_by_key(&start, |s| s.start) {
            Ok(at) => at,
            Err(at) => {
                self.new_slice(at, start, rules, wm);
                at
            }
        };
        self.last = at;
        at
    }

    #[inline(never)]
    fn new_slice(&mut self, at: usize, start: i64, rules: &Rules, wm: i64) {
        let slice = match self.spare.pop() {
            Some(mut s) => {
                s.start = start;
                s
            }
            None => {
                let mut accs = Vec::with_capacity(self.capacity * self.width);
                for _ in 0..self.capacity {
                    accs.extend_from_slice(&self.empty);
                }
                Slice { start, accs, touched: Vec::new(), overflow: FxHashMap::default(), stale: false }
            }
        };
        self.slices.insert(at, slice);
        if let Some(end) = self.geo.first_unfired_end(start, wm) {
            self.next_fire = self.next_fire.min(end);
        }
        self.next_expiry = self.next_expiry.min(self.expiry(start, rules.allowed_lateness));
    }

    /// The accumulator of `slot` in slice `s`.
    #[inline]
    fn acc(&self, s: usize, slot: u32) -> &[u64] {
        let at = slot as usize * self.width;
        &self.slices[s].accs[at..at + self.width]
    }

    /// Indexes in `slices` of the slices inside `window`.
    fn slices_in(&self, window: (i64, i64)) -> std::ops::Range<usize> {
        self.slices.partition_point(|s| s.start < window.0)
            ..self.slices.partition_point(|s| s.start < window.1)
    }

    /// Whether some slice of `range` holds distinct values outside the bitmaps.
    fn overflows(&self, range: std::ops::Range<usize>) -> bool {
        self.slices[range].iter().any(|s| !s.overflow.is_empty())
    }

    /// Merges the non-empty accumulators of `slot` in `slices[range]` into `scratch`, and
    /// with `OVERFLOWS` (see [`PanesByTime::overflows`]) their overflows into `scratch_overflow`
    /// (else that is left as it is: empty).
    #[inline]
    fn combine<const OVERFLOWS: bool>(&mut self, layout: &Layout, slot: u32, range: std::ops::Range<usize>) {
        let at = slot as usize * self.width;
        self.scratch.copy_from_slice(&self.empty);
        if OVERFLOWS {
            Layout::reset_overflow(&mut self.scratch_overflow);
        }
        for s in &self.slices[range] {
            let acc = &s.accs[at..at + self.width];
            if acc[0] > 0 {
                let overflow = if OVERFLOWS { s.overflow.get(&slot) } else { None };
                layout.merge_flat(&mut self.scratch, &mut self.scratch_overflow, acc, overflow);
            }
        }
    }

    /// [`PanesByTime::combine`] with its overflows when `overflows`.
    fn combine_any(&mut self, layout: &Layout, slot: u32, range: std::ops::Range<usize>, overflows: bool) {
        if overflows {
            self.combine::<true>(layout, slot, range);
        } else {
            Layout::reset_overflow(&mut self.scratch_overflow);
            self.combine::<false>(layout, slot, range);
        }
    }

    /// [`PanesByTime::combine`] in the order `PanesPerKey` merges the windows of an event's pane when
    /// firing early (`WindowCombos`): the slices before `pivot` from the nearest back, then
    /// `pivot`, then the slices after it; float sums then round alike in both layouts.
    fn combine_around(&mut self, layout: &Layout, slot: u32, range: std::ops::Range<usize>, pivot: usize) {
        let (at, width) = (slot as usize * self.width, self.width);
        // (`before` may hold the suffixes of `prepare_combos`: its first accumulator is used.)
        let before = &mut self.before[..width];
        before.copy_from_slice(&self.empty);
        self.after.copy_from_slice(&self.empty);
        Layout::reset_overflow(&mut self.scratch_overflow);
        for j in (range.start..pivot).rev() {
            let s = &self.slices[j];
            let acc = &s.accs[at..at + width];
            if acc[0] > 0 {
                layout.merge_flat(before, &mut self.scratch_overflow, acc, s.overflow.get(&slot));
            }
        }
        for j in pivot + 1..range.end {
            let s = &self.slices[j];
            let acc = &s.accs[at..at + width];
            if acc[0] > 0 {
                layout.merge_flat(&mut self.after, &mut self.scratch_overflow, acc, s.overflow.get(&slot));
            }
        }
        self.scratch.copy_from_slice(&self.empty);
        let mut none = None;
        layout.merge_flat(&mut self.scratch, &mut none, &self.before[..width], None);
        let s = &self.slices[pivot];
        layout.merge_flat(
            &mut self.scratch,
            &mut self.scratch_overflow,
            &s.accs[at..at + width],
            s.overflow.get(&slot),
        );
        layout.merge_flat(&mut self.scratch, &mut none, &self.after, None);
    }

    // ------------------------------------------------------------------ events

    /// Adds an event with a distinct value outside the bitmaps (kept out of the per-event path).
    #[cold]
    #[inline(never)]
    fn add_overflowing(
        &mut self,
        layout: &Layout,
        s: usize,
        slot: u32,
        batch: &Batch<'_>,
        row: usize,
        t: i64,
    ) {
        let at = slot as usize * self.width;
        let slice = &mut self.slices[s];
        let overflow = slice.overflow.entry(slot).or_default();
        layout.add_flat(&mut slice.accs[at..at + self.width], Some(overflow), batch, row, t);
    }

    /// The rows an event of `key` causes in its windows (ends `ends.0` to `ends.1`) at
    /// watermark `wm`, its key in `slot` and its pane in slice `pivot` (see [`emit_for_event_windows`]); out of line, since most
    /// events of final-only windows cause none.
    #[inline(never)]
    fn emit_windows(
        &mut self,
        rules: &Rules,
        (key, slot, pivot): (i64, u32, usize),
        ends: (i64, i64),
        wm: i64,
        out: &mut Output,
    ) {
        let (size, slide) = (self.geo.size, self.geo.slide);
        let mut windows = SlotWindows { op: self, rules, slot, pivot, combos: None };
        emit_for_event_windows(rules, key, (size, slide), ends, wm, &mut windows, out);
    }

    /// The aggregates of `slot` in `window` (which contains slice `pivot`; windows come in end
    /// order) into `scratch`. Final-only windows merge their slices in order, as `PanesPerKey`
    /// fires them; with early firing, in the order of `PanesPerKey`'s `WindowCombos` (the slices
    /// before the pivot from the nearest back, the pivot, the slices after it), sharing the
    /// parts before the pivot between windows (`combos`, prepared on first use) unless some
    /// slice has an overflow.
    fn window_acc(
        &mut self,
        rules: &Rules,
        slot: u32,
        pivot: usize,
        window: (i64, i64),
        combos: &mut Option<EventCombos>,
    ) {
        let range = self.slices_in(window);
        if rules.emit == EmitMode::Final {
            return self.combine_any(&rules.layout, slot, range.clone(), self.overflows(range));
        }
        let c = *combos.get_or_insert_with(|| self.prepare_combos(&rules.layout, slot, pivot, range.start));
        if !c.shared {
            return self.combine_around(&rules.layout, slot, range, pivot);
        }
        let (layout, at, width) = (&rules.layout, slot as usize * self.width, self.width);
        let mut next_after = c.next_after;
        while next_after < range.end {
            let acc = &self.slices[next_after].accs[at..at + width];
            if acc[0] > 0 {
                layout.merge_flat(&mut self.after, &mut None, acc, None);
            }
            next_after += 1;
        }
        let k = range.start.max(c.lo) - c.lo;
        self.scratch.copy_from_slice(&self.empty);
        Layout::reset_overflow(&mut self.scratch_overflow);
        layout.merge_flat(&mut self.scratch, &mut None, &self.before[k * width..(k + 1) * width], None);
        layout.merge_flat(&mut self.scratch, &mut None, &self.slices[pivot].accs[at..at + width], None);
        layout.merge_flat(&mut self.scratch, &mut None, &self.after, None);
        *combos = Some(EventCombos { next_after, ..c });
    }

    /// The suffixes of `slot`'s slices from `lo` to `pivot` (excluded) into `before`, one
    /// accumulator each, the last one empty; `after` emptied.
    fn prepare_combos(&mut self, layout: &Layout, slot: u32, pivot: usize, lo: usize) -> EventCombos {
        let shared = !self.overflows(lo..self.slices.len());
        if shared {
            let (at, width) = (slot as usize * self.width, self.width);
            let n = pivot - lo + 1;
            self.before.resize(n * width, 0);
            self.before[(n - 1) * width..].copy_from_slice(&self.empty);
            for i in (0..n - 1).rev() {
                let (head, tail) = self.before.split_at_mut((i + 1) * width);
                head[i * width..].copy_from_slice(&tail[..width]);
                let acc = &self.slices[lo + i].accs[at..at + width];
                if acc[0] > 0 {
                    layout.merge_flat(&mut head[i * width..], &mut None, acc, None);
                }
            }
            self.after.copy_from_slice(&self.empty);
        }
        EventCombos { lo, next_after: pivot + 1, shared }
    }

    // ------------------------------------------------------------------ watermark

    /// The next firing and expiry times at watermark `wm`, from the live slices (after state
    /// was read: the watermark may have moved past ends scheduled before).
    fn reschedule(&mut self, wm: i64, lateness: i64) {
        let g = self.geo;
        self.next_fire =
            self.slices.iter().filter_map(|s| g.first_unfired_end(s.start, wm)).min().unwrap_or(i64::MAX);
        self.next_expiry = self.slices.first().map_or(i64::MAX, |s| self.expiry(s.start, lateness));
    }

    /// Earliest end after `end` of a window containing a live slice.
    fn next_end_after(&self, end: i64) -> i64 {
        let (g, next) = (self.geo, end + self.geo.slide);
        self.slices
            .iter()
            .filter(|s| g.last_end(s.start) >= next)
            .map(|s| next.max(g.first_end(s.start)))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Emits the window ending at `end` of every key with data in it, in key order (or only
    /// counts those rows, [`Rules::final_rows`] off).
    ///
    /// The keys are sorted first, giving each its row; the accumulators are then combined in
    /// slot order (a pass through the slices that the hardware prefetches) and each result
    /// written to its row.
    fn fire(&mut self, rules: &Rules, end: i64, out: &mut Output) {
        let layout = &rules.layout;
        let window = (end - self.geo.size, end);
        let range = self.slices_in(window);
        self.order.clear();
        for s in &self.slices[range.clone()] {
            for &slot in &s.touched {
                let i = slot as usize;
                if self.fired[i] != end {
                    self.fired[i] = end;
                    self.order.push((self.keys[i], slot));
                }
            }
        }
        if self.early_marks {
            self.forget_triggers(end);
        }
        if !rules.final_rows {
            return self.withhold_rows(range, out);
        }
        sort_by_key_radix(&mut self.order, &mut self.sort_tmp);
        let base = out.len();
        let rows = self.order.len();
        out.keys.extend(self.order.iter().map(|&(key, _)| key));
        out.extend_head(window, EmitKind::Final, rows);
        out.ints.iter_mut().for_each(|c| c.resize(base + rows, 0));
        out.floats.iter_mut().for_each(|c| c.resize(base + rows, 0.0));
        // Row of each slot, then the slots in slot order: all of them when most fire (a
        // sequential scan), else the listed ones sorted.
        for (row, &(_, slot)) in self.order.iter().enumerate() {
            self.rank[slot as usize] = u32::try_from(row).unwrap_or(u32::MAX);
        }
        self.by_slot.clear();
        if rows * 4 >= self.keys.len() {
            self.by_slot.extend((0..self.keys.len()).filter(|&i| self.fired[i] == end).map(|i| i as u32));
        } else {
            self.by_slot.extend(self.order.iter().map(|&(_, slot)| slot));
            self.by_slot.sort_unstable();
        }
        let emptied = if self.overflows(range.clone()) {
            self.combine_rows::<true>(layout, base, range.clone(), out)
        } else {
            Layout::reset_overflow(&mut self.scratch_overflow);
            self.combine_rows::<false>(layout, base, range.clone(), out)
        };
        if emptied {
            // Slots listed whose data was replaced since (`set_key`): no row for them.
            self.drop_empty_rows(layout, base, range, out);
        }
        // A key that fired changed its state bytes (its next window end and timer), as in
        // `PanesPerKey`: the changelog must say so, or a per-key reader would fire it again.
        self.book.changes.record_all(out.keys[base..].iter().copied());
    }

    /// The firing in progress without its rows: counts them ([`Output::withheld`]) and records
    /// their keys as changed, as `fire` does for the rows it builds.
    fn withhold_rows(&mut self, range: std::ops::Range<usize>, out: &mut Output) {
        // (In a slice that is not stale every slot listed has data, so every key of the firing
        // has a row; else check, as `drop_empty_rows` does.)
        let stale = self.slices[range.clone()].iter().any(|s| s.stale);
        let width = self.width;
        let mut rows = 0;
        for &(key, slot) in &self.order {
            let at = slot as usize * width;
            if stale && self.slices[range.clone()].iter().all(|s| s.accs[at] == 0) {
                continue;
            }
            rows += 1;
            self.book.changes.record(key);
        }
        out.withheld += rows;
    }

    /// Forgets the early-firing marks of the window ending at `end`, which fires now, for the
    /// keys of the firing in progress (as `PanesPerKey` does).
    fn forget_triggers(&mut self, end: i64) {
        for &(_, slot) in &self.order {
            let marks = &mut self.triggered[slot as usize];
            if let Some(t) = marks {
                t.retain(|e| *e > end);
                if t.is_empty() {
                    *marks = None;
                }
            }
        }
    }

    /// Combines the slots of the firing in progress in slot order, writing each result to its
    /// row; returns whether some slot had no data left (see `drop_empty_rows`).
    fn combine_rows<const OVERFLOWS: bool>(
        &mut self,
        layout: &Layout,
        base: usize,
        range: std::ops::Range<usize>,
        out: &mut Output,
    ) -> bool {
        let mut emptied = false;
        for n in 0..self.by_slot.len() {
            let slot = self.by_slot[n];
            self.combine::<OVERFLOWS>(layout, slot, range.clone());
            emptied |= self.scratch[0] == 0;
            let row = base + self.rank[slot as usize] as usize;
            layout.emit_flat_at(&self.scratch, &self.scratch_overflow, &mut out.ints, &mut out.floats, row);
        }
        emptied
    }

    /// Removes the rows from `base` on whose slot has no data in `range` (rare: see `fire`).
    #[cold]
    fn drop_empty_rows(
        &mut self,
        layout: &Layout,
        base: usize,
        range: std::ops::Range<usize>,
        out: &mut Output,
    ) {
        let mut keep = Vec::with_capacity(self.order.len());
        for n in 0..self.order.len() {
            self.combine::<true>(layout, self.order[n].1, range.clone());
            keep.push(self.scratch[0] > 0);
        }
        out.retain_rows_from(base, &keep);
    }

    /// Empties an expired slice's accumulators, drops keys left without data and keeps the
    /// slice for reuse.
    fn expire(&mut self, mut slice: Slice) {
        let width = self.width;
        for &slot in &slice.touched {
            let i = slot as usize;
            let acc = &mut slice.accs[i * width..(i + 1) * width];
            if acc[0] > 0 {
                acc.copy_from_slice(&self.empty);
                self.open[i] -= 1;
                self.panes -= 1;
                self.book.changes.record(self.keys[i]);
                if let (Some(cap), 0) = (&mut self.book.cap, self.open[i]) {
                    cap.remove();
                }
                if self.open[i] == 0 {
                    if self.in_batch {
                        self.doomed.push(slot);
                    } else {
                        self.drop_if_empty(slot);
                    }
                }
            }
        }
        slice.touched.clear();
        slice.overflow.clear();
        slice.stale = false;
        self.spare.push(slice);
    }

    // ------------------------------------------------------------------ state bytes

    /// Writes the state of the live key in `slot` as `PanesPerKey` would at watermark `wm`.
    fn write_slot(&self, layout: &Layout, slot: u32, wm: i64, lateness: i64, w: &mut Writer) {
        let g = self.geo;
        let panes: Vec<(i64, Acc)> = (0..self.slices.len())
            .filter(|&s| self.acc(s, slot)[0] > 0)
            .map(|s| {
                (
                    self.slices[s].start,
                    layout.acc_of_flat(self.acc(s, slot), self.slices[s].overflow_of(slot)),
                )
            })
            .collect();
        let next_end = panes.iter().filter_map(|&(start, _)| g.first_unfired_end(start, wm)).min();
        let next_end = next_end.unwrap_or(i64::MAX);
        let fire = if next_end == i64::MAX { i64::MAX } else { next_end - 1 };
        let cleanup = panes.first().map_or(i64::MAX, |&(start, _)| self.expiry(start, lateness));
        let triggered = self.triggered[slot as usize].as_deref().map_or(&[][..], |t| t.as_slice());
        write_key(layout, w, next_end, fire.min(cleanup), triggered, panes.iter().map(|(s, a)| (*s, a)));
    }

    /// Replaces the state of `key` by `panes` (none: the key is dropped).
    fn set_key(&mut self, rules: &Rules, key: i64, panes: &[(i64, Acc)], triggered: &[i64], wm: i64) {
        let layout = &rules.layout;
        if let Some(slot) = self.slot_of(key) {
            self.clear_slot(slot);
            self.drop_if_empty(slot);
        }
        if panes.is_empty() {
            return;
        }
        let slot = self.insert_key(key);
        let at = slot as usize * self.width;
        for (start, acc) in panes {
            let s = self.slice_at(*start, rules, wm);
            let slice = &mut self.slices[s];
            if let Some(overflow) = layout.flat_of_acc(acc, &mut slice.accs[at..at + self.width]) {
                slice.overflow.insert(slot, Some(overflow));
            }
            slice.touched.push(slot);
            self.open[slot as usize] += 1;
            self.panes += 1;
        }
        if !triggered.is_empty() {
            self.triggered[slot as usize] = Some(Box::new(triggered.iter().copied().collect()));
            self.early_marks = true;
        }
    }

    /// Reads what [`PanesByTime::write`] (or `PanesPerKey::write`) wrote, at watermark `wm`.
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn read(geo: Geometry, rules: &Rules, wm: i64, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut op = PanesByTime::new(geo, &rules.layout);
        for _ in 0..r.count()? {
            let key = r.i64()?;
            if op.slot_of(key).is_some() {
                return Err(crate::CoreError::Snapshot(format!("key {key} appears twice")));
            }
            let state = KeyPanes::read(&rules.layout, r)?;
            op.set_key(rules, key, &state.panes, &state.triggered, wm);
        }
        op.reschedule(wm, rules.allowed_lateness);
        Ok(op)
    }
}

impl WindowOperator for PanesByTime {
    fn state_size(&self) -> StateSize {
        StateSize::of((self.index.len(), self.panes, self.slices.len()), self.state_bytes())
    }

    keeps_book!();

    /// The start of the key's newest pane with data.
    fn recency(&self, key: i64) -> Option<i64> {
        self.slot_of(key).filter(|&s| self.open[s as usize] > 0).and_then(|s| self.newest_pane(s))
    }

    /// Drops the data of `key` without a row; its slot goes as when its last slice expires.
    fn evict(&mut self, key: i64) {
        let Some(slot) = self.slot_of(key) else { return };
        self.clear_slot(slot);
        if self.early_marks {
            self.triggered[slot as usize] = None;
        }
        if self.in_batch {
            self.doomed.push(slot);
        } else {
            self.drop_if_empty(slot);
        }
        self.book.changes.record(key);
    }

    /// The eviction order from the state (after it was read).
    fn rebuild_cap(&mut self) {
        if self.book.cap.is_none() {
            return;
        }
        let live: Vec<(i64, i64)> = (0..self.keys.len())
            .filter(|&i| self.live[i] && self.open[i] > 0)
            .filter_map(|i| Some((self.newest_pane(i as u32)?, self.keys[i])))
            .collect();
        if let Some(cap) = &mut self.book.cap {
            cap.rebuild(live);
        }
    }

    /// Resolves the slot of every key up front, inserting new keys (dropped by `end_batch`
    /// if all their events were late).
    fn begin_batch(&mut self, keys: &[i64], slots: &mut Vec<u32>) {
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + INDEX_PREFETCH) {
                self.index.prefetch(ahead);
            }
            let slot = match self.index.candidate(key) {
                Some(slot) => slot,
                None => {
                    let slot = self.insert_key(key);
                    self.doomed.push(slot);
                    slot
                }
            };
            slots.push(slot);
        }
        self.in_batch = true;
    }

    /// Prefetch hint for the accumulator that the event with `slot` will update (in the
    /// slice of the last event: nearly always the right one).
    #[inline]
    fn prefetch(&self, slots: &[u32], row: usize) {
        if let (Some(&slot), Some(s)) = (slots.get(row + PREFETCH_DISTANCE), self.slices.get(self.last)) {
            if let Some(acc) = s.accs.get(slot as usize * self.width) {
                crate::prefetch::prefetch(acc);
            }
        }
    }

    /// Adds the event at `row`, whose key was resolved to `slot` (re-checked here); `wm` is
    /// the watermark before it. Returns `false` when the event is later than allowed lateness
    /// for every window (state unchanged).
    #[inline]
    fn on_event(&mut self, rules: &Rules, event: Event<'_>, out: &mut Output) -> bool {
        let Event { key, t, row, slot, batch, wm } = event;
        let layout = &rules.layout;
        let lateness = rules.allowed_lateness;
        let PaneSpan { start: ps, first_end, last_end } = self.span.of(&self.geo, t);
        if last_end - 1 + lateness <= wm {
            return false;
        }
        // (A slot resolved from the index this batch holds a live key, since keys are only
        // dropped between batches; the key may differ, on a collision of 32-bit tags.)
        let slot = if self.keys.get(slot as usize) == Some(&key) { slot } else { self.slot_or_insert(key) };
        debug_assert!(self.live[slot as usize]);
        let s = self.slice_at(ps, rules, wm);
        let at = slot as usize * self.width;
        if self.slices[s].accs[at] == 0 {
            if self.book.cap.is_some() {
                self.admit(slot, key, ps);
            }
            self.slices[s].touched.push(slot);
            self.open[slot as usize] += 1;
            self.panes += 1;
        }
        if layout.fits_flat(batch, row) {
            layout.add_flat(&mut self.slices[s].accs[at..at + self.width], None, batch, row, t);
        } else {
            self.add_overflowing(layout, s, slot, batch, row, t);
        }
        self.book.changes.record(key);
        if first_end - 1 <= wm || !matches!(rules.emit, EmitMode::Final) {
            self.emit_windows(rules, (key, slot, s), (first_end, last_end), wm, out);
        }
        true
    }

    /// Whether [`PanesByTime::on_watermark`] would do something at watermark `wm`.
    #[inline]
    fn has_due(&self, wm: i64) -> bool {
        (self.next_fire != i64::MAX && self.next_fire - 1 <= wm) || self.next_expiry <= wm
    }

    /// Fires every window with `end - 1 <= wm` in end order (keys in key order within one
    /// end), then drops the slices past their cleanup time.
    #[inline(never)]
    fn on_watermark(&mut self, rules: &Rules, wm: i64, out: &mut Output) {
        while self.next_fire != i64::MAX && self.next_fire - 1 <= wm {
            let end = self.next_fire;
            self.fire(rules, end, out);
            self.next_fire = self.next_end_after(end);
        }
        let lateness = rules.allowed_lateness;
        while self.slices.first().is_some_and(|s| self.expiry(s.start, lateness) <= wm) {
            let slice = self.slices.remove(0);
            self.expire(slice);
        }
        self.last = 0;
        self.next_expiry = self.slices.first().map_or(i64::MAX, |s| self.expiry(s.start, lateness));
        if let Some(cap) = &mut self.book.cap {
            let g = self.geo;
            cap.expire(|ps| g.last_end(ps) - 1 + lateness <= wm);
        }
        if !self.in_batch {
            self.shrink();
        }
    }

    /// Drops the keys that ended the batch without data.
    fn end_batch(&mut self, _slots: &[u32], _keys: &[i64]) {
        for slot in std::mem::take(&mut self.doomed) {
            self.drop_if_empty(slot);
        }
        self.in_batch = false;
        self.shrink();
    }

    /// Writes every live key's state, in key order, in the format of `PanesPerKey::write`.
    fn snapshot(&self, ctx: StateContext<'_>, w: &mut Writer) {
        let (layout, wm, lateness) = (&ctx.rules.layout, ctx.wm, ctx.rules.allowed_lateness);
        let mut live: Vec<(i64, u32)> = (0..self.keys.len())
            .filter(|&i| self.live[i])
            .map(|i| (self.keys[i], u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        live.sort_unstable();
        w.count(live.len());
        for (key, slot) in live {
            w.i64(key);
            self.write_slot(layout, slot, wm, lateness, w);
        }
    }

    /// Writes the keys changed since the last call (tracking must be on), in key order: each
    /// with its state or as removed (the format of `PanesPerKey::write_changes`).
    fn write_changes(&mut self, ctx: StateContext<'_>, w: &mut Writer) {
        let (layout, wm, lateness) = (&ctx.rules.layout, ctx.wm, ctx.rules.allowed_lateness);
        let mut list: Vec<i64> = self.book.changes.take().into_iter().collect();
        list.sort_unstable();
        w.count(list.len());
        for key in list {
            w.i64(key);
            match self.slot_of(key).filter(|&s| self.open[s as usize] > 0) {
                Some(slot) => {
                    w.u8(1);
                    self.write_slot(layout, slot, wm, lateness, w);
                }
                None => w.u8(0),
            }
        }
    }

    /// Applies changes written by [`PanesByTime::write_changes`] (or `PanesPerKey::write_changes`).
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes (state unchanged).
    fn apply_changes(&mut self, ctx: StateContext<'_>, r: &mut Reader<'_>) -> CoreResult<()> {
        let (rules, wm) = (ctx.rules, ctx.wm);
        let n = r.count()?;
        let mut changes = Vec::with_capacity(n.min(r.remaining() / 9));
        for _ in 0..n {
            let key = r.i64()?;
            let state = if r.u8()? == 1 { Some(KeyPanes::read(&rules.layout, r)?) } else { None };
            changes.push((key, state));
        }
        for (key, state) in changes {
            match state {
                Some(state) => self.set_key(rules, key, &state.panes, &state.triggered, wm),
                None => self.set_key(rules, key, &[], &[], wm),
            }
        }
        self.reschedule(wm, rules.allowed_lateness);
        self.shrink();
        self.rebuild_cap();
        Ok(())
    }
}

/// The windows of one event of a key (in `slot`, pane slice `pivot`), as the emit decision
/// reads them: combined into the operator's scratch accumulator by `window_acc`.
struct SlotWindows<'a> {
    op: &'a mut PanesByTime,
    rules: &'a Rules,
    slot: u32,
    pivot: usize,
    combos: Option<EventCombos>,
}

impl EventWindow for SlotWindows<'_> {
    #[inline]
    fn aggregate(&mut self, _layout: &Layout, window: (i64, i64)) {
        self.op.window_acc(self.rules, self.slot, self.pivot, window, &mut self.combos);
    }

    fn emitted_before(&self) -> bool {
        self.op.scratch[0] > 1
    }

    fn triggered(&self, end: i64) -> bool {
        self.op.triggered[self.slot as usize].as_ref().is_some_and(|t| t.contains(&end))
    }

    fn mark_triggered(&mut self, end: i64) {
        self.op.triggered[self.slot as usize].get_or_insert_default().push(end);
        self.op.early_marks = true;
    }

    fn holds(&self, layout: &Layout, predicate: &Predicate) -> bool {
        let (acc, overflow) = (&self.op.scratch, &self.op.scratch_overflow);
        predicate.holds(&|agg| layout.value_flat(acc, overflow, agg))
    }

    fn push(&self, layout: &Layout, out: &mut Output, key: i64, window: (i64, i64), kind: EmitKind) {
        out.push_flat(layout, key, window, kind, (&self.op.scratch, &self.op.scratch_overflow));
    }
}
