//! Emitted window rows as columns, and the late side output.
//!
//! A row is `(key, window_start, window_end, kind, aggregates...)`. `kind` says why it was
//! emitted ([`EmitKind`]); integer aggregates (counts) and float aggregates go to separate
//! column groups in the order of the layout's [`crate::aggregate::OutputSlot`]s. Rows an
//! engine does not build (`final_rows` off, see [`super::Rules::final_rows`]) are only counted,
//! in [`Output::withheld`].

use crate::aggregate::{Acc, Layout, Overflow};

/// Why a row was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EmitKind {
    /// The watermark closed the window: its first complete result.
    Final = 0,
    /// A late event (within allowed lateness) changed a window already emitted.
    Update = 1,
    /// Early firing: the window is still open.
    Early = 2,
}

/// Rows emitted by one call, plus the rows of the input that were too late.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Key of each row.
    pub keys: Vec<i64>,
    /// Window start (inclusive).
    pub starts: Vec<i64>,
    /// Window end (exclusive).
    pub ends: Vec<i64>,
    /// [`EmitKind`] as `u8`.
    pub kinds: Vec<u8>,
    /// Integer aggregate columns.
    pub ints: Vec<Vec<i64>>,
    /// Float aggregate columns.
    pub floats: Vec<Vec<f64>>,
    /// Input rows (0-based within the call) later than allowed lateness for every window.
    pub late_rows: Vec<u64>,
    /// For each row: the input row (within the call) whose processing emitted it, or
    /// [`NO_TRIGGER`] when `advance_to`, `tick` or `flush` did.
    pub triggers: Vec<u64>,
    /// The trigger recorded by [`Output::push`]; set by the engine before each step.
    pub trigger: u64,
    /// `Final` and `Update` rows the windows produced but did not build
    /// ([`super::Rules::final_rows`] off): counted as emitted, so the engine's counters (and
    /// with them its state bytes) do not depend on that option.
    pub withheld: u64,
}

/// Trigger of rows emitted by `advance_to`, `tick` or `flush` rather than by an input row.
pub const NO_TRIGGER: u64 = u64::MAX;

impl Output {
    /// An empty output shaped for `layout`.
    #[must_use]
    pub fn for_layout(layout: &Layout) -> Self {
        let (ints, floats) = layout.output_widths();
        Output {
            ints: vec![Vec::new(); ints],
            floats: vec![Vec::new(); floats],
            trigger: NO_TRIGGER,
            ..Output::default()
        }
    }

    /// Number of emitted rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was emitted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Appends a row.
    #[inline]
    pub fn push(&mut self, layout: &Layout, key: i64, window: (i64, i64), kind: EmitKind, acc: &Acc) {
        self.push_head(key, window, kind);
        layout.emit(acc, &mut self.ints, &mut self.floats);
    }

    /// Appends a row of a flat accumulator and its overflow (see [`Layout::flat_width`]).
    #[inline]
    pub fn push_flat(
        &mut self,
        layout: &Layout,
        key: i64,
        window: (i64, i64),
        kind: EmitKind,
        acc: (&[u64], &Overflow),
    ) {
        self.push_head(key, window, kind);
        layout.emit_flat(acc.0, acc.1, &mut self.ints, &mut self.floats);
    }

    /// Appends window bounds, kind and trigger for `n` rows whose keys and aggregates the
    /// caller appends.
    pub fn extend_head(&mut self, window: (i64, i64), kind: EmitKind, n: usize) {
        self.starts.extend(std::iter::repeat_n(window.0, n));
        self.ends.extend(std::iter::repeat_n(window.1, n));
        self.kinds.extend(std::iter::repeat_n(kind as u8, n));
        self.triggers.extend(std::iter::repeat_n(self.trigger, n));
    }

    /// Keeps the rows from `base` on whose `keep` (one per such row) is true.
    pub fn retain_rows_from(&mut self, base: usize, keep: &[bool]) {
        fn retain<T: Copy>(col: &mut Vec<T>, base: usize, keep: &[bool]) {
            let mut to = base;
            for (from, &k) in (base..col.len()).zip(keep) {
                if k {
                    col[to] = col[from];
                    to += 1;
                }
            }
            col.truncate(to);
        }
        retain(&mut self.keys, base, keep);
        retain(&mut self.starts, base, keep);
        retain(&mut self.ends, base, keep);
        retain(&mut self.kinds, base, keep);
        retain(&mut self.triggers, base, keep);
        self.ints.iter_mut().for_each(|c| retain(c, base, keep));
        self.floats.iter_mut().for_each(|c| retain(c, base, keep));
    }

