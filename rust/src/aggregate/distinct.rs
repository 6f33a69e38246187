//! Exact distinct counts: values in `[0, 64)` (small category codes, the common case) are bits
//! of one state word of the accumulator; the others go to a [`DistinctSet`] allocated only when
//! such a value occurs. A distinct count is the bitmap's popcount plus the set's length.

use rustc_hash::FxHashSet;
use smallvec::SmallVec;

use super::acc::{Acc, AccMut, AccRef};

/// Exact set of the values of a distinct count that the bitmap of an [`Acc`] does not hold
/// (outside `[0, 64)`): inline for the few values a card sees in a window, hashed beyond.
#[derive(Debug, Clone, PartialEq)]
pub enum DistinctSet {
    /// Up to [`DistinctSet::SMALL`] values, unsorted, scanned linearly.
    Small(SmallVec<[i64; 4]>),
    /// More values.
    Large(FxHashSet<i64>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Small(SmallVec::new())
    }
}

impl DistinctSet {
    /// Size at which the inline set becomes a hash set.
    pub const SMALL: usize = 32;

    /// Adds a value.
    #[inline]
    pub fn insert(&mut self, v: i64) {
        match self {
            DistinctSet::Small(s) => {
                if !s.contains(&v) {
                    if s.len() == Self::SMALL {
                        let mut h: FxHashSet<i64> = s.iter().copied().collect();
                        h.insert(v);
                        *self = DistinctSet::Large(h);
                    } else {
                        s.push(v);
                    }
                }
            }
            DistinctSet::Large(h) => {
                h.insert(v);
            }
        }
    }

    /// Number of distinct values.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Small(s) => s.len(),
            DistinctSet::Large(h) => h.len(),
        }
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in no particular order.
    pub fn values(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            DistinctSet::Small(s) => Box::new(s.iter().copied()),
            DistinctSet::Large(h) => Box::new(h.iter().copied()),
        }
    }

    pub(super) fn merge(&mut self, other: &DistinctSet) {
        match other {
            DistinctSet::Small(s) => s.iter().for_each(|&v| self.insert(v)),
            DistinctSet::Large(h) => h.iter().for_each(|&v| self.insert(v)),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            DistinctSet::Small(s) => s.clear(),
            DistinctSet::Large(_) => *self = DistinctSet::default(),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            DistinctSet::Small(s) if s.spilled() => s.capacity() * 8,
            DistinctSet::Small(_) => 0,
            DistinctSet::Large(h) => h.capacity() * 9,
        }
    }
}

/// Values of a distinct count below this bound (and not negative) live in a bitmap word.
pub(super) const BITMAP_VALUES: i64 = 64;

impl Acc {
    /// The values of a distinct set, sorted.
    pub(super) fn distinct_values(&self, word: usize, set: usize) -> Vec<i64> {
        let acc = self.view();
        let mut values: Vec<i64> = Vec::with_capacity(acc.distinct_len(word, set));
        let mut bits = acc.words[word];
        while bits != 0 {
            values.push(i64::from(bits.trailing_zeros()));
            bits &= bits - 1;
        }
        if let Some(o) = acc.others_of(set) {
            values.extend(o.values());
        }
        values.sort_unstable();
        values
    }
}

impl<'a> AccRef<'a> {
    pub(super) fn others_of(&self, set: usize) -> Option<&'a DistinctSet> {
        self.others.map(|o| &o[set])
    }

    #[inline]
    pub(super) fn distinct_len(&self, word: usize, set: usize) -> usize {
        self.words[word].count_ones() as usize + self.others_of(set).map_or(0, DistinctSet::len)
    }
}

impl AccMut<'_> {
    pub(super) fn others_mut(&mut self, set: usize, sets: usize) -> &mut DistinctSet {
        let others = self.others.as_deref_mut().expect(
            "a distinct value outside the bitmaps needs the accumulator's overflow (Layout::fits_flat)",
        );
        &mut others.get_or_insert_with(|| Box::new((0..sets).map(|_| DistinctSet::default()).collect()))[set]
    }

    /// Adds `v` to the distinct set with bitmap `word` and index `set` (of `sets`).
    #[inline]
    pub(super) fn insert_distinct(&mut self, word: usize, set: usize, sets: usize, v: i64) {
        if (0..BITMAP_VALUES).contains(&v) {
            self.words[word] |= 1u64 << v;
        } else {
            self.others_mut(set, sets).insert(v);
        }
    }
}
