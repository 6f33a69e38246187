//! Duplicate transaction ids: which events repeat an id seen within a horizon of event time.
//!
//! The semantics are those of a session window per id with gap `horizon`, counting its events,
//! under a bounded out-of-orderness watermark (what the Kafka partition task ran before, on the
//! window engine): an event is a duplicate when it joins a live session of its id. Exactly:
//! - An event at `t` opens `[t, t + horizon)`; it merges with the id's sessions that overlap
//!   or touch it (occurrences exactly `horizon` apart are one session). It is a duplicate iff
//!   it merged with at least one.
//! - The watermark is `max event time seen - delay`, advanced after every event. A session is
//!   dropped once the watermark reaches `end - 1`. An event that merges with nothing and whose
//!   own session would already be dropped is late: not a duplicate, and the state is unchanged.
//! - With `max_ids`, an event that would make one id too many first evicts the live id whose
//!   latest session ends first (ties: the smaller id), counted in `evicted`.
//!
//! Against the window engine this keeps 2 numbers per session instead of a window with its
//! aggregates, flags, timer entry and output row: about a third of the memory and of the
//! changelog bytes per id, and a fraction of the time per event.
//!
//! State bytes ([`DuplicateFilter::snapshot`], [`DuplicateFilter::take_changes`]) are
//! versioned, checksummed ([`crate::snapshot`]) and a function of the state alone: ids in
//! order. A change record holds the ids that changed since the last one (with their sessions,
//! or as gone when evicted) and the latest event time; sessions that expired are not written:
//! applying a record advances the watermark, which drops them again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::snapshot::{Reader, Writer};
use crate::time::{is_valid_event_time, MAX_EVENT_TIME, MIN_EVENT_TIME};
use crate::{CoreError, CoreResult};

/// A session of one id: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    end: i64,
}

/// An id's sessions: sorted, disjoint, never touching (almost always one).
type Spans = SmallVec<[Span; 1]>;

const SNAPSHOT: u8 = b'D';
const CHANGES: u8 = b'd';

/// Session ends in the order they expire: ends pushed in order go to a queue (the usual case,
/// event time mostly increasing), the others to a heap. Entries are `(end, id)`; one is stale
/// once its session is gone or extended (checked against the state when popped).
#[derive(Debug, Clone, Default)]
struct Expiry {
    in_order: VecDeque<(i64, i64)>,
    out_of_order: BinaryHeap<Reverse<(i64, i64)>>,
}

impl Expiry {
    fn push(&mut self, end: i64, id: i64) {
        if self.in_order.back().is_none_or(|&(last, _)| last <= end) {
            self.in_order.push_back((end, id));
        } else {
            self.out_of_order.push(Reverse((end, id)));
        }
    }

    fn peek(&self) -> Option<(i64, i64)> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(&a), Some(&Reverse(b))) => Some(a.min(b)),
            (Some(&a), None) => Some(a),
            (None, Some(&Reverse(b))) => Some(b),
            (None, None) => None,
        }
    }

    fn pop(&mut self) -> Option<(i64, i64)> {
        let first = self.peek()?;
        if self.in_order.front() == Some(&first) {
            self.in_order.pop_front()
        } else {
            self.out_of_order.pop().map(|Reverse(e)| e)
        }
    }

    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    /// Entries rebuilt from the live sessions only (drops the stale ones).
    fn rebuild(ids: &FxHashMap<i64, Spans>) -> Self {
        let mut all: Vec<(i64, i64)> =
            ids.iter().flat_map(|(&id, spans)| spans.iter().map(move |s| (s.end, id))).collect();
        all.sort_unstable();
        Expiry { in_order: all.into(), out_of_order: BinaryHeap::new() }
    }
}

/// Counters since creation (restored with the state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DuplicateCounters {
    /// Events given.
    pub events: u64,
    /// Events found to repeat a live id.
    pub duplicates: u64,
    /// Events too late to be judged (passed on as not duplicates).
    pub late: u64,
    /// Ids evicted by the cap.
    pub evicted: u64,
}

/// The duplicate detector of one input partition (see the module docs).
#[derive(Debug, Clone)]
pub struct DuplicateFilter {
    horizon: i64,
    delay: i64,
    max_ids: Option<usize>,
    /// Latest event time seen (`i64::MIN` before the first).
    max_time: i64,
    ids: FxHashMap<i64, Spans>,
    sessions: usize,
    expiry: Expiry,
    /// Ids changed since the last change record, while recording (repeats allowed).
    changed: Option<Vec<i64>>,
    counters: DuplicateCounters,
}

