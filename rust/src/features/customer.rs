//! Per-card rolling state: counts, amount statistics and distinct values over several
//! trailing windows `(t - w, t]`, one deque per card shared by all its windows.
//!
//! Invariants (for a card whose latest advance was to time `t`):
//! - `entries` holds the card's transactions with time `> t - w_max` in stream order
//!   (time, then transaction id); `base` is the absolute index of `entries[0]`.
//! - For window `j`, `lo[j]` is the absolute index of the first entry with time `> t - w_j`;
//!   `base <= lo[j] <= base + len`, and `sum` and `sumsq` of window `j` cover exactly the
//!   entries from `lo[j]` to the end (sums reset to 0 when that range is empty).
//! - `countries` holds each country of the entries with the time of its latest entry: the
//!   distinct countries of window `j` are those whose latest time is `> t - w_j`.
//! - `seen` maps terminals to the latest time the card used them; an entry older than the
//!   longest window means "not used within it" and may be pruned (it is, once the map holds
//!   more than twice the entries), so the map stays proportional to the card's window.
//! - Every pointer only moves forward and every entry is added and removed once per window:
//!   O(number of windows) amortized work per transaction, whatever the window lengths.
//!
//! Features of a transaction are read after advancing to its time and before adding it
//! ("previous" statistics: the z-score, ratio, gap and first-seen terminal), then again after
//! adding it (the handbook's count and mean, which include the current transaction). Ties at
//! one millisecond are resolved by stream order: earlier transactions count, later do not.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::rolling::CompensatedSum;
use super::FeatureColumns;
use crate::snapshot::{Reader, Writer};
use crate::time::Millis;
use crate::CoreResult;

/// Smallest standard deviation used by the amount z-score (one cent).
pub const Z_STD_FLOOR: f64 = 0.01;
/// The amount z-score is clamped to `[-Z_CLIP, Z_CLIP]`.
pub const Z_CLIP: f64 = 50.0;
/// Smallest mean used by the amount ratio (one cent).
pub const RATIO_MEAN_FLOOR: f64 = 0.01;

#[derive(Debug, Clone, Copy)]
struct Entry {
    time: Millis,
    amount: f64,
    terminal: i64,
    country: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct WindowAcc {
    lo: u64,
    sum: CompensatedSum,
    sumsq: CompensatedSum,
}

/// The window lengths of the card features, and which one is longest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CustomerWindows {
    pub(crate) sizes: Vec<Millis>,
    pub(crate) longest: usize,
    pub(crate) countries: bool,
}

impl CustomerWindows {
    pub(crate) fn horizon(&self) -> Millis {
        self.sizes[self.longest]
    }
}

/// One card's state.
#[derive(Debug, Clone)]
pub(crate) struct CustomerState {
    entries: VecDeque<Entry>,
    base: u64,
    windows: SmallVec<[WindowAcc; 4]>,
    /// The countries of the entries, each with its latest time (empty unless countries are
    /// tracked). Inline for a few: a window's count is a scan of them, where a count per
    /// window in a hash map was a cache miss per window and event.
    countries: SmallVec<[(i64, Millis); 4]>,
    seen: FxHashMap<i64, Millis>,
    last_time: Millis,
}

/// One transaction's card-side inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CardEvent {
    pub(crate) time: Millis,
    pub(crate) amount: f64,
    pub(crate) terminal: i64,
    pub(crate) country: i64,
}

