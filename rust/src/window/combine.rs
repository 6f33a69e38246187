//! Window aggregates of one key from its panes, for every pane layout: each window's panes
//! merged in order ([`combine`]: final rows, late events of final-only windows), or through
//! [`WindowCombos`] when an event re-evaluates every open window of its pane (early firing).
//! Both layouts merge in these orders, so float sums round alike and they give the same bits.

/// One key's panes, by start ascending, and how their accumulators merge.
pub trait PanesOfKey {
    /// A window's (or a part of a window's) aggregates.
    type Acc: Clone;

    /// Number of panes.
    fn count(&self) -> usize;

    /// Start of pane `i`.
    fn start(&self, i: usize) -> i64;

    /// A fresh, empty accumulator.
    fn new_acc(&self) -> Self::Acc;

    /// Empties `acc` in place (keeps its allocations).
    fn reset(&self, acc: &mut Self::Acc);

    /// Folds pane `i` into `into`.
    fn add_pane(&self, into: &mut Self::Acc, i: usize);

    /// Folds `from` into `into`.
    fn add(&self, into: &mut Self::Acc, from: &Self::Acc);
}

/// The aggregates of `window` into `into`: its panes merged in start order.
#[inline(always)]
pub fn combine<P: PanesOfKey>(panes: &P, window: (i64, i64), into: &mut P::Acc) {
    panes.reset(into);
    // (A scan: a key has few panes.)
    for i in 0..panes.count() {
        let start = panes.start(i);
        if start >= window.0 && start < window.1 {
            panes.add_pane(into, i);
        }
    }
}

/// The first pane before `end` starting at or after `from` (`end` if none).
fn first_from<P: PanesOfKey>(panes: &P, end: usize, from: i64) -> usize {
    let (mut lo, mut hi) = (0, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if panes.start(mid) < from {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The aggregates of the windows containing one pane of a key, for its windows in end order,
/// with few merges: a window is (its panes before the pane) + the pane + (its panes after it).
/// The first parts are suffixes of the panes before, built once from the nearest back; the
/// last parts a running prefix of the panes after. For HOP(24 h, 1 h) that is about 3 merges
/// per window instead of up to 24.
#[derive(Debug, Clone)]
pub struct WindowCombos<A> {
    /// `suffixes[i]`: the panes from `lo + i` to the pane (excluded); the last one is empty.
    suffixes: Vec<A>,
    after: A,
    lo: usize,
    pane: usize,
    next_before: usize,
    next_after: usize,
}

impl<A: Clone> WindowCombos<A> {
    /// Combos with `empty` (an empty accumulator) as their running part after the pane.
    pub fn new(empty: A) -> Self {
        WindowCombos { suffixes: Vec::new(), after: empty, lo: 0, pane: 0, next_before: 0, next_after: 0 }
    }

    /// Prepares for the windows of pane `pane`, the earliest of which starts at or before
    /// `from`.
    pub fn start<P: PanesOfKey<Acc = A>>(&mut self, panes: &P, pane: usize, from: i64) {
        let lo = first_from(panes, pane, from);
        let n = pane - lo + 1;
        if self.suffixes.len() < n {
            self.suffixes.resize_with(n, || panes.new_acc());
        }
        panes.reset(&mut self.suffixes[n - 1]);
        for i in (0..n - 1).rev() {
            let (head, tail) = self.suffixes.split_at_mut(i + 1);
            head[i].clone_from(&tail[0]);
            panes.add_pane(&mut head[i], lo + i);
        }
        panes.reset(&mut self.after);
        (self.lo, self.pane, self.next_before, self.next_after) = (lo, pane, lo, pane + 1);
    }

    /// The aggregates of `window` (which contains the pane; ends ascending across calls).
    pub fn window<P: PanesOfKey<Acc = A>>(&mut self, panes: &P, window: (i64, i64), into: &mut A) {
        while self.next_before < self.pane && panes.start(self.next_before) < window.0 {
            self.next_before += 1;
        }
        while self.next_after < panes.count() && panes.start(self.next_after) < window.1 {
            panes.add_pane(&mut self.after, self.next_after);
            self.next_after += 1;
        }
        panes.reset(into);
        panes.add(into, &self.suffixes[self.next_before - self.lo]);
        panes.add_pane(into, self.pane);
        panes.add(into, &self.after);
    }
}
