//! Building blocks of the rolling feature state: compensated sums.
//!
//! Invariants:
//! - A [`CompensatedSum`] is updated by `add` / `sub` in event order (Neumaier's variant of
//!   Kahan summation), so a sum maintained over a sliding window does not drift with the number
//!   of events it has seen; the owner resets it when its window becomes empty.

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
}
