//! Session windows: per key, activity separated by gaps of at least `gap`.
//!
//! Invariants:
//! - An event at `t` opens `[t, t + gap)`; sessions that overlap or touch it merge into one
//!   (events exactly `gap` apart share a session). A key's sessions are sorted, disjoint and
//!   never touch.
//! - A session fires when the watermark reaches `end - 1` and is dropped at
//!   `end - 1 + allowed_lateness`. A late event that lands in (or merges into) a session that
//!   already fired re-emits it at once as an `Update`; one that extends a session past the
//!   watermark reopens it, and it fires again (as an `Update`) at its new end.
//! - An event that would open a new session already past its cleanup time is late.
//! - `emitted` and `closed` record what was due, whether or not the row was built
//!   ([`super::Rules::final_rows`]): the state does not depend on that option.
//! - With a cap on live keys ([`WindowOperator::set_max_keys`]), a new key that would exceed it
//!   first evicts the live key whose latest session ends first (its latest event is the
//!   oldest; ties by key): its sessions are dropped without a row and counted in
//!   [`SessionWindows::evicted`]. The order is a function of the state alone, so a restored
//!   engine evicts exactly what the original would have (see [`super::cap`]).

use smallvec::SmallVec;

use super::emit::{emit_for_event, EventWindow};
use super::keys::{
    apply_changes, read_states, shrink_if_sparse, write_changes, write_states, KeyTable, KeyedState, Recycle,
};
use super::operator::{Book, Event, StateContext, StateSize, WindowOperator};
use super::output::{EmitKind, Output};
use super::timers::TimerIndex;
use super::Rules;
use crate::aggregate::{Acc, Layout};
use crate::predicate::Predicate;
use crate::snapshot::{Reader, Writer};
use crate::CoreResult;

#[derive(Debug, Clone)]
struct Session {
    start: i64,
    end: i64,
    acc: Acc,
    /// A final or update row was emitted for this session.
    emitted: bool,
    /// The emission due at the current `end` was done.
    closed: bool,
    /// Early firing on the predicate happened.
    triggered: bool,
}

impl Session {
    fn next_action(&self, lateness: i64) -> i64 {
        if self.closed {
            self.end - 1 + lateness
        } else {
            self.end - 1
        }
    }
}

#[derive(Debug, Clone)]
struct KeyState {
    sessions: SmallVec<[Session; 1]>,
    timer: i64,
    /// Sequence number of the live timer entry.
    timer_seq: u64,
}

impl KeyState {
    fn new() -> Self {
        KeyState { sessions: SmallVec::new(), timer: i64::MAX, timer_seq: u64::MAX }
    }

    fn wanted_timer(&self, lateness: i64) -> i64 {
        self.sessions.iter().map(|s| s.next_action(lateness)).min().unwrap_or(i64::MAX)
    }
}

impl Recycle for KeyState {
    fn fresh() -> Self {
        KeyState::new()
    }

    fn recycle(&mut self) {
        *self = KeyState::new();
    }
}

/// Keyed session window state.
#[derive(Debug, Clone)]
pub struct SessionWindows {
    gap: i64,
    keys: KeyTable<KeyState>,
    timers: TimerIndex,
    sessions: usize,
    /// The keys changed since the changes were last written, and the cap on live keys.
    book: Book,
}

impl SessionWindows {
    /// Empty state for sessions with inactivity `gap`.
    #[must_use]
    pub fn new(gap: i64) -> Self {
        SessionWindows {
            gap,
            keys: KeyTable::default(),
            timers: TimerIndex::default(),
            sessions: 0,
            book: Book::default(),
        }
    }

    /// Approximate bytes of state.
    #[must_use]
    fn state_bytes(&self) -> usize {
        let heap: usize = self
            .keys
            .iter()
            .map(|(_, _, st)| {
                let spilled = if st.sessions.spilled() {
                    st.sessions.capacity() * std::mem::size_of::<Session>()
                } else {
                    0
                };
                spilled + st.sessions.iter().map(|s| Layout::heap_bytes(&s.acc)).sum::<usize>()
            })
            .sum();
        self.keys.table_bytes() + heap + self.timers.len() * 24
    }

    /// Reads what [`SessionWindows::write`] wrote.
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn read(gap: i64, layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut op = SessionWindows::new(gap);
        op.sessions = read_states(layout, r, &mut op.keys, &mut op.timers)?;
        Ok(op)
    }

    /// Under the cap: `key` (with the latest session end `before`, if any) gets an event that
    /// makes it `after`; a key without sessions is admitted, evicting first when the cap is
    /// reached.
    #[inline(never)]
    fn admit(&mut self, key: i64, before: Option<i64>, after: i64) {
        if before != Some(after) {
            self.record_recency(key, after, before.is_none());
        }
    }
}