    #[inline]
    fn push_head(&mut self, key: i64, window: (i64, i64), kind: EmitKind) {
        self.keys.push(key);
        self.starts.push(window.0);
        self.ends.push(window.1);
        self.kinds.push(kind as u8);
        self.triggers.push(self.trigger);
    }

    /// Empties the output, keeping its allocations.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.starts.clear();
        self.ends.clear();
        self.kinds.clear();
        self.ints.iter_mut().for_each(Vec::clear);
        self.floats.iter_mut().for_each(Vec::clear);
        self.late_rows.clear();
        self.triggers.clear();
        self.withheld = 0;
    }

    /// Appends the rows of `from` (not its late rows) in increasing key order, stably.
    /// `by_key` and `tmp` are scratch space.
    pub fn append_by_key(&mut self, from: &Output, by_key: &mut Vec<(i64, u32)>, tmp: &mut Vec<(i64, u32)>) {
        /// Appends `from` permuted by `order`; a column of one repeated value (window bounds,
        /// kinds and triggers of rows fired together) is filled without a gather.
        fn put<T: Copy + Eq>(to: &mut Vec<T>, from: &[T], order: &[(i64, u32)]) {
            match from.first() {
                Some(&v) if from.iter().all(|&x| x == v) => to.extend(std::iter::repeat_n(v, from.len())),
                _ => gather(to, from, order),
            }
        }
        /// Appends `from` permuted by `order` (float columns: `==` is not identity there,
        /// 0.0 == -0.0 and NaN != NaN, so they are always gathered).
        fn gather<T: Copy>(to: &mut Vec<T>, from: &[T], order: &[(i64, u32)]) {
            to.extend(order.iter().map(|&(_, i)| from[i as usize]));
        }
        if from.keys.is_sorted() {
            self.keys.extend_from_slice(&from.keys);
            self.starts.extend_from_slice(&from.starts);
            self.ends.extend_from_slice(&from.ends);
            self.kinds.extend_from_slice(&from.kinds);
            self.triggers.extend_from_slice(&from.triggers);
            for (to, col) in self.ints.iter_mut().zip(&from.ints) {
                to.extend_from_slice(col);
            }
            for (to, col) in self.floats.iter_mut().zip(&from.floats) {
                to.extend_from_slice(col);
            }
            return;
        }
        by_key.clear();
        by_key.extend(from.keys.iter().zip(0u32..).map(|(&k, i)| (k, i)));
        sort_by_key_radix(by_key, tmp);
        self.keys.extend(by_key.iter().map(|&(k, _)| k));
        put(&mut self.starts, &from.starts, by_key);
        put(&mut self.ends, &from.ends, by_key);
        put(&mut self.kinds, &from.kinds, by_key);
        put(&mut self.triggers, &from.triggers, by_key);
        for (to, col) in self.ints.iter_mut().zip(&from.ints) {
            put(to, col, by_key);
        }
        for (to, col) in self.floats.iter_mut().zip(&from.floats) {
            gather(to, col, by_key);
        }
    }

    /// Appends all rows of `other`, with its late rows offset by `row_offset`.
    pub fn append(&mut self, mut other: Output, row_offset: u64) {
        self.keys.append(&mut other.keys);
        self.starts.append(&mut other.starts);
        self.ends.append(&mut other.ends);
        self.kinds.append(&mut other.kinds);
        for (a, b) in self.ints.iter_mut().zip(&mut other.ints) {
            a.append(b);
        }
        for (a, b) in self.floats.iter_mut().zip(&mut other.floats) {
            a.append(b);
        }
        self.late_rows.extend(other.late_rows.iter().map(|r| r + row_offset));
        self.triggers
            .extend(other.triggers.iter().map(|&r| if r == NO_TRIGGER { r } else { r + row_offset }));
        self.withheld += other.withheld;
    }
}

