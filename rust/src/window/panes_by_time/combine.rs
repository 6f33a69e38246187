//! Window aggregates of a key from its slices: each window's slices merged in order (final
//! rows, a firing's keys in slot order), or around the event's slice when an event
//! re-evaluates its open windows (early firing), in the order `PanesPerKey` merges them.

use super::PanesByTime;
use crate::aggregate::Layout;
use crate::predicate::Predicate;
use crate::window::emit::{emit_for_event_windows, EventWindow};
use crate::window::output::{EmitKind, Output};
use crate::window::{EmitMode, Rules};

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
