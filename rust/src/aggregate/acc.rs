//! The accumulator of one pane or session, and the views through which every aggregate reads
//! and writes it (or a flat accumulator: `[count, words...]` in a column of slices).

use smallvec::SmallVec;

use super::distinct::DistinctSet;

/// The running state of one pane or session.
///
/// Compact on purpose (56 bytes for up to four state words), since keyed state for many keys
/// is bound by cache misses: `words` holds the numeric slots (f64 bits), the time slots and one
/// bitmap per distinct count (its values in `[0, 64)`, e.g. small category codes); distinct
/// values outside that range go to `others`, allocated only when such a value occurs.
///
/// The default is an empty placeholder without state words (for storage slots not in use);
/// [`Layout::new_acc`] makes a real one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Acc {
    /// Events added.
    pub count: u64,
    pub(super) words: SmallVec<[u64; 4]>,
    pub(super) others: Overflow,
}

/// The distinct values of an accumulator outside its bitmaps, one set per distinct count
/// (allocated on first use; `None` while there is none). A flat accumulator keeps it beside
/// itself, where it has any.
pub type Overflow = Option<Box<SmallVec<[DistinctSet; 1]>>>;

impl Acc {
    /// Whether the accumulator holds heap data (distinct values outside the bitmap range, or
    /// more state words than fit inline).
    #[inline]
    #[must_use]
    pub fn has_heap(&self) -> bool {
        self.others.is_some() || self.words.spilled()
    }

    #[inline]
    pub(super) fn view(&self) -> AccRef<'_> {
        AccRef { count: self.count, words: &self.words, others: self.others.as_deref() }
    }

    #[inline]
    pub(super) fn view_mut(&mut self) -> AccMut<'_> {
        AccMut { count: &mut self.count, words: &mut self.words, others: Some(&mut self.others) }
    }
}

/// An accumulator's state, read: its count, its state words (f64 bits of the numeric slots,
/// the time slots, a bitmap per distinct count) and its distinct values outside the bitmaps.
/// Views an [`Acc`] or a flat accumulator (`[count, words...]`, no values outside the bitmaps):
/// one implementation of each aggregate for both.
#[derive(Clone, Copy)]
pub(super) struct AccRef<'a> {
    pub(super) count: u64,
    pub(super) words: &'a [u64],
    pub(super) others: Option<&'a SmallVec<[DistinctSet; 1]>>,
}

impl<'a> AccRef<'a> {
    #[inline]
    pub(super) fn flat(flat: &'a [u64], overflow: Option<&'a Overflow>) -> Self {
        AccRef { count: flat[0], words: &flat[1..], others: overflow.and_then(|o| o.as_deref()) }
    }

    #[inline]
    pub(super) fn num(&self, i: usize) -> f64 {
        f64::from_bits(self.words[i])
    }

    #[inline]
    pub(super) fn time(&self, i: usize) -> i64 {
        self.words[i] as i64
    }
}

/// An accumulator's state, written (see [`AccRef`]); `others` is `None` for a flat one.
pub(super) struct AccMut<'a> {
    pub(super) count: &'a mut u64,
    pub(super) words: &'a mut [u64],
    pub(super) others: Option<&'a mut Overflow>,
}

impl<'a> AccMut<'a> {
    #[inline]
    pub(super) fn flat(flat: &'a mut [u64], overflow: Option<&'a mut Overflow>) -> Self {
        let (count, words) = flat.split_first_mut().expect("a flat accumulator starts with its count");
        AccMut { count, words, others: overflow }
    }

    #[inline]
    pub(super) fn num(&self, i: usize) -> f64 {
        f64::from_bits(self.words[i])
    }

    #[inline]
    pub(super) fn set_num(&mut self, i: usize, x: f64) {
        self.words[i] = x.to_bits();
    }

    #[inline]
    pub(super) fn time(&self, i: usize) -> i64 {
        self.words[i] as i64
    }

    #[inline]
    pub(super) fn set_time(&mut self, i: usize, t: i64) {
        self.words[i] = t as u64;
    }
}