/// Sorts `(key, index)` pairs by key, stably (pairs of equal keys keep their order): a
/// least-significant-digit radix sort over the bytes of the key that differ between pairs.
/// `tmp` is scratch space.
pub fn sort_by_key_radix(v: &mut Vec<(i64, u32)>, tmp: &mut Vec<(i64, u32)>) {
    if v.len() < 256 {
        v.sort_by_key(|&(k, _)| k);
        return;
    }
    // Order-preserving map of i64 to u64 (flip the sign bit).
    let ukey = |k: i64| (k as u64) ^ (1 << 63);
    // Only the bits in which some keys differ are sorted on (keys of one stream mostly share
    // their high bits), in digits of up to 11 bits (2048 counters stay in L1): keys below
    // 2^22, say, take two passes instead of three bytes.
    let first = ukey(v[0].0);
    let differ = v.iter().fold(0u64, |d, &(k, _)| d | (ukey(k) ^ first));
    if differ == 0 {
        return;
    }
    let (low, high) = (differ.trailing_zeros(), 64 - differ.leading_zeros());
    let passes = (high - low).div_ceil(DIGIT_BITS);
    let width = (high - low).div_ceil(passes);
    let mask = (1u64 << width) - 1;
    let digit = |k: i64, pass: u32| ((ukey(k) >> (low + pass * width)) & mask) as usize;
    tmp.clear();
    tmp.resize(v.len(), (0, 0));
    let mut counts = vec![0usize; 1 << width];
    for pass in 0..passes {
        counts.fill(0);
        for &(k, _) in v.iter() {
            counts[digit(k, pass)] += 1;
        }
        let mut sum = 0;
        for c in &mut counts {
            let n = *c;
            *c = sum;
            sum += n;
        }
        // A stable scatter per digit, from the least significant.
        for &(k, i) in v.iter() {
            let d = digit(k, pass);
            tmp[counts[d]] = (k, i);
            counts[d] += 1;
        }
        std::mem::swap(v, tmp);
    }
}

/// Most bits of one radix digit (see [`sort_by_key_radix`]).
const DIGIT_BITS: u32 = 11;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Float columns move with their rows bit for bit: 0.0 == -0.0, so a column of zeros of
    /// both signs is not "one repeated value" (the oracle tests caught a max of -0.0 reported
    /// for a key that only saw 0.0).
    #[test]
    fn append_by_key_keeps_signed_zeros_with_their_rows() {
        let from = Output {
            keys: vec![2, 0, 1],
            starts: vec![0; 3],
            ends: vec![1; 3],
            kinds: vec![0; 3],
            ints: vec![vec![7, 7, 7]],
            floats: vec![vec![0.0, -0.0, 0.0], vec![f64::NAN, 1.0, f64::NAN]],
            triggers: vec![NO_TRIGGER; 3],
            ..Output::default()
        };
        let mut to = Output { ints: vec![Vec::new()], floats: vec![Vec::new(); 2], ..Output::default() };
        to.append_by_key(&from, &mut Vec::new(), &mut Vec::new());
        assert_eq!(to.keys, vec![0, 1, 2]);
        assert_eq!(to.ints, vec![vec![7, 7, 7]]);
        let bits = |col: &[f64]| col.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(&to.floats[0]), bits(&[-0.0, 0.0, 0.0]));
        assert_eq!(bits(&to.floats[1]), bits(&[1.0, f64::NAN, f64::NAN]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Equals a stable comparison sort, on keys from narrow and wide ranges, signs mixed.
        #[test]
        fn radix_sort_sorts(keys in prop_oneof![
            prop::collection::vec(any::<i64>(), 0..2000),
            prop::collection::vec(-300i64..300, 0..2000),
            prop::collection::vec(0i64..100_000, 0..2000),
            prop::collection::vec(prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0)], 0..600),
        ]) {
            // Indexes in no particular order, so that stability shows.
            let mut v: Vec<(i64, u32)> = keys.iter().zip(0u32..).map(|(&k, i)| (k, i.wrapping_mul(2_654_435_761))).collect();
            let mut want = v.clone();
            want.sort_by_key(|&(k, _)| k);
            let mut tmp = Vec::new();
            sort_by_key_radix(&mut v, &mut tmp);
            prop_assert_eq!(v, want);
        }
    }
}