impl DuplicateFilter {
    /// A filter for ids repeated within `horizon` ms (> 0) of event time, with a watermark
    /// `delay` ms (>= 0) behind the latest event time, holding at most `max_ids` ids.
    ///
    /// # Errors
    /// [`CoreError::Config`] for a horizon <= 0, a negative delay or a cap of 0.
    pub fn new(horizon: i64, delay: i64, max_ids: Option<usize>) -> CoreResult<Self> {
        if horizon <= 0 || horizon > MAX_EVENT_TIME {
            return Err(CoreError::Config(format!(
                "the duplicate horizon must be in (0, {MAX_EVENT_TIME}] ms, got {horizon}"
            )));
        }
        if !(0..=MAX_EVENT_TIME).contains(&delay) {
            return Err(CoreError::Config(format!(
                "the out-of-orderness must be in [0, {MAX_EVENT_TIME}] ms, got {delay}"
            )));
        }
        if max_ids == Some(0) {
            return Err(CoreError::Config("max_ids must be >= 1 (None: unbounded)".into()));
        }
        Ok(DuplicateFilter {
            horizon,
            delay,
            max_ids,
            max_time: i64::MIN,
            ids: FxHashMap::default(),
            sessions: 0,
            expiry: Expiry::default(),
            changed: None,
            counters: DuplicateCounters::default(),
        })
    }

    /// The watermark (`i64::MIN` before the first event).
    #[must_use]
    pub fn watermark(&self) -> i64 {
        self.max_time.saturating_sub(self.delay)
    }

    /// Live ids.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Counters since creation.
    #[must_use]
    pub fn counters(&self) -> DuplicateCounters {
        self.counters
    }

