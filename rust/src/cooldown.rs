//! One alert per card per incident, in event time: the state and decisions behind
//! `fraudstream.alerts.Cooldown` (its docstring is the contract; `tests/oracle.py` holds the
//! plain Python it was, the property tests' oracle).
//!
//! A candidate at time `t` is kept unless the card's latest kept alert `last` satisfies
//! `|t - last| < period`; a kept candidate moves `last` forward. An entry more than twice the
//! period behind the newest candidate time seen so far (in the order given, this candidate
//! included) has expired: it suppresses nothing, and a kept candidate replaces it. Expired
//! entries are pruned now and then; as an expired entry counts as absent, when pruning happens
//! never changes a decision, and the snapshot holds the live entries only, sorted by card.

use rustc_hash::FxHashMap;

use crate::error::CoreError;

const MAGIC: &[u8; 4] = b"FSCD";
/// magic, newest (i64, `i64::MIN` for none), suppressed (u64), entries (u64).
const HEADER_BYTES: usize = 4 + 8 + 8 + 8;
/// Entries held before the first prune.
const PRUNE_FLOOR: usize = 4_096;

/// The cool-down's state: per card, the time of its latest kept alert.
#[derive(Debug, Clone)]
pub struct Cooldown {
    period: i64,
    last: FxHashMap<i64, i64>,
    newest: Option<i64>,
    suppressed: u64,
    prune_at: usize,
}

impl Cooldown {
    /// A cool-down of `period` ms (0: every candidate is kept).
    ///
    /// # Errors
    /// [`CoreError::Config`] for a negative period.
    pub fn new(period: i64) -> Result<Self, CoreError> {
        if period < 0 {
            return Err(CoreError::Config(format!("cool-down must be >= 0 ms, got {period}")));
        }
        Ok(Cooldown {
            period,
            last: FxHashMap::default(),
            newest: None,
            suppressed: 0,
            prune_at: PRUNE_FLOOR,
        })
    }

    /// Which candidates (`cards[i]` at `times[i]`, in the order given) are kept; the others
    /// count as suppressed.
    ///
    /// # Errors
    /// [`CoreError::LengthMismatch`] when the columns differ in length (nothing changes).
    pub fn decide(&mut self, cards: &[i64], times: &[i64]) -> Result<Vec<bool>, CoreError> {
        if cards.len() != times.len() {
            return Err(CoreError::LengthMismatch {
                column: "time".into(),
                expected: cards.len(),
                actual: times.len(),
            });
        }
        if cards.is_empty() {
            return Ok(Vec::new());
        }
        let mut keep = vec![self.period == 0; cards.len()];
        let mut newest = self.newest.unwrap_or(i64::MIN);
        let span = self.period.saturating_mul(2);
        for (i, (&card, &t)) in cards.iter().zip(times).enumerate() {
            newest = newest.max(t);
            if self.period == 0 {
                continue;
            }
            let last = self.last.entry(card).or_insert(i64::MIN);
            let live = *last != i64::MIN && *last >= newest.saturating_sub(span);
            if live {
                if t.abs_diff(*last) < self.period.unsigned_abs() {
                    continue;
                }
                *last = (*last).max(t);
            } else {
                *last = t;
            }
            keep[i] = true;
        }
        self.newest = Some(newest);
        let kept = keep.iter().filter(|&&k| k).count();
        self.suppressed += (cards.len() - kept) as u64;
        self.prune();
        Ok(keep)
    }

    /// Forgets `card`'s entry (a card evicted by the caller's cap starts afresh).
    pub fn forget(&mut self, card: i64) {
        self.last.remove(&card);
    }

    /// Whether `card` has an entry (live or not yet pruned).
    #[must_use]
    pub fn holds(&self, card: i64) -> bool {
        self.last.contains_key(&card)
    }

    /// Candidates suppressed so far.
    #[must_use]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Entries held (live or not yet pruned).
    #[must_use]
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Prunes expired entries once more than `entries` are held (tests: 0 prunes after every
    /// call, which must change no decision and no snapshot byte).
    pub fn prune_above(&mut self, entries: usize) {
        self.prune_at = entries;
    }

    fn horizon(&self) -> Option<i64> {
        self.newest.filter(|_| self.period > 0).map(|n| n.saturating_sub(self.period.saturating_mul(2)))
    }

    fn prune(&mut self) {
        if self.last.len() <= self.prune_at || self.newest.is_none() {
            return;
        }
        let horizon = self.horizon().unwrap_or(i64::MIN); // (no period: no entry is ever held)
        self.last.retain(|_, &mut last| last >= horizon);
        self.prune_at = PRUNE_FLOOR.max(2 * self.last.len());
    }

    /// Versioned bytes: the live entries (cards' last kept alert times, by card) and the
    /// counters; the same bytes as the Python implementation wrote.
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        let horizon = self.horizon();
        let mut live: Vec<(i64, i64)> = self
            .last
            .iter()
            .filter(|(_, &t)| horizon.is_none_or(|h| t >= h))
            .map(|(&c, &t)| (c, t))
            .collect();
        live.sort_unstable();
        let mut out = Vec::with_capacity(HEADER_BYTES + 16 * live.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.newest.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&self.suppressed.to_le_bytes());
        out.extend_from_slice(&(live.len() as u64).to_le_bytes());
        for (card, _) in &live {
            out.extend_from_slice(&card.to_le_bytes());
        }
        for (_, time) in &live {
            out.extend_from_slice(&time.to_le_bytes());
        }
        out
    }

