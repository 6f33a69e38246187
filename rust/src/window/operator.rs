//! The one shape of a window operator, and the per-event loop every operator runs in.
//!
//! A window operator keeps the keyed window state of one engine: it takes events one by one
//! ([`WindowOperator::on_event`]), fires what a watermark makes due
//! ([`WindowOperator::on_watermark`]), and writes and reads its state as snapshot and
//! changelog bytes. The engine owns everything around it — validation, the watermark, the
//! counters, the state header — and runs every operator through [`run_batch`], the only
//! per-event loop: each event is judged against the watermark *before* it, then the watermark
//! advances and due windows fire, so a batch gives exactly the rows of its events pushed one
//! at a time.
//!
//! Invariants every operator keeps:
//! - `on_event` returns `false` only for an event later than allowed lateness for every window
//!   it belongs to, and then leaves the state unchanged.
//! - After `on_watermark(wm)` every window with data and `end - 1 <= wm` has emitted (or
//!   counted, [`Rules::final_rows`] off) its final row, and no state is left that only windows
//!   with `end - 1 + allowed_lateness <= wm` would need.
//! - `has_due(wm)` is `false` only when `on_watermark(wm)` would do nothing.
//! - The keys recorded in [`Book::changes`] are a superset of the keys whose state
//!   bytes changed since the last `write_changes`.

use rustc_hash::FxHashSet;

use super::cap::KeyCap;
use super::output::{Output, NO_TRIGGER};
use super::Rules;
use crate::batch::Batch;
use crate::snapshot::{Reader, Writer};
use crate::time::Millis;
use crate::watermark::WatermarkTracker;
use crate::CoreResult;

/// One event as an operator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'b> {
    /// The event's key.
    pub key: i64,
    /// Its event time.
    pub t: Millis,
    /// Its row in the batch (where its values are read).
    pub row: usize,
    /// The key's slot resolved by [`WindowOperator::begin_batch`] (a candidate the operator
    /// re-checks; 0 for operators that resolve none).
    pub slot: u32,
    /// The batch it comes from.
    pub batch: &'b Batch<'b>,
    /// The watermark before it.
    pub wm: Millis,
}

/// What the state bytes of an operator depend on beside the operator itself.
#[derive(Debug, Clone, Copy)]
pub struct StateContext<'a> {
    /// The aggregates, emit mode and lateness.
    pub rules: &'a Rules,
    /// The engine's current watermark.
    pub wm: Millis,
}

/// Size of an operator's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Keys with open windows.
    pub keys: usize,
    /// Open panes (tumbling/hopping) or sessions.
    pub windows: usize,
    /// Pending timer entries (for panes kept by time: live pane times).
    pub timers: usize,
    /// Approximate bytes held.
    pub bytes: usize,
}

impl StateSize {
    /// The size of `(keys, windows, timers)` holding `bytes`.
    #[must_use]
    pub fn of((keys, windows, timers): (usize, usize, usize), bytes: usize) -> Self {
        StateSize { keys, windows, timers, bytes }
    }
}

/// The keys whose state changed since the changes were last written, while tracking is on.
#[derive(Debug, Clone, Default)]
pub struct ChangeTracker {
    keys: Option<FxHashSet<i64>>,
}

impl ChangeTracker {
    /// Starts (emptied) or stops recording.
    pub fn set_on(&mut self, on: bool) {
        self.keys = on.then(FxHashSet::default);
    }

    /// Whether changes are being recorded.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.keys.is_some()
    }

    /// Records that `key` changed (nothing when off).
    #[inline]
    pub fn record(&mut self, key: i64) {
        if let Some(keys) = &mut self.keys {
            keys.insert(key);
        }
    }

    /// Records that every key of `keys` changed (nothing when off).
    pub fn record_all(&mut self, keys: impl IntoIterator<Item = i64>) {
        if let Some(set) = &mut self.keys {
            set.extend(keys);
        }
    }

    /// The keys recorded (empty when off), leaving the record empty.
    pub fn take(&mut self) -> FxHashSet<i64> {
        self.keys.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The keys recorded, `None` when off.
    #[must_use]
    pub fn recorded(&self) -> Option<&FxHashSet<i64>> {
        self.keys.as_ref()
    }

    /// Records from now on as if `keys` had changed already (`None`: off).
    pub fn replace(&mut self, keys: Option<FxHashSet<i64>>) {
        self.keys = keys;
    }
}