    /// Approximate bytes of state.
    #[must_use]
    pub fn state_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(i64, Spans)>() + 1;
        let spilled: usize = self.ids.values().filter(|s| s.spilled()).map(|s| s.capacity() * 16).sum();
        self.ids.capacity() * entry + spilled + self.expiry.len() * 16
    }

    /// The rows of `ids` (with event times `times`) that repeat an id, in row order; the state
    /// takes every row. A batch gives what the events one by one give.
    ///
    /// # Errors
    /// [`CoreError::LengthMismatch`] or [`CoreError::InvalidValue`] (an event time outside
    /// the supported range), the state unchanged.
    pub fn process(&mut self, ids: &[i64], times: &[i64]) -> CoreResult<Vec<usize>> {
        if ids.len() != times.len() {
            return Err(CoreError::LengthMismatch {
                column: "event_time".into(),
                expected: ids.len(),
                actual: times.len(),
            });
        }
        if let Some(row) = times.iter().position(|&t| !is_valid_event_time(t)) {
            return Err(CoreError::invalid(
                "event_time",
                row,
                format!(
                    "event time {} ms is outside the supported range [{MIN_EVENT_TIME}, {MAX_EVENT_TIME}]",
                    times[row]
                ),
            ));
        }
        let mut repeats = Vec::new();
        for (row, (&id, &t)) in ids.iter().zip(times).enumerate() {
            if self.admit(id, t) {
                repeats.push(row);
            }
            if t > self.max_time {
                self.max_time = t;
                self.expire();
            }
        }
        self.counters.events += ids.len() as u64;
        self.counters.duplicates += repeats.len() as u64;
        Ok(repeats)
    }

    /// One event; returns whether it repeats a live session of `id`.
    #[inline]
    fn admit(&mut self, id: i64, t: i64) -> bool {
        let (start, end) = (t, t + self.horizon);
        let wm = self.watermark();
        let merges =
            self.ids.get(&id).is_some_and(|spans| spans.iter().any(|s| s.start <= end && s.end >= start));
        if !merges {
            if end - 1 <= wm {
                self.counters.late += 1;
                return false;
            }
            if !self.ids.contains_key(&id) && self.max_ids.is_some_and(|cap| self.ids.len() >= cap) {
                self.evict_one();
            }
        }
        if let Some(changed) = &mut self.changed {
            changed.push(id);
        }
        let spans = self.ids.entry(id).or_default();
        let lo = spans.iter().position(|s| s.end >= start).unwrap_or(spans.len());
        let hi = lo + spans[lo..].iter().take_while(|s| s.start <= end).count();
        let merged_end = if lo == hi {
            spans.insert(lo, Span { start, end });
            self.sessions += 1;
            end
        } else {
            let merged = Span { start: spans[lo].start.min(start), end: spans[hi - 1].end.max(end) };
            spans.drain(lo + 1..hi);
            self.sessions -= hi - lo - 1;
            let grew = merged.end != spans[lo].end;
            spans[lo] = merged;
            if !grew {
                return true; // its expiry entry still holds
            }
            merged.end
        };
        self.expiry.push(merged_end, id);
        if self.expiry.len() > 2 * self.sessions + 4096 {
            self.expiry = Expiry::rebuild(&self.ids);
        }
        lo != hi
    }

    /// Drops the sessions the watermark has passed (`end - 1 <= wm`).
    fn expire(&mut self) {
        let wm = self.watermark();
        while let Some((end, id)) = self.expiry.peek() {
            if end - 1 > wm {
                break;
            }
            self.expiry.pop();
            if let Some(spans) = self.ids.get_mut(&id) {
                let before = spans.len();
                spans.retain(|s| s.end - 1 > wm);
                self.sessions -= before - spans.len();
                if spans.is_empty() {
                    self.ids.remove(&id);
                }
            }
        }
    }

    /// Evicts the live id whose latest session ends first (ties: the smaller id).
    #[cold]
    fn evict_one(&mut self) {
        let mut keep: Vec<(i64, i64)> = Vec::new();
        let mut victim: Option<i64> = None;
        while victim.is_none() {
            let Some((end, _)) = self.expiry.peek() else { break };
            // every entry of the earliest end: the live ones whose latest session it is are the
            // candidates; others of a live session stay for its expiry
            while let Some(entry @ (e, id)) = self.expiry.peek() {
                if e != end {
                    break;
                }
                self.expiry.pop();
                let Some(spans) = self.ids.get(&id) else { continue };
                if !spans.iter().any(|s| s.end == e) {
                    continue; // stale
                }
                if spans.last().is_some_and(|s| s.end == e) && victim.is_none_or(|v| id < v) {
                    if let Some(v) = victim {
                        keep.push((e, v));
                    }
                    victim = Some(id);
                } else {
                    keep.push(entry);
                }
            }
        }
        for (end, id) in keep {
            self.expiry.push(end, id);
        }
        if let Some(id) = victim {
            if let Some(spans) = self.ids.remove(&id) {
                self.sessions -= spans.len();
            }
            if let Some(changed) = &mut self.changed {
                changed.push(id);
            }
            self.counters.evicted += 1;
        }
    }

    // -- state bytes ----------------------------------------------------------------------

    /// Starts (emptied) or stops recording which ids change, for [`Self::take_changes`].
    pub fn track_changes(&mut self, on: bool) {
        self.changed = on.then(Vec::new);
    }

    /// Whether changes are being recorded.
    #[must_use]
    pub fn tracks_changes(&self) -> bool {
        self.changed.is_some()
    }

    fn fingerprint(&self) -> String {
        format!("duplicates horizon={} delay={} max_ids={:?}", self.horizon, self.delay, self.max_ids)
    }

    fn header(&self, kind: u8) -> Writer {
        let mut w = Writer::with_header();
        w.u8(kind);
        w.str(&self.fingerprint());
        w.i64(self.max_time);
        let c = self.counters;
        for n in [c.events, c.duplicates, c.late, c.evicted] {
            w.u64(n);
        }
        w
    }

    fn write_id(&self, id: i64, w: &mut Writer) {
        w.i64(id);
        let spans = self.ids.get(&id).map_or(&[][..], |s| &s[..]);
        w.count(spans.len());
        for s in spans {
            w.i64(s.start);
            w.i64(s.end);
        }
    }

    /// The whole state as versioned bytes (ids in order).
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = self.header(SNAPSHOT);
        let mut ids: Vec<i64> = self.ids.keys().copied().collect();
        ids.sort_unstable();
        w.count(ids.len());
        for id in ids {
            self.write_id(id, &mut w);
        }
        w.into_bytes()
    }

    /// The ids changed since the previous call (with their sessions; none when gone) and the
    /// latest event time, as versioned bytes. Empty of ids when not recording.
    pub fn take_changes(&mut self) -> Vec<u8> {
        let mut ids = self.changed.as_mut().map(std::mem::take).unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        let mut w = self.header(CHANGES);
        w.count(ids.len());
        for id in ids {
            self.write_id(id, &mut w);
        }
        w.into_bytes()
    }

    /// Whether `bytes` are a snapshot or change record of a [`DuplicateFilter`] (not, say, of
    /// the window engine that held this state before).
    #[must_use]
    pub fn holds_state(bytes: &[u8]) -> bool {
        Reader::with_header(bytes).and_then(|mut r| r.u8()).is_ok_and(|k| k == SNAPSHOT || k == CHANGES)
    }

    fn read_header<'a>(&mut self, bytes: &'a [u8], kind: u8) -> CoreResult<Reader<'a>> {
        let mut r = Reader::with_header(bytes)?;
        let found = r.u8()?;
        if found != kind {
            let name = |k: u8| match k {
                SNAPSHOT => "a duplicate filter's snapshot",
                CHANGES => "a duplicate filter's changes",
                _ => "the state of something else",
            };
            return Err(CoreError::Snapshot(format!("expected {}, found {}", name(kind), name(found))));
        }
        let fingerprint = r.str()?;
        if fingerprint != self.fingerprint() {
            return Err(CoreError::Snapshot(format!(
                "state was written with another configuration: {fingerprint}"
            )));
        }
        self.max_time = self.max_time.max(r.i64()?);
        let (events, duplicates, late, evicted) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        self.counters = DuplicateCounters { events, duplicates, late, evicted };
        Ok(r)
    }

    fn read_spans(r: &mut Reader<'_>, horizon: i64) -> CoreResult<Spans> {
        let n = r.count()?;
        let mut spans = Spans::with_capacity(n.min(16));
        for _ in 0..n {
            let (start, end) = (r.i64()?, r.i64()?);
            let ordered = spans.last().is_none_or(|p: &Span| p.end < start);
            if !(ordered && start < end && end - start >= horizon) {
                return Err(CoreError::Snapshot(format!("malformed session [{start}, {end})")));
            }
            spans.push(Span { start, end });
        }
        Ok(spans)
    }

    /// A filter of this configuration with the state of `bytes` (from [`Self::snapshot`]).
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for malformed bytes or another configuration.
    pub fn restore(&self, bytes: &[u8]) -> CoreResult<Self> {
        let mut f = DuplicateFilter::new(self.horizon, self.delay, self.max_ids)?;
        let mut r = f.read_header(bytes, SNAPSHOT)?;
        let n = r.count()?;
        f.ids.reserve(n.min(r.remaining() / 16));
        for _ in 0..n {
            let id = r.i64()?;
            let spans = Self::read_spans(&mut r, f.horizon)?;
            f.sessions += spans.len();
            if !spans.is_empty() && f.ids.insert(id, spans).is_some() {
                return Err(CoreError::Snapshot(format!("id {id} appears twice")));
            }
        }
        r.finish()?;
        f.expiry = Expiry::rebuild(&f.ids);
        f.expire();
        f.changed = self.changed.as_ref().map(|_| Vec::new());
        Ok(f)
    }

    /// Applies a change record (from [`Self::take_changes`] of a filter of this
    /// configuration): what a restore replays after the snapshot.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for malformed bytes or another configuration; the state may be
    /// partly updated when the bytes are corrupt after a valid header.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> CoreResult<()> {
        let mut r = self.read_header(bytes, CHANGES)?;
        for _ in 0..r.count()? {
            let id = r.i64()?;
            let spans = Self::read_spans(&mut r, self.horizon)?;
            let added = spans.len();
            for s in &spans {
                self.expiry.push(s.end, id);
            }
            let old = if spans.is_empty() { self.ids.remove(&id) } else { self.ids.insert(id, spans) };
            self.sessions = self.sessions + added - old.map_or(0, |s| s.len());
        }
        r.finish()?;
        if self.expiry.len() > 2 * self.sessions + 4096 {
            self.expiry = Expiry::rebuild(&self.ids);
        }
        self.expire();
        Ok(())
    }

    /// Adds the sessions `(id, start, end)` of a state held elsewhere (the window engine's
    /// sessions of an older version), with its watermark (same delay) and evictions.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for a session that is not `[start, start + horizon or more)`.
    pub fn adopt(&mut self, sessions: &[(i64, i64, i64)], watermark: i64, evicted: u64) -> CoreResult<()> {
        let max_time = if watermark == i64::MIN { i64::MIN } else { watermark.saturating_add(self.delay) };
        for &(id, start, end) in sessions {
            if end - start < self.horizon {
                return Err(CoreError::Snapshot(format!(
                    "session [{start}, {end}) of id {id} is shorter than the horizon"
                )));
            }
            let spans = self.ids.entry(id).or_default();
            let at = spans.iter().position(|s| s.start > start).unwrap_or(spans.len());
            spans.insert(at, Span { start, end });
            self.sessions += 1;
            if let Some(changed) = &mut self.changed {
                changed.push(id);
            }
        }
        self.max_time = self.max_time.max(max_time);
        self.counters.evicted += evicted;
        self.expiry = Expiry::rebuild(&self.ids);
        self.expire();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