    /// A cool-down of `period` ms with a snapshot's state.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for bytes that are not a whole cool-down snapshot.
    pub fn restore(period: i64, data: &[u8]) -> Result<Self, CoreError> {
        let mut c = Cooldown::new(period)?;
        let word = |at: usize| -> Option<[u8; 8]> { data.get(at..at + 8)?.try_into().ok() };
        let header = (word(4), word(12), word(20));
        let (Some(newest), Some(suppressed), Some(count)) = header else {
            return Err(CoreError::Snapshot(format!(
                "cool-down snapshot is truncated ({} bytes)",
                data.len()
            )));
        };
        let count = usize::try_from(u64::from_le_bytes(count)).unwrap_or(usize::MAX);
        let whole = count.checked_mul(16).and_then(|b| b.checked_add(HEADER_BYTES)) == Some(data.len());
        if &data[..4] != MAGIC || !whole {
            return Err(CoreError::Snapshot("not a cool-down snapshot (bad magic or length)".into()));
        }
        let at = |i: usize| i64::from_le_bytes(data[i..i + 8].try_into().unwrap_or([0; 8]));
        c.last.reserve(count);
        for i in 0..count {
            c.last.insert(at(HEADER_BYTES + 8 * i), at(HEADER_BYTES + 8 * (count + i)));
        }
        let newest = i64::from_le_bytes(newest);
        c.newest = (newest != i64::MIN).then_some(newest);
        c.suppressed = u64::from_le_bytes(suppressed);
        c.prune_at = PRUNE_FLOOR.max(2 * count);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_within_the_period_of_the_last_kept_one_are_suppressed() {
        let mut c = Cooldown::new(10).unwrap();
        let keep = c.decide(&[1, 1, 1, 2, 1], &[0, 5, 10, 5, 19]).unwrap();
        assert_eq!(keep, [true, false, true, true, false]);
        assert_eq!(c.suppressed(), 2);
    }

    #[test]
    fn an_expired_entry_suppresses_nothing_and_is_replaced() {
        let mut c = Cooldown::new(10).unwrap();
        c.decide(&[1], &[100]).unwrap();
        // card 2 at 125 moves the newest time: card 1's entry (100 < 125 - 20) has expired, so
        // a late candidate of card 1 at 95 is kept although |95 - 100| < 10
        assert_eq!(c.decide(&[2, 1], &[125, 95]).unwrap(), [true, true]);
    }

    #[test]
    fn a_zero_period_keeps_everything_and_holds_nothing() {
        let mut c = Cooldown::new(0).unwrap();
        assert_eq!(c.decide(&[1, 1], &[5, 5]).unwrap(), [true, true]);
        assert!(c.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_bad_bytes_are_refused() {
        let mut c = Cooldown::new(10).unwrap();
        c.decide(&[3, 1, 2, 1], &[0, 1, 2, 30]).unwrap();
        let bytes = c.snapshot();
        let r = Cooldown::restore(10, &bytes).unwrap();
        assert_eq!(r.snapshot(), bytes);
        assert_eq!(r.suppressed(), c.suppressed());
        assert!(Cooldown::restore(10, &bytes[..bytes.len() - 1]).is_err());
        assert!(Cooldown::restore(10, &bytes[..10]).is_err());
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(Cooldown::restore(10, &other).is_err());
    }

    #[test]
    fn pruning_changes_no_decision_and_no_byte() {
        let cards: Vec<i64> = (0..200).map(|i| i % 17).collect();
        let times: Vec<i64> = (0..200).map(|i| i * 7 - (i % 5) * 30).collect();
        let mut whole = Cooldown::new(50).unwrap();
        let want = whole.decide(&cards, &times).unwrap();
        let mut split = Cooldown::new(50).unwrap();
        let mut got = Vec::new();
        for (c, t) in cards.chunks(13).zip(times.chunks(13)) {
            split.prune_above(0);
            got.extend(split.decide(c, t).unwrap());
        }
        assert_eq!(got, want);
        assert_eq!(split.snapshot(), whole.snapshot());
    }
}