/// What every operator keeps beside its windows.
#[derive(Debug, Clone, Default)]
pub struct Book {
    /// The keys changed since the changes were last written.
    pub changes: ChangeTracker,
    /// The cap on live keys, if any (boxed: cold when absent).
    pub cap: Option<Box<KeyCap>>,
}

/// Implements [`WindowOperator::book`] and [`WindowOperator::book_mut`] for an operator that
/// keeps its [`Book`] in a field `book` (inside the `impl WindowOperator` block).
macro_rules! keeps_book {
    () => {
        fn book(&self) -> &$crate::window::operator::Book {
            &self.book
        }

        fn book_mut(&mut self) -> &mut $crate::window::operator::Book {
            &mut self.book
        }
    };
}

/// A keyed window operator; see the module documentation for its invariants and
/// `docs/window-operators.md` for how to add one.
pub trait WindowOperator {
    /// Prepares for the events of `keys`, e.g. resolves the slot of every key at once so that
    /// independent lookups overlap their cache misses (`slots[i]` for `keys[i]`). The default
    /// resolves none.
    fn begin_batch(&mut self, _keys: &[i64], _slots: &mut Vec<u32>) {}

    /// Prefetch hints for the state of events after `row` (`slots` from `begin_batch`).
    #[inline]
    fn prefetch(&self, _slots: &[u32], _row: usize) {}

