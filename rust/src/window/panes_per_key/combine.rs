//! Window aggregates of a key from its panes: each window's panes merged directly (final
//! rows), or through [`WindowCombos`] when an event re-evaluates every open window of its pane.

use super::Pane;
use crate::aggregate::{Acc, Layout};

/// Whether [`combine`] of `window` would hold an event (without combining).
pub(super) fn has_data(panes: &[Pane], window: (i64, i64)) -> bool {
    panes.iter().any(|p| p.start >= window.0 && p.start < window.1 && p.acc.count > 0)
}

pub(super) fn combine(layout: &Layout, panes: &[Pane], window: (i64, i64), into: &mut Acc) {
    layout.reset(into);
    for pane in panes.iter().filter(|p| p.start >= window.0 && p.start < window.1) {
        layout.merge(into, &pane.acc);
    }
}

/// The aggregates of the windows containing one pane of a key, for its windows in end order,
/// with few merges: a window is (its panes before the pane) + the pane + (its panes after it).
/// The first parts are suffixes of the panes before, built once; the last parts a running
/// prefix of the panes after. For HOP(24 h, 1 h) that is about 3 merges per window instead of
/// up to 24 (an event re-evaluates every open window of its pane for early firing).
#[derive(Debug, Clone, Default)]
pub(super) struct WindowCombos {
    /// `suffixes[i]`: the panes from `lo + i` to the pane (excluded); the last one is empty.
    suffixes: Vec<Acc>,
    after: Acc,
    lo: usize,
    pane: usize,
    next_before: usize,
    next_after: usize,
}

impl WindowCombos {
    pub(super) fn new(layout: &Layout) -> Self {
        WindowCombos { after: layout.new_acc(), ..WindowCombos::default() }
    }

    /// Prepares for the windows of `panes[pane]`, the earliest of which starts at `from`.
    pub(super) fn start(&mut self, layout: &Layout, panes: &[Pane], pane: usize, from: i64) {
        let lo = panes[..pane].partition_point(|p| p.start < from);
        let n = pane - lo + 1;
        if self.suffixes.len() < n {
            self.suffixes.resize_with(n, || layout.new_acc());
        }
        layout.reset(&mut self.suffixes[n - 1]);
        for i in (0..n - 1).rev() {
            let (head, tail) = self.suffixes.split_at_mut(i + 1);
            head[i].clone_from(&tail[0]);
            layout.merge(&mut head[i], &panes[lo + i].acc);
        }
        layout.reset(&mut self.after);
        (self.lo, self.pane, self.next_before, self.next_after) = (lo, pane, lo, pane + 1);
    }

    /// The aggregates of `window` (which contains the pane; ends ascending across calls).
    pub(super) fn window(&mut self, layout: &Layout, panes: &[Pane], window: (i64, i64), into: &mut Acc) {
        while self.next_before < self.pane && panes[self.next_before].start < window.0 {
            self.next_before += 1;
        }
        while self.next_after < panes.len() && panes[self.next_after].start < window.1 {
            layout.merge(&mut self.after, &panes[self.next_after].acc);
            self.next_after += 1;
        }
        layout.reset(into);
        layout.merge(into, &self.suffixes[self.next_before - self.lo]);
        layout.merge(into, &panes[self.pane].acc);
        layout.merge(into, &self.after);
    }
}