impl SessionWindows {
    /// Every session as `(key, start, end)`: what a state kept in another form takes over.
    pub fn spans(&self) -> impl Iterator<Item = (i64, i64, i64)> + '_ {
        self.keys.iter().flat_map(|(_, key, st)| st.sessions.iter().map(move |s| (key, s.start, s.end)))
    }
}

impl WindowOperator for SessionWindows {
    fn state_size(&self) -> StateSize {
        StateSize::of((self.keys.len(), self.sessions, self.timers.len()), self.state_bytes())
    }

    keeps_book!();

    /// The end of the key's latest session.
    fn recency(&self, key: i64) -> Option<i64> {
        self.keys.slot_of(key).and_then(|s| self.keys.get(s, key)?.sessions.last().map(|s| s.end))
    }

    /// Drops `key`'s sessions without a row.
    fn evict(&mut self, key: i64) {
        if let Some(slot) = self.keys.slot_of(key) {
            self.sessions -= self.keys.get(slot, key).map_or(0, |st| st.sessions.len());
            self.keys.remove(slot); // its timer entries go stale
        }
        self.book.changes.record(key);
    }

    /// The eviction order from the state (after it was read).
    fn rebuild_cap(&mut self) {
        if let Some(cap) = &mut self.book.cap {
            cap.rebuild(self.keys.iter().filter_map(|(_, key, st)| st.sessions.last().map(|s| (s.end, key))));
        }
    }

    /// Adds the event at `row`; `wm` is the watermark before it. Returns `false` when late.
    fn on_event(&mut self, rules: &Rules, event: Event<'_>, out: &mut Output) -> bool {
        let Event { key, t, row, batch, wm, .. } = event;
        let layout = &rules.layout;
        let lateness = rules.allowed_lateness;
        let (start, end) = (t, t + self.gap);
        let overlaps = |s: &Session| s.start <= end && s.end >= start;
        let merges = self
            .keys
            .slot_of(key)
            .is_some_and(|slot| self.keys.get(slot, key).is_some_and(|st| st.sessions.iter().any(overlaps)));
        if !merges && end - 1 + lateness <= wm {
            return false;
        }
        // (The key's latest session end before this event: its place in the eviction order.)
        let before = if self.book.cap.is_some() { self.recency(key) } else { None };
        if self.book.cap.is_some() && before.is_none() {
            self.admit(key, None, end);
        }
        let slot = self.keys.slot_or_insert(key);
        self.book.changes.record(key);
        let st = self.keys.state_mut(slot);
        let lo = st.sessions.iter().position(|s| s.end >= start).unwrap_or(st.sessions.len());
        let hi = lo + st.sessions[lo..].iter().take_while(|s| s.start <= end).count();
        if lo == hi {
            let fresh = Session {
                start,
                end,
                acc: layout.new_acc(),
                emitted: false,
                closed: false,
                triggered: false,
            };
            st.sessions.insert(lo, fresh);
            self.sessions += 1;
        } else {
            let absorbed: SmallVec<[Session; 2]> = st.sessions.drain(lo + 1..hi).collect();
            self.sessions -= absorbed.len();
            let s = &mut st.sessions[lo];
            s.start = s.start.min(start);
            s.end = s.end.max(end);
            for other in &absorbed {
                s.end = s.end.max(other.end);
                layout.merge(&mut s.acc, &other.acc);
                s.emitted |= other.emitted;
                s.triggered |= other.triggered;
            }
        }
        let s = &mut st.sessions[lo];
        layout.add(&mut s.acc, batch, row, t);
        let fired = s.end - 1 <= wm;
        emit_for_event(rules, key, (s.start, s.end), wm, &mut SessionWindow(s), out);
        s.emitted |= fired;
        s.closed = fired;
        let timer = st.wanted_timer(lateness);
        if timer < st.timer {
            st.timer = timer;
            st.timer_seq = self.timers.push(timer, slot, key);
        }
        let after = st.sessions.last().map(|s| s.end);
        if let (Some(before), Some(after)) = (before, after) {
            self.admit(key, Some(before), after);
        }
        true
    }