    /// Adds `event` to its windows and pushes the rows it causes (late updates, early rows).
    /// Returns `false`, state unchanged, when the event is later than allowed lateness for
    /// every window it belongs to.
    fn on_event(&mut self, rules: &Rules, event: Event<'_>, out: &mut Output) -> bool;

    /// Whether [`WindowOperator::on_watermark`] would do something at `wm` (checked after
    /// nearly every event: it must be cheap).
    #[inline]
    fn has_due(&self, _wm: Millis) -> bool {
        true
    }

    /// Fires every window with `end - 1 <= wm` and drops the state past allowed lateness.
    fn on_watermark(&mut self, rules: &Rules, wm: Millis, out: &mut Output);

    /// After the events of a batch: drops what `begin_batch` made for keys that got no event.
    fn end_batch(&mut self, _slots: &[u32], _keys: &[i64]) {}

    /// Size of the state.
    fn state_size(&self) -> StateSize;

    /// The operator's changed keys and cap.
    fn book(&self) -> &Book;

    /// The operator's changed keys and cap, to update.
    fn book_mut(&mut self) -> &mut Book;

    /// Writes the whole state (a snapshot's body).
    fn snapshot(&self, ctx: StateContext<'_>, w: &mut Writer);

    /// Writes the state of the keys changed since the last call (tracking must be on).
    fn write_changes(&mut self, ctx: StateContext<'_>, w: &mut Writer);

    /// Applies what [`WindowOperator::write_changes`] wrote (of an operator of the same
    /// configuration).
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    fn apply_changes(&mut self, ctx: StateContext<'_>, r: &mut Reader<'_>) -> CoreResult<()>;

    /// Rebuilds the cap's eviction order from the state (after state was read).
    fn rebuild_cap(&mut self);

    /// The recency of `key` under the cap (see [`super::cap`]: the start of its newest pane,
    /// the end of its latest session), `None` when it has no data.
    fn recency(&self, key: i64) -> Option<Millis>;

    /// Drops the state of `key` without a row (its entry in the cap, if any, is the caller's).
    fn evict(&mut self, key: i64);

    /// Under the cap: `key` gets data with `recency` (`first`: it had none). A key without
    /// data is admitted, evicting the least recent key first when the cap is reached; another
    /// is noted at its new recency.
    fn record_recency(&mut self, key: i64, recency: Millis, first: bool) {
        let Some(mut cap) = self.book_mut().cap.take() else { return };
        let victim = cap.record(key, recency, first, |k| self.recency(k));
        self.book_mut().cap = Some(cap);
        if let Some(victim) = victim {
            self.evict(victim);
        }
    }

    /// Drops the state of `key` without a row, for the caller (not counted as an eviction;
    /// see `Engine::process_dropping`).
    fn drop_key(&mut self, key: i64) {
        if self.recency(key).is_some() {
            if let Some(cap) = &mut self.book_mut().cap {
                cap.remove();
            }
        }
        self.evict(key);
    }

    /// Caps the live keys at `max_keys` (`None`: unbounded): a key that gets its first data
    /// while `max_keys` keys have some first evicts the one whose latest event is the oldest
    /// (see [`super::cap`]).
    fn set_max_keys(&mut self, max_keys: Option<usize>) {
        self.book_mut().cap = max_keys.map(|m| Box::new(KeyCap::new(m)));
        self.rebuild_cap();
    }

    /// Keys evicted by the cap.
    fn evicted(&self) -> u64 {
        self.book().cap.as_deref().map_or(0, KeyCap::evicted)
    }

    /// Sets the count of evicted keys (read back from a snapshot's counters).
    fn set_evicted(&mut self, n: u64) {
        if let Some(cap) = &mut self.book_mut().cap {
            cap.set_evicted(n);
        }
    }

    /// Starts (or stops) recording which keys change, for [`WindowOperator::write_changes`].
    fn track_changes(&mut self, on: bool) {
        self.book_mut().changes.set_on(on);
    }

    /// Whether changes are being recorded.
    fn tracks_changes(&self) -> bool {
        self.book().changes.is_on()
    }
}

/// How many events ahead [`run_batch`] asks an operator to prefetch.
pub const PREFETCH_DISTANCE: usize = 16;

/// A caller's key drops (`Engine::process_dropping`), handed out row by row.
struct Drops<'a> {
    list: &'a [(usize, i64)],
    /// Row of the next drop (`usize::MAX`: none left): one comparison per event.
    next: usize,
}

impl<'a> Drops<'a> {
    fn new(list: &'a [(usize, i64)]) -> Self {
        Drops { list, next: list.first().map_or(usize::MAX, |d| d.0) }
    }

    /// Drops the keys due before `row`.
    #[inline(always)]
    fn before<O: WindowOperator>(&mut self, row: usize, op: &mut O) {
        while self.next <= row {
            op.drop_key(self.list[0].1);
            self.list = &self.list[1..];
            self.next = self.list.first().map_or(usize::MAX, |d| d.0);
        }
    }
}

/// The events of `batch` through `op`, the watermark advancing after each (the only per-event
/// loop: one monomorphic copy per operator type). `now` is the processing time for partition
/// idleness; `drops` are `(row, key)`: the caller's key drops, before those rows (ascending);
/// `slots` is scratch space kept between batches.
#[allow(clippy::too_many_arguments)]
pub fn run_batch<O: WindowOperator>(
    op: &mut O,
    rules: &Rules,
    watermark: &mut WatermarkTracker,
    slots: &mut Vec<u32>,
    batch: &Batch<'_>,
    now: Option<Millis>,
    drops: &[(usize, i64)],
    out: &mut Output,
) {
    slots.clear();
    op.begin_batch(batch.keys, slots);
    let mut drops = Drops::new(drops);
    for (row, (&key, &t)) in batch.keys.iter().zip(batch.times).enumerate() {
        drops.before(row, op);
        out.trigger = row as u64;
        op.prefetch(slots, row);
        let slot = slots.get(row).copied().unwrap_or(0);
        let event = Event { key, t, row, slot, batch, wm: watermark.current() };
        if !op.on_event(rules, event, out) {
            out.late_rows.push(row as u64);
        }
        if let Some(wm) = watermark.observe(batch.partition(row), t, now) {
            // (The watermark advances on most events; mostly nothing is due.)
            if op.has_due(wm) {
                op.on_watermark(rules, wm, out);
            }
        }
    }
    op.end_batch(slots, batch.keys);
    out.trigger = NO_TRIGGER;
}

/// Fires what a watermark that advanced to `advanced` (if it did) makes due.
#[inline]
pub fn advance<O: WindowOperator>(op: &mut O, rules: &Rules, advanced: Option<Millis>, out: &mut Output) {
    if let Some(wm) = advanced {
        if op.has_due(wm) {
            op.on_watermark(rules, wm, out);
        }
    }
}
