//! A key's panes as the shared window combiner reads them ([`crate::window::combine`]).

use super::Pane;
use crate::aggregate::{Acc, Layout};
use crate::window::combine::PanesOfKey;

/// Whether [`crate::window::combine::combine`] of `window` would hold an event (without
/// combining).
pub(super) fn has_data(panes: &[Pane], window: (i64, i64)) -> bool {
    panes.iter().any(|p| p.start >= window.0 && p.start < window.1 && p.acc.count > 0)
}

/// The open panes of one key.
pub(super) struct PaneList<'a> {
    pub(super) layout: &'a Layout,
    pub(super) panes: &'a [Pane],
}

impl PanesOfKey for PaneList<'_> {
    type Acc = Acc;

    #[inline]
    fn count(&self) -> usize {
        self.panes.len()
    }

    fn new_acc(&self) -> Acc {
        self.layout.new_acc()
    }

    #[inline]
    fn start(&self, i: usize) -> i64 {
        self.panes[i].start
    }

    #[inline]
    fn reset(&self, acc: &mut Acc) {
        self.layout.reset(acc);
    }

    #[inline]
    fn add_pane(&self, into: &mut Acc, i: usize) {
        self.layout.merge(into, &self.panes[i].acc);
    }

    #[inline]
    fn add(&self, into: &mut Acc, from: &Acc) {
        self.layout.merge(into, from);
    }
}
