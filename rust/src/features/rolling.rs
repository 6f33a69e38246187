//! Building blocks of the rolling feature state: compensated sums and counted multisets.
//!
//! Invariants:
//! - A [`CompensatedSum`] is updated by `add` / `sub` in event order (Neumaier's variant of
//!   Kahan summation), so a sum maintained over a sliding window does not drift with the number
//!   of events it has seen; the owner resets it when its window becomes empty.
//! - A [`Multiset`] holds exactly the values added and not yet removed, with their counts; a
//!   value whose count drops to zero is gone, so `distinct()` is exact.

use rustc_hash::FxHashMap;

/// A running sum with a compensation term (Neumaier summation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompensatedSum {
    sum: f64,
    comp: f64,
}

impl CompensatedSum {
    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// Subtracts `x`.
    #[inline]
    pub fn sub(&mut self, x: f64) {
        self.add(-x);
    }

    /// The compensated value.
    #[inline]
    #[must_use]
    pub fn value(&self) -> f64 {
        self.sum + self.comp
    }

    /// Back to exactly zero (when the window it sums over is empty).
    #[inline]
    pub fn reset(&mut self) {
        *self = CompensatedSum::default();
    }

    /// The raw parts, for snapshots.
    #[must_use]
    pub fn parts(&self) -> (f64, f64) {
        (self.sum, self.comp)
    }

    /// A sum from its raw parts.
    #[must_use]
    pub fn from_parts(sum: f64, comp: f64) -> Self {
        CompensatedSum { sum, comp }
    }
}

/// Values with multiplicities: exact distinct counts over a sliding window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multiset {
    counts: FxHashMap<i64, u32>,
}

impl Multiset {
    /// Adds one occurrence of `v`; returns how many there were before.
    #[inline]
    pub fn insert(&mut self, v: i64) -> u32 {
        let c = self.counts.entry(v).or_insert(0);
        *c += 1;
        *c - 1
    }

    /// Removes one occurrence of `v` (no-op when absent).
    #[inline]
    pub fn remove(&mut self, v: i64) {
        if let Some(c) = self.counts.get_mut(&v) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&v);
            }
        }
    }

    /// Occurrences of `v`.
    #[inline]
    #[must_use]
    pub fn count(&self, v: i64) -> u32 {
        self.counts.get(&v).copied().unwrap_or(0)
    }

    /// Number of distinct values.
    #[inline]
    #[must_use]
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Approximate heap bytes.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * 13
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_survives_cancellation() {
        let mut s = CompensatedSum::default();
        s.add(1e16);
        s.add(1.0);
        s.sub(1e16);
        assert_eq!(s.value(), 1.0);
        let mut naive = 0.0f64;
        let mut c = CompensatedSum::default();
        for i in 0..100_000 {
            let x = 0.1 * f64::from(i % 7);
            naive += x;
            c.add(x);
            if i >= 10 {
                let y = 0.1 * f64::from((i - 10) % 7);
                naive -= y;
                c.sub(y);
            }
        }
        let exact: f64 = (99_990..100_000).map(|i| 0.1 * f64::from(i % 7)).sum();
        assert!((c.value() - exact).abs() <= 1e-13, "{} vs {exact}", c.value());
        assert!((naive - exact).abs() > (c.value() - exact).abs());
    }

    #[test]
    fn multiset_counts_distinct_exactly() {
        let mut m = Multiset::default();
        assert_eq!(m.insert(3), 0);
        assert_eq!(m.insert(3), 1);
        m.insert(5);
        assert_eq!((m.distinct(), m.count(3)), (2, 2));
        m.remove(3);
        m.remove(3);
        m.remove(42);
        assert_eq!((m.distinct(), m.count(3)), (1, 0));
    }
}