    /// Fires sessions with `end - 1 <= wm` in time order and drops expired ones.
    fn on_watermark(&mut self, rules: &Rules, wm: i64, out: &mut Output) {
        let layout = &rules.layout;
        let lateness = rules.allowed_lateness;
        while let Some((time, mut entries)) = self.timers.pop_due(wm) {
            entries.sort_unstable_by_key(|&(_, key, _)| key); // rows of one time: by key
            for (slot, key, seq) in entries {
                let Some(st) = self.keys.get_checked(slot, key) else { continue };
                if st.timer_seq != seq {
                    continue;
                }
                self.book.changes.record(key);
                for s in st.sessions.iter_mut().filter(|s| !s.closed && s.end - 1 <= time) {
                    if rules.final_rows {
                        let kind = if s.emitted { EmitKind::Update } else { EmitKind::Final };
                        out.push(layout, key, (s.start, s.end), kind, &s.acc);
                    } else {
                        out.withheld += 1;
                    }
                    s.emitted = true;
                    s.closed = true;
                }
                let before = st.sessions.len();
                let latest = st.sessions.last().map(|s| s.end);
                st.sessions.retain(|s| !(s.closed && s.end - 1 + lateness <= time));
                self.sessions -= before - st.sessions.len();
                // (sessions go from the oldest: the latest end stays until the last one goes)
                if let (Some(cap), Some(_), true) = (&mut self.book.cap, latest, st.sessions.is_empty()) {
                    cap.remove();
                }
                if st.sessions.is_empty() {
                    self.keys.remove(slot);
                } else {
                    st.timer = st.wanted_timer(lateness);
                    st.timer_seq = self.timers.push(st.timer, slot, key);
                }
            }
        }
        if let Some(cap) = &mut self.book.cap {
            cap.expire(|end| end - 1 + lateness <= wm);
        }
        // (No slot is held across calls: the key table may be compacted.)
        shrink_if_sparse(&mut self.keys, &mut self.timers);
    }

    fn snapshot(&self, ctx: StateContext<'_>, w: &mut Writer) {
        write_states(&self.keys, &ctx.rules.layout, w);
    }

    fn write_changes(&mut self, ctx: StateContext<'_>, w: &mut Writer) {
        write_changes(&self.keys, &ctx.rules.layout, &mut self.book.changes.take(), w);
    }

    /// Applies changes written by [`SessionWindows::write_changes`].
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    fn apply_changes(&mut self, ctx: StateContext<'_>, r: &mut Reader<'_>) -> CoreResult<()> {
        let delta = apply_changes(&ctx.rules.layout, r, &mut self.keys, &mut self.timers)?;
        self.sessions = self.sessions.saturating_add_signed(delta);
        shrink_if_sparse(&mut self.keys, &mut self.timers);
        self.rebuild_cap();
        Ok(())
    }
}

/// A session an event went into, as the emit decision reads it (its aggregates are kept whole:
/// nothing to combine).
struct SessionWindow<'a>(&'a mut Session);

impl EventWindow for SessionWindow<'_> {
    fn aggregate(&mut self, _layout: &Layout, _window: (i64, i64)) {}

    fn emitted_before(&self) -> bool {
        self.0.emitted
    }

    fn triggered(&self, _end: i64) -> bool {
        self.0.triggered
    }

    fn mark_triggered(&mut self, _end: i64) {
        self.0.triggered = true;
    }

    fn holds(&self, layout: &Layout, predicate: &Predicate) -> bool {
        predicate.eval(layout, &self.0.acc)
    }

    fn push(&self, layout: &Layout, out: &mut Output, key: i64, window: (i64, i64), kind: EmitKind) {
        out.push(layout, key, window, kind, &self.0.acc);
    }
}

impl KeyedState for KeyState {
    fn write(&self, layout: &Layout, w: &mut Writer) {
        w.i64(self.timer);
        w.count(self.sessions.len());
        for s in &self.sessions {
            w.i64(s.start);
            w.i64(s.end);
            w.u8(u8::from(s.emitted) | u8::from(s.closed) << 1 | u8::from(s.triggered) << 2);
            layout.write_acc(&s.acc, w);
        }
    }

    fn read(layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut st = KeyState::new();
        st.timer = r.i64()?;
        for _ in 0..r.count()? {
            let (start, end, flags) = (r.i64()?, r.i64()?, r.u8()?);
            let acc = layout.read_acc(r)?;
            st.sessions.push(Session {
                start,
                end,
                acc,
                emitted: flags & 1 != 0,
                closed: flags & 2 != 0,
                triggered: flags & 4 != 0,
            });
        }
        Ok(st)
    }

    fn timer(&self) -> i64 {
        self.timer
    }

    fn set_timer_seq(&mut self, seq: u64) {
        self.timer_seq = seq;
    }

    /// The timer, the count and one session: start, end, flags, count and the lengths of its
    /// slot lists.
    const MIN_WRITTEN: usize = 8 + 8 + 8 + 8 + 1 + 8 + 3 * 8;

    fn windows(&self) -> usize {
        self.sessions.len()
    }
}