impl CustomerState {
    pub(crate) fn new(w: &CustomerWindows) -> Self {
        CustomerState {
            entries: VecDeque::new(),
            base: 0,
            windows: (0..w.sizes.len()).map(|_| WindowAcc::default()).collect(),
            countries: SmallVec::new(),
            seen: FxHashMap::default(),
            last_time: Millis::MIN,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    // the cast is lossless: offsets into the deque are < its length
    fn entry(&self, abs: u64) -> &Entry {
        &self.entries[(abs - self.base) as usize]
    }

    /// Moves every window to end at `t` and drops entries outside the longest one.
    pub(crate) fn advance(&mut self, w: &CustomerWindows, t: Millis) {
        let end = self.end();
        for j in 0..self.windows.len() {
            let boundary = t.saturating_sub(w.sizes[j]);
            let mut lo = self.windows[j].lo;
            while lo < end {
                let e = *self.entry(lo);
                if e.time > boundary {
                    break;
                }
                let acc = &mut self.windows[j];
                acc.sum.sub(e.amount);
                acc.sumsq.sub(e.amount * e.amount);
                lo += 1;
            }
            let acc = &mut self.windows[j];
            acc.lo = lo;
            if lo == end {
                acc.sum.reset();
                acc.sumsq.reset();
            }
        }
        let keep_from = self.windows[w.longest].lo;
        while self.base < keep_from && self.entries.pop_front().is_some() {
            self.base += 1;
        }
        if !self.countries.is_empty() {
            let since = t.saturating_sub(w.horizon());
            self.countries.retain(|(_, latest)| *latest > since);
        }
    }

    /// Records that the card used `country` at `t` (its latest use so far).
    fn used_country(&mut self, country: i64, t: Millis) {
        match self.countries.iter_mut().find(|(c, _)| *c == country) {
            Some((_, latest)) => *latest = t,
            None => self.countries.push((country, t)),
        }
    }

    /// Time of the card's latest transaction (`Millis::MIN` when none).
    pub(crate) fn latest(&self) -> Millis {
        self.last_time
    }

    /// Whether the state never held a transaction (as built by [`CustomerState::new`]).
    pub(crate) fn is_fresh(&self) -> bool {
        self.last_time == Millis::MIN
    }

    /// Whether nothing is left (the card may be dropped).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every transaction held is outside every window at any time `>= t`: the card
    /// can be dropped without changing a feature (a new state gives the same values).
    pub(crate) fn expired(&self, w: &CustomerWindows, t: Millis) -> bool {
        self.last_time <= t.saturating_sub(w.horizon())
    }

    /// Hints the CPU to fetch every entry held (what [`Self::write`] reads).
    #[inline]
    pub(crate) fn prefetch_held(&self) {
        let (a, b) = self.entries.as_slices();
        crate::prefetch::prefetch(a);
        crate::prefetch::prefetch(b);
    }

    /// Hints the CPU to fetch the entries the next advance reads.
    #[inline]
    pub(crate) fn prefetch_entries(&self) {
        for acc in &self.windows {
            // the cast is lossless: lo - base <= len
            if let Some(e) = self.entries.get((acc.lo - self.base) as usize) {
                crate::prefetch::prefetch(e);
            }
        }
        if let Some(e) = self.entries.back() {
            crate::prefetch::prefetch(e);
        }
    }

    /// Advances to the event, writes its card features to `out`, then adds it.
    pub(crate) fn on_event(&mut self, w: &CustomerWindows, ev: CardEvent, out: &mut FeatureColumns) {
        self.advance(w, ev.time);
        let end = self.end();
        let amount = ev.amount;
        // statistics of the previous transactions, per window
        for (j, acc) in self.windows.iter().enumerate() {
            let n = end - acc.lo;
            out.customer_amount_z[j].push(zscore(amount, n, acc.sum.value(), acc.sumsq.value()));
        }
        let longest = &self.windows[w.longest];
        let n_prev = end - longest.lo;
        out.customer_amount_ratio.push(ratio(amount, n_prev, longest.sum.value()));
        let horizon = w.horizon();
        let gap =
            if self.last_time == Millis::MIN { horizon } else { (ev.time - self.last_time).min(horizon) };
        out.customer_ms_since_prev.push(gap);
        let since = ev.time.saturating_sub(horizon);
        let seen = self.seen.insert(ev.terminal, ev.time).is_some_and(|used| used > since);
        out.customer_new_terminal.push(i8::from(!seen));
        if self.seen.len() > 2 * self.entries.len() + 16 {
            self.seen.retain(|_, used| *used > since);
        }
        // add the transaction
        self.entries.push_back(Entry { time: ev.time, amount, terminal: ev.terminal, country: ev.country });
        self.last_time = ev.time;
        if w.countries {
            self.used_country(ev.country, ev.time);
        }
        let end = end + 1;
        for (j, acc) in self.windows.iter_mut().enumerate() {
            acc.sum.add(amount);
            acc.sumsq.add(amount * amount);
            let n = end - acc.lo;
            out.customer_nb_tx[j].push(n as i64);
            out.customer_avg_amount[j].push(acc.sum.value() / n as f64);
            if w.countries {
                let since = ev.time.saturating_sub(w.sizes[j]);
                let distinct = self.countries.iter().filter(|(_, latest)| *latest > since).count();
                out.customer_countries[j].push(distinct as i64);
            }
        }
    }

    /// Approximate heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + if self.countries.spilled() { self.countries.capacity() * 16 } else { 0 }
            + self.seen.capacity() * 17
    }

    /// Number of transactions held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the state; window positions relative to the first entry held (absolute ones
    /// count every transaction this state ever held, which depends on whether the card's state
    /// was freed and created again in between: never a feature value).
    pub(crate) fn write(&self, out: &mut Writer) {
        out.i64(self.last_time);
        out.count(self.entries.len());
        for e in &self.entries {
            out.i64(e.time);
            out.f64(e.amount);
            out.i64(e.terminal);
            out.i64(e.country);
        }
        out.count(self.windows.len());
        for acc in &self.windows {
            out.u64(acc.lo - self.base);
            for s in [acc.sum, acc.sumsq] {
                let (sum, comp) = s.parts();
                out.f64(sum);
                out.f64(comp);
            }
        }
    }

    /// Reads what [`CustomerState::write`] wrote, or with `absolute` the first layout (the
    /// absolute position of the first entry, then positions absolute too).
    pub(crate) fn read(w: &CustomerWindows, r: &mut Reader<'_>, absolute: bool) -> CoreResult<Self> {
        let mut st = CustomerState::new(w);
        st.base = if absolute { r.u64()? } else { 0 };
        st.last_time = r.i64()?;
        let n = r.count()?;
        if st.base.checked_add(n as u64).is_none() {
            return Err(crate::CoreError::Snapshot(format!("card position {} out of range", st.base)));
        }
        for _ in 0..n {
            let e = Entry { time: r.i64()?, amount: r.f64()?, terminal: r.i64()?, country: r.i64()? };
            st.seen.insert(e.terminal, e.time);
            if w.countries {
                st.used_country(e.country, e.time);
            }
            st.entries.push_back(e);
        }
        r.expect_len(w.sizes.len(), "card windows")?;
        let end = st.end();
        for j in 0..w.sizes.len() {
            let lo = r.u64()?;
            if lo < st.base || lo > end {
                return Err(crate::CoreError::Snapshot(format!("card window pointer {lo} out of range")));
            }
            let sum = CompensatedSum::from_parts(r.f64()?, r.f64()?);
            let sumsq = CompensatedSum::from_parts(r.f64()?, r.f64()?);
            st.windows[j] = WindowAcc { lo, sum, sumsq };
        }
        Ok(st)
    }
}

/// Z-score of `amount` against `n` previous amounts with sum `s` and sum of squares `q`:
/// 0 with fewer than two; the standard deviation (sample) is floored at [`Z_STD_FLOOR`] and
/// the result clamped to `[-Z_CLIP, Z_CLIP]`.
#[must_use]
pub fn zscore(amount: f64, n: u64, s: f64, q: f64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let nf = n as f64;
    let mean = s / nf;
    let var = ((q - nf * mean * mean) / (nf - 1.0)).max(0.0);
    ((amount - mean) / var.sqrt().max(Z_STD_FLOOR)).clamp(-Z_CLIP, Z_CLIP)
}

/// `amount` over the mean of `n` previous amounts summing to `s` (the mean floored at
/// [`RATIO_MEAN_FLOOR`]); 1 when there are none.
#[must_use]
pub fn ratio(amount: f64, n: u64, s: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    amount / (s / n as f64).max(RATIO_MEAN_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(sizes: &[Millis]) -> CustomerWindows {
        let longest = (0..sizes.len()).max_by_key(|&i| sizes[i]).unwrap();
        CustomerWindows { sizes: sizes.to_vec(), longest, countries: true }
    }

    fn run(w: &CustomerWindows, events: &[(Millis, f64, i64, i64)]) -> FeatureColumns {
        let mut st = CustomerState::new(w);
        let mut out = FeatureColumns::new(w.sizes.len(), 0, w.countries, events.len());
        for &(time, amount, terminal, country) in events {
            st.on_event(w, CardEvent { time, amount, terminal, country }, &mut out);
        }
        out
    }

    #[test]
    fn windows_are_left_open_right_closed_and_include_the_current_transaction() {
        let w = windows(&[10, 100]);
        let out = run(&w, &[(0, 1.0, 1, 1), (10, 3.0, 2, 2), (11, 5.0, 1, 1), (110, 7.0, 3, 1)]);
        // at t=10 the window (0, 10] no longer holds t=0; (-90, 10] does
        assert_eq!(out.customer_nb_tx[0], vec![1, 1, 2, 1]);
        assert_eq!(out.customer_nb_tx[1], vec![1, 2, 3, 2]);
        assert_eq!(out.customer_avg_amount[0], vec![1.0, 3.0, 4.0, 7.0]);
        assert_eq!(out.customer_avg_amount[1], vec![1.0, 2.0, 3.0, 6.0]);
        assert_eq!(out.customer_countries[1], vec![1, 2, 2, 1]);
        assert_eq!(out.customer_new_terminal, vec![1, 1, 0, 1]);
        assert_eq!(out.customer_ms_since_prev, vec![100, 10, 1, 99]);
    }

    #[test]
    fn ties_count_earlier_transactions_only() {
        let w = windows(&[5]);
        let out = run(&w, &[(7, 2.0, 1, 0), (7, 4.0, 1, 0), (7, 6.0, 1, 0)]);
        assert_eq!(out.customer_nb_tx[0], vec![1, 2, 3]);
        assert_eq!(out.customer_avg_amount[0], vec![2.0, 3.0, 4.0]);
        assert_eq!(out.customer_ms_since_prev, vec![5, 0, 0]);
    }

    #[test]
    fn previous_statistics_exclude_the_current_transaction() {
        let w = windows(&[1_000]);
        let out = run(&w, &[(0, 10.0, 1, 0), (1, 20.0, 1, 0), (2, 60.0, 1, 0)]);
        assert_eq!(out.customer_amount_ratio, vec![1.0, 2.0, 4.0]);
        let z = (60.0 - 15.0) / 50f64.sqrt();
        assert_eq!(out.customer_amount_z[0], vec![0.0, 0.0, z]);
    }

    #[test]
    fn state_is_dropped_past_the_longest_window() {
        let w = windows(&[10, 50]);
        let mut st = CustomerState::new(&w);
        let mut out = FeatureColumns::new(2, 0, true, 4);
        for t in [0, 5, 20] {
            st.on_event(&w, CardEvent { time: t, amount: 1.0, terminal: t, country: 0 }, &mut out);
        }
        st.advance(&w, 55);
        assert_eq!(st.len(), 1, "only t=20 is inside (5, 55]");
        assert!(!st.expired(&w, 69));
        assert!(st.expired(&w, 70), "t=20 is outside (20, 70]");
        st.advance(&w, 70);
        assert!(st.is_empty());
        assert!(st.countries.is_empty());
    }

    #[test]
    fn zscore_and_ratio_edges() {
        assert_eq!(zscore(5.0, 1, 5.0, 25.0), 0.0);
        assert_eq!(zscore(5.0, 2, 10.0, 50.0), 0.0, "zero spread, equal amount");
        assert_eq!(zscore(1e6, 2, 10.0, 50.0), Z_CLIP);
        assert_eq!(ratio(3.0, 0, 0.0), 1.0);
        assert_eq!(ratio(3.0, 2, 0.0), 300.0);
    }
}
