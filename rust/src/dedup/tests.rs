//! The duplicate filter against the session window engine it replaces (same events, same
//! batches: the same duplicates, evictions included), against an obvious oracle, and through
//! its state bytes.

use proptest::prelude::*;

use super::*;
use crate::aggregate::{AggKind, AggSpec};
use crate::batch::Batch;
use crate::engine::{EarlyFiring, Engine, EngineConfig};
use crate::window::output::EmitKind;
use crate::window::WindowSpec;

const T0: i64 = 1_700_000_000_000;

/// The session window engine as the Kafka partition task used it for duplicates.
fn engine(horizon: i64, delay: i64, max_ids: Option<usize>) -> Engine {
    let mut c = EngineConfig::new(
        WindowSpec::Session { gap: horizon },
        vec![AggSpec::new("n", AggKind::Count, None)],
    );
    c.out_of_orderness = delay;
    c.early = EarlyFiring::EveryUpdate;
    c.max_keys = max_ids;
    Engine::new(c).unwrap()
}

/// Rows of a batch that the engine says repeat an id: early rows counting 2 or more.
fn engine_repeats(e: &mut Engine, ids: &[i64], times: &[i64]) -> Vec<usize> {
    let out = e.process(&Batch::new(ids, times), None).unwrap();
    let mut rows: Vec<usize> = (0..out.kinds.len())
        .filter(|&i| out.kinds[i] == EmitKind::Early as u8 && out.ints[0][i] >= 2)
        .map(|i| out.triggers[i] as usize)
        .collect();
    rows.dedup();
    rows
}

/// `(id, start, end)`.
type Session = (i64, i64, i64);

/// The definition, one event at a time over a plain list of sessions.
struct Oracle {
    horizon: i64,
    delay: i64,
    cap: Option<usize>,
    max_time: i64,
    sessions: Vec<Session>,
    evicted: u64,
}

impl Oracle {
    fn event(&mut self, id: i64, t: i64) -> bool {
        let wm = self.max_time.saturating_sub(self.delay);
        let (start, end) = (t, t + self.horizon);
        let touching = |&(i, s, e): &Session| i == id && s <= end && e >= start;
        let repeat = self.sessions.iter().any(touching);
        if repeat || end - 1 > wm {
            if !repeat
                && !self.sessions.iter().any(|s| s.0 == id)
                && self.cap.is_some_and(|c| self.live() >= c)
            {
                let latest = |k: i64| self.sessions.iter().filter(|s| s.0 == k).map(|s| s.2).max().unwrap();
                let victim = self.sessions.iter().map(|s| (latest(s.0), s.0)).min().unwrap().1;
                self.sessions.retain(|s| s.0 != victim);
                self.evicted += 1;
            }
            let (merged, rest): (Vec<Session>, Vec<Session>) =
                self.sessions.iter().partition(|s| touching(s));
            let s = merged.iter().map(|m| m.1).fold(start, i64::min);
            let e = merged.iter().map(|m| m.2).fold(end, i64::max);
            self.sessions = rest;
            self.sessions.push((id, s, e));
        }
        self.max_time = self.max_time.max(t);
        let wm = self.max_time.saturating_sub(self.delay);
        self.sessions.retain(|s| s.2 - 1 > wm);
        repeat
    }

    fn live(&self) -> usize {
        let mut ids: Vec<i64> = self.sessions.iter().map(|s| s.0).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// Events with repeats, disorder and gaps around the horizon: ids from a small range, times
/// stepping forward with occasional jumps back.
fn events() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((0i64..12, -30i64..40), 1..160).prop_map(|steps| {
        let mut t = T0;
        steps
            .into_iter()
            .map(|(id, dt)| {
                t += dt;
                (id, t)
            })
            .collect()
    })
}

fn cuts(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut lo, mut x) = (0, seed | 1);
    while lo < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let hi = (lo + 1 + (x % 17) as usize).min(n);
        out.push((lo, hi));
        lo = hi;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Same duplicates as the session window engine, and as the oracle, batch by batch, with
    /// and without a cap; the evictions agree too.
    #[test]
    fn same_duplicates_as_the_session_engine(
        evs in events(), horizon in 1i64..60, delay in 0i64..25, cap in prop::option::of(1usize..6), seed in any::<u64>()
    ) {
        let mut f = DuplicateFilter::new(horizon, delay, cap).unwrap();
        let mut e = engine(horizon, delay, cap);
        let mut o = Oracle { horizon, delay, cap, max_time: i64::MIN, sessions: Vec::new(), evicted: 0 };
        let (ids, times): (Vec<i64>, Vec<i64>) = evs.iter().copied().unzip();
        for (lo, hi) in cuts(ids.len(), seed) {
            let got = f.process(&ids[lo..hi], &times[lo..hi]).unwrap();
            let want = engine_repeats(&mut e, &ids[lo..hi], &times[lo..hi]);
            let oracle: Vec<usize> = (lo..hi).filter(|&i| o.event(ids[i], times[i])).map(|i| i - lo).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(&got, &oracle);
            prop_assert_eq!(f.len(), o.live());
        }
        prop_assert_eq!(f.counters().evicted, e.counters().evicted);
        prop_assert_eq!(f.counters().evicted, o.evicted);
    }

