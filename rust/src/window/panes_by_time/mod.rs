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

mod combine;
mod slots;
mod state;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use self::combine::FlatAcc;
use super::combine::WindowCombos;
use super::index::KeyIndex;
use super::operator::{Book, Event, StateContext, StateSize, WindowOperator, PREFETCH_DISTANCE};
use super::output::{sort_by_key_radix, EmitKind, Output};
use super::panes_per_key::KeyPanes;
use super::{EmitMode, Geometry, PaneSpan, Rules};
use crate::aggregate::{Layout, Overflow};
use crate::batch::Batch;
use crate::snapshot::{Reader, Writer};
use crate::CoreResult;

/// How many keys ahead `resolve_slots` prefetches index buckets.
const INDEX_PREFETCH: usize = 16;

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
    /// The aggregates of a window an event updated, and how they are combined when firing
    /// early (see [`crate::window::combine`]).
    window: FlatAcc,
    combos: Box<WindowCombos<FlatAcc>>,
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
            window: FlatAcc { words: layout.flat_empty(), overflow: None },
            combos: Box::new(WindowCombos::new(FlatAcc { words: layout.flat_empty(), overflow: None })),
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
