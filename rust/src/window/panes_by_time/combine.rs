//! Window aggregates of keys from their slices: a firing's keys merged in slot order, and one
//! key's slices as the shared window combiner reads them ([`crate::window::combine`]) for the
//! windows an event updated.

use super::{PanesByTime, Slice};
use crate::aggregate::{Layout, Overflow};
use crate::predicate::Predicate;
use crate::window::combine::{combine, PanesOfKey};
use crate::window::emit::{emit_for_event_windows, EventWindow};
use crate::window::output::{EmitKind, Output};
use crate::window::{EmitMode, Rules};

/// A flat accumulator and its distinct values outside the bitmaps: one window's (or part of
/// a window's) aggregates of one key.
#[derive(Debug)]
pub(super) struct FlatAcc {
    pub(super) words: Vec<u64>,
    pub(super) overflow: Overflow,
}

impl Clone for FlatAcc {
    fn clone(&self) -> Self {
        FlatAcc { words: self.words.clone(), overflow: self.overflow.clone() }
    }

    /// Keeps the allocations (the suffixes of `WindowCombos` are rebuilt per event).
    fn clone_from(&mut self, source: &Self) {
        self.words.copy_from_slice(&source.words);
        self.overflow.clone_from(&source.overflow);
    }
}

/// The slices of one key (in `slot`) as the shared window combiner reads them; empty
/// accumulators are skipped.
pub(super) struct SlotPanes<'a> {
    layout: &'a Layout,
    slices: &'a [Slice],
    empty: &'a [u64],
    slot: u32,
}

impl PanesOfKey for SlotPanes<'_> {
    type Acc = FlatAcc;

    #[inline]
    fn count(&self) -> usize {
        self.slices.len()
    }

    #[inline]
    fn start(&self, i: usize) -> i64 {
        self.slices[i].start
    }

    fn new_acc(&self) -> FlatAcc {
        FlatAcc { words: self.empty.to_vec(), overflow: None }
    }

    #[inline]
    fn reset(&self, acc: &mut FlatAcc) {
        acc.words.copy_from_slice(self.empty);
        Layout::reset_overflow(&mut acc.overflow);
    }

    #[inline]
    fn add_pane(&self, into: &mut FlatAcc, i: usize) {
        let (s, width) = (&self.slices[i], self.empty.len());
        let at = self.slot as usize * width;
        let acc = &s.accs[at..at + width];
        if acc[0] > 0 {
            self.layout.merge_flat(&mut into.words, &mut into.overflow, acc, s.overflow_of(self.slot));
        }
    }

    #[inline]
    fn add(&self, into: &mut FlatAcc, from: &FlatAcc) {
        let overflow = from.overflow.is_some().then_some(&from.overflow);
        self.layout.merge_flat(&mut into.words, &mut into.overflow, &from.words, overflow);
    }
}

impl PanesByTime {
    /// The accumulator of `slot` in slice `s`.
    #[inline]
    pub(super) fn acc(&self, s: usize, slot: u32) -> &[u64] {
        let at = slot as usize * self.width;
        &self.slices[s].accs[at..at + self.width]
    }

    /// Indexes in `slices` of the slices inside `window`.
    pub(super) fn slices_in(&self, window: (i64, i64)) -> std::ops::Range<usize> {
        self.slices.partition_point(|s| s.start < window.0)
            ..self.slices.partition_point(|s| s.start < window.1)
    }

    /// Whether some slice of `range` holds distinct values outside the bitmaps.
    pub(super) fn overflows(&self, range: std::ops::Range<usize>) -> bool {
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

    /// The rows an event of `key` causes in its windows (ends `ends.0` to `ends.1`) at
    /// watermark `wm`, its key in `slot` and its pane in slice `pivot` (see [`emit_for_event_windows`]); out of line, since most
    /// events of final-only windows cause none.
    #[inline(never)]
    pub(super) fn emit_windows(
        &mut self,
        rules: &Rules,
        (key, slot, pivot): (i64, u32, usize),
        ends: (i64, i64),
        wm: i64,
        out: &mut Output,
    ) {
        let (size, slide) = (self.geo.size, self.geo.slide);
        let mut windows = SlotWindows { op: self, rules, slot, pivot, ready: false };
        emit_for_event_windows(rules, key, (size, slide), ends, wm, &mut windows, out);
    }

    /// Combines the slots of the firing in progress in slot order, writing each result to its
    /// row; returns whether some slot had no data left (see `drop_empty_rows`).
    pub(super) fn combine_rows<const OVERFLOWS: bool>(
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
    pub(super) fn drop_empty_rows(
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
}

/// The windows of one event of a key (in `slot`, pane slice `pivot`), as the emit decision
/// reads them: combined into the operator's `window` accumulator by the shared combiner
/// (through its `combos`, prepared on first use, when firing early).
struct SlotWindows<'a> {
    op: &'a mut PanesByTime,
    rules: &'a Rules,
    slot: u32,
    pivot: usize,
    /// `op.combos` holds this event's slice.
    ready: bool,
}

impl EventWindow for SlotWindows<'_> {
    #[inline]
    fn aggregate(&mut self, layout: &Layout, window: (i64, i64)) {
        let op = &mut *self.op;
        let panes = SlotPanes { layout, slices: &op.slices, empty: &op.empty, slot: self.slot };
        if self.rules.emit == EmitMode::Final {
            return combine(&panes, window, &mut op.window);
        }
        if !self.ready {
            op.combos.start(&panes, self.pivot, window.0);
            self.ready = true;
        }
        op.combos.window(&panes, window, &mut op.window);
    }

    fn emitted_before(&self) -> bool {
        self.op.window.words[0] > 1
    }

    fn triggered(&self, end: i64) -> bool {
        self.op.triggered[self.slot as usize].as_ref().is_some_and(|t| t.contains(&end))
    }

    fn mark_triggered(&mut self, end: i64) {
        self.op.triggered[self.slot as usize].get_or_insert_default().push(end);
        self.op.early_marks = true;
    }

    fn holds(&self, layout: &Layout, predicate: &Predicate) -> bool {
        let w = &self.op.window;
        predicate.holds(&|agg| layout.value_flat(&w.words, &w.overflow, agg))
    }

    fn push(&self, layout: &Layout, out: &mut Output, key: i64, window: (i64, i64), kind: EmitKind) {
        let w = &self.op.window;
        out.push_flat(layout, key, window, kind, (&w.words, &w.overflow));
    }
}