    /// A snapshot with the changes after it, or the changes alone from the start, rebuild a
    /// filter that goes on exactly as the original, bytes included.
    #[test]
    fn state_bytes_rebuild_the_filter(
        evs in events(), horizon in 1i64..60, delay in 0i64..25, cap in prop::option::of(1usize..6), seed in any::<u64>()
    ) {
        let mut f = DuplicateFilter::new(horizon, delay, cap).unwrap();
        let empty = f.clone();
        f.track_changes(true);
        let mut from_changes = empty.clone();
        let mut snapshot_at = None;
        let mut after_snapshot: Vec<Vec<u8>> = Vec::new();
        let (ids, times): (Vec<i64>, Vec<i64>) = evs.iter().copied().unzip();
        let batches = cuts(ids.len(), seed);
        let half = batches.len() / 2;
        for (i, &(lo, hi)) in batches.iter().enumerate() {
            f.process(&ids[lo..hi], &times[lo..hi]).unwrap();
            let changes = f.take_changes();
            from_changes.apply_changes(&changes).unwrap();
            prop_assert_eq!(from_changes.snapshot(), f.snapshot());
            if i == half {
                snapshot_at = Some(f.snapshot());
            } else if i > half {
                after_snapshot.push(changes);
            }
        }
        let mut restored = empty.restore(snapshot_at.as_deref().unwrap()).unwrap();
        for c in &after_snapshot {
            restored.apply_changes(c).unwrap();
        }
        prop_assert_eq!(restored.snapshot(), f.snapshot());
        // and both go on alike
        let more: Vec<i64> = ids.iter().map(|i| i + 1).collect();
        prop_assert_eq!(restored.process(&more, &times).unwrap(), f.process(&more, &times).unwrap());
        prop_assert_eq!(restored.snapshot(), f.snapshot());
    }

    /// The window engine's sessions, taken over, give the duplicates the engine would have
    /// given (an upgrade keeps what the older version knew).
    #[test]
    fn adopting_the_engine_state_goes_on_alike(
        evs in events(), horizon in 1i64..60, delay in 0i64..25, cap in prop::option::of(1usize..6)
    ) {
        let (ids, times): (Vec<i64>, Vec<i64>) = evs.iter().copied().unzip();
        let half = ids.len() / 2;
        let mut e = engine(horizon, delay, cap);
        engine_repeats(&mut e, &ids[..half], &times[..half]);
        let mut f = DuplicateFilter::new(horizon, delay, cap).unwrap();
        f.adopt(&e.sessions().unwrap(), e.watermark(), e.counters().evicted).unwrap();
        let got = f.process(&ids[half..], &times[half..]).unwrap();
        prop_assert_eq!(got, engine_repeats(&mut e, &ids[half..], &times[half..]));
        prop_assert_eq!(f.counters().evicted, e.counters().evicted);
    }
}

#[test]
fn a_repeat_within_the_horizon_is_a_duplicate_and_one_after_it_is_not() {
    let mut f = DuplicateFilter::new(100, 0, None).unwrap();
    assert_eq!(f.process(&[1, 2, 1], &[T0, T0 + 10, T0 + 100]).unwrap(), vec![2]); // exactly 100 apart: one session
    assert_eq!(f.process(&[1], &[T0 + 201]).unwrap(), Vec::<usize>::new()); // the session [T0, T0+200) is gone
    assert_eq!(f.counters().duplicates, 1);
}

#[test]
fn a_late_event_is_not_judged_and_changes_nothing() {
    let mut f = DuplicateFilter::new(100, 0, None).unwrap();
    f.process(&[1], &[T0 + 1_000]).unwrap();
    assert!(f.process(&[2, 2], &[T0, T0 + 1]).unwrap().is_empty()); // both late: 2 is never held
    assert_eq!((f.len(), f.counters().late), (1, 2));
}

#[test]
fn the_cap_evicts_the_id_whose_latest_session_ends_first() {
    let mut f = DuplicateFilter::new(1_000, 0, Some(2)).unwrap();
    f.process(&[7, 3, 9], &[T0, T0 + 1, T0 + 2]).unwrap(); // 9 evicts 7 (latest end T0+1000)
    assert_eq!(f.counters().evicted, 1);
    assert!(f.process(&[3], &[T0 + 3]).unwrap() == vec![0]); // 3 is still held
    assert!(f.process(&[7], &[T0 + 4]).unwrap().is_empty()); // 7 was forgotten (and evicts 9)
}

#[test]
fn bad_input_is_refused_and_leaves_the_state() {
    let mut f = DuplicateFilter::new(100, 0, None).unwrap();
    let before = f.snapshot();
    assert!(matches!(f.process(&[1, 2], &[T0]), Err(CoreError::LengthMismatch { .. })));
    assert!(matches!(f.process(&[1, 2], &[T0, -5]), Err(CoreError::InvalidValue { row: 1, .. })));
    assert_eq!(f.snapshot(), before);
    assert!(DuplicateFilter::new(0, 0, None).is_err());
    assert!(DuplicateFilter::new(10, -1, None).is_err());
    assert!(DuplicateFilter::new(10, 0, Some(0)).is_err());
}

#[test]
fn state_of_another_kind_or_configuration_is_refused() {
    let mut f = DuplicateFilter::new(100, 5, None).unwrap();
    f.track_changes(true);
    f.process(&[1, 2], &[T0, T0 + 1]).unwrap();
    let (snap, changes) = (f.snapshot(), f.take_changes());
    assert!(DuplicateFilter::holds_state(&snap) && DuplicateFilter::holds_state(&changes));
    let other = DuplicateFilter::new(200, 5, None).unwrap();
    assert!(
        matches!(other.restore(&snap), Err(CoreError::Snapshot(m)) if m.contains("another configuration"))
    );
    assert!(matches!(f.restore(&changes), Err(CoreError::Snapshot(m)) if m.contains("expected")));
    let e = engine(100, 5, None).snapshot();
    assert!(!DuplicateFilter::holds_state(&e));
    assert!(f.restore(&e).is_err());
    let mut corrupt = snap.clone();
    corrupt[20] ^= 1;
    assert!(f.restore(&corrupt).is_err());
}
