//! Stream-table joins: an event-time temporal join over a versioned table
//! ([`TemporalJoin`], Flink's `FOR SYSTEM_TIME AS OF`) and a processing-time lookup join
//! ([`lookup::LookupTable`], the latest value, no waiting).
//!
//! The table is keyed by `i64`; each version carries a fixed set of `f64` columns (integer
//! attributes such as `account_age_days` or a country code are stored as `f64`, exact up to
//! 2^53), or is a tombstone (a delete). A probe row `(key, time, id)` is joined to the version
//! with the greatest version time `<= time` (ties: the later arrival), once the table side's
//! watermark has passed its time. Exact rules are in `docs/semantics.md` ("Temporal join").
//!
//! Invariants:
//! - Both watermarks only move forward: `table_wm = max version time - table disorder`,
//!   `probe_wm = max probe time - probe disorder`, advanced after every row, so a batch gives
//!   exactly what its rows pushed one by one give.
//! - A table update with version time `< table_wm` is late: counted, returned, not applied.
//!   A probe with time `< probe_wm` is late: counted, returned, not joined.
//! - A probe at `t` is emitted as soon as `table_wm > t` (at once if already so); emitted rows
//!   come out in `(t, arrival)` order per watermark step.
//! - Freeing: with `F = min(probe_wm, oldest waiting probe time, table_wm - 1)` (monotone),
//!   each key keeps the latest version `<= F` (dropped if a tombstone) and every version after
//!   `F`. No accepted update can have a time `<= F`, so what is freed never matters again. This
//!   is applied after every call, so the state (and the snapshot bytes) depend on the rows,
//!   not on how they were cut into batches.
//! - Every batch is validated whole before any state changes; nothing input-driven panics.

pub mod lookup;
mod state;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use crate::time::{
    check_duration, is_valid_event_time, Millis, MAX_EVENT_TIME, MIN_EVENT_TIME, WATERMARK_START,
};
use crate::{CoreError, CoreResult};

/// Left join (unmatched probes come out with a `matched = false` mask and NaN values) or
/// inner join (unmatched probes are dropped, counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Unmatched probe rows are emitted with nulls.
    Left,
    /// Unmatched probe rows are dropped.
    Inner,
}

/// Configuration of a [`TemporalJoin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// Names of the table's value columns (all `f64`).
    pub columns: Vec<String>,
    /// Bounded out-of-orderness of the table's version times (ms).
    pub table_disorder: Millis,
    /// Bounded out-of-orderness of the probe stream's times (ms).
    pub probe_disorder: Millis,
    /// Left or inner.
    pub kind: JoinKind,
}

impl JoinConfig {
    fn validate(&self) -> CoreResult<()> {
        check_duration("table disorder", self.table_disorder, true)?;
        check_duration("probe disorder", self.probe_disorder, true)?;
        check_columns(&self.columns, &RESERVED)
    }
}

/// A join's keyed state as versioned bytes (`crate::snapshot`): a snapshot writes every key
/// held, changes write the keys changed since the previous [`KeyedTableState::take_changes`]
/// (recorded once [`KeyedTableState::track_changes`] is on). Both joins keep this shape; each
/// says only how its header and keys are written and read.
pub trait KeyedTableState {
    /// The keys held now, in any order.
    fn held_keys(&self) -> Vec<i64>;

    /// The set of changed keys; `None` while changes are not recorded.
    fn changed_keys(&mut self) -> &mut Option<FxHashSet<i64>>;

    /// The state's bytes of `kind` ([`SNAPSHOT`] or [`CHANGES`]) with these keys (written in
    /// order, so equal states give equal bytes).
    fn write(&self, kind: u8, keys: Vec<i64>) -> Vec<u8>;

    /// Reads bytes of `kind`, checking all of them before the state changes.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for bad bytes, the other kind, or another configuration; the
    /// state is unchanged.
    fn read(&mut self, data: &[u8], kind: u8) -> CoreResult<()>;

    /// Starts (or stops) recording changed keys.
    fn track_changes(&mut self, on: bool) {
        *self.changed_keys() = on.then(FxHashSet::default);
    }

    /// The whole state as versioned bytes.
    #[must_use]
    fn snapshot(&self) -> Vec<u8> {
        self.write(SNAPSHOT, self.held_keys())
    }

    /// The keys changed since the previous call (a removed key as a delete).
    fn take_changes(&mut self) -> Vec<u8> {
        let keys = self.changed_keys().as_mut().map(|d| d.drain().collect()).unwrap_or_default();
        self.write(CHANGES, keys)
    }

    /// Replaces the state with a snapshot of a state of the same configuration.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for bad bytes or another configuration; the state is unchanged.
    fn restore(&mut self, data: &[u8]) -> CoreResult<()> {
        self.read(data, SNAPSHOT)
    }

    /// Applies bytes from [`KeyedTableState::take_changes`].
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for bad bytes or another configuration; the state is unchanged.
    fn apply_changes(&mut self, data: &[u8]) -> CoreResult<()> {
        self.read(data, CHANGES)
    }
}

/// The kind byte of a [`KeyedTableState`] snapshot.
pub const SNAPSHOT: u8 = b'S';
/// The kind byte of [`KeyedTableState`] changes.
pub const CHANGES: u8 = b'C';

/// Output column names a temporal join's table column may not take.
pub const RESERVED: [&str; 6] = ["key", "time", "id", "matched", "version_time", "late_rows"];

/// Table column names are unique, non-empty and not among `reserved` (the output's own).
pub(crate) fn check_columns(columns: &[String], reserved: &[&str]) -> CoreResult<()> {
    let mut seen = FxHashSet::default();
    for c in columns {
        if c.is_empty() || !seen.insert(c.as_str()) {
            return Err(CoreError::Config(format!("table column names must be unique and non-empty: {c:?}")));
        }
        if reserved.contains(&c.as_str()) {
            return Err(CoreError::Config(format!(
                "table column {c:?} would clash with an output column ({})",
                reserved.join(", ")
            )));
        }
    }
    Ok(())
}

/// A table update batch: keys, version times, one slice per value column, optional delete flags.
#[derive(Debug, Clone, Copy)]
pub struct Updates<'a> {
    /// Table keys.
    pub keys: &'a [i64],
    /// Version times (event time of the change).
    pub times: &'a [Millis],
    /// One slice per configured column (ignored for deletes).
    pub values: &'a [&'a [f64]],
    /// `true` marks a delete (tombstone); None: every row is an upsert.
    pub deletes: Option<&'a [bool]>,
}

/// A probe batch: keys, event times and an id carried to the output (e.g. the transaction id).
#[derive(Debug, Clone, Copy)]
pub struct Probes<'a> {
    /// Join keys.
    pub keys: &'a [i64],
    /// Event times.
    pub times: &'a [Millis],
    /// Carried through to the joined row.
    pub ids: &'a [i64],
}

/// Joined rows, columnar; `values[c][i]` is NaN where `matched[i]` is false.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Joined {
    /// Probe keys.
    pub keys: Vec<i64>,
    /// Probe event times.
    pub times: Vec<Millis>,
    /// Probe ids.
    pub ids: Vec<i64>,
    /// Whether a version matched (the validity mask of the value columns).
    pub matched: Vec<bool>,
    /// Version time of the matched version (`i64::MIN` when unmatched).
    pub version_times: Vec<Millis>,
    /// One column per table column.
    pub values: Vec<Vec<f64>>,
    /// Input rows of the call that were late (probes or table updates, by call).
    pub late_rows: Vec<u64>,
}

impl Joined {
    fn with_columns(n: usize) -> Self {
        Joined { values: vec![Vec::new(); n], ..Joined::default() }
    }

    fn with_capacity(columns: usize, rows: usize) -> Self {
        Joined {
            keys: Vec::with_capacity(rows),
            times: Vec::with_capacity(rows),
            ids: Vec::with_capacity(rows),
            matched: Vec::with_capacity(rows),
            version_times: Vec::with_capacity(rows),
            values: vec![Vec::with_capacity(rows); columns],
            late_rows: Vec::new(),
        }
    }

    /// Rows emitted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No row emitted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Counters since creation (kept in snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinCounters {
    /// Probe rows received.
    pub probes: u64,
    /// Probe rows behind the probe watermark.
    pub late_probes: u64,
    /// Table updates received.
    pub updates: u64,
    /// Table updates behind the table watermark (dropped).
    pub late_updates: u64,
    /// Joined rows emitted with a match.
    pub matched: u64,
    /// Unmatched probes (emitted with nulls, or dropped by an inner join).
    pub unmatched: u64,
    /// Table versions freed.
    pub freed: u64,
}

/// A version's values, inline up to four columns (one memory access less per lookup).
type Values = SmallVec<[f64; 4]>;

#[derive(Debug, Clone, PartialEq)]
struct Version {
    time: Millis,
    /// None: a tombstone.
    values: Option<Values>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    key: i64,
    id: i64,
}

/// The event-time temporal join (see the module docs).
#[derive(Debug, Clone)]
pub struct TemporalJoin {
    config: JoinConfig,
    table_wm: Millis,
    probe_wm: Millis,
    /// Versions per key, sorted by time, one per time (a later arrival replaces).
    table: FxHashMap<i64, Vec<Version>>,
    /// Waiting probes by (time, arrival sequence).
    waiting: BTreeMap<(Millis, u64), Waiting>,
    seq: u64,
    counters: JoinCounters,
    /// (time at which the key's oldest version can go, key); lazily validated.
    prunable: BinaryHeap<Reverse<(Millis, i64)>>,
    dirty: Option<FxHashSet<i64>>,
}

const SECTION: &str = "temporal-join/1";

impl TemporalJoin {
    /// A join with an empty table.
    ///
    /// # Errors
    /// [`CoreError::Config`] for a negative or huge disorder or duplicate column names.
    ///
    /// # Examples
    /// ```
    /// use fraudstream::join::{JoinConfig, JoinKind, Probes, TemporalJoin, Updates};
    /// let config = JoinConfig { columns: vec!["avg".into()], table_disorder: 0, probe_disorder: 0, kind: JoinKind::Left };
    /// let mut j = TemporalJoin::new(config).unwrap();
    /// j.update(&Updates { keys: &[7], times: &[100], values: &[&[5.0]], deletes: None }).unwrap();
    /// let out = j.process(&Probes { keys: &[7], times: &[150], ids: &[1] }).unwrap();
    /// assert!(out.is_empty(), "waits for the table watermark to pass 150");
    /// let out = j.update(&Updates { keys: &[8], times: &[151], values: &[&[1.0]], deletes: None }).unwrap();
    /// assert_eq!((out.ids[0], out.values[0][0]), (1, 5.0));
    /// ```
    pub fn new(config: JoinConfig) -> CoreResult<Self> {
        config.validate()?;
        Ok(TemporalJoin {
            config,
            table_wm: WATERMARK_START,
            probe_wm: WATERMARK_START,
            table: FxHashMap::default(),
            waiting: BTreeMap::new(),
            seq: 0,
            counters: JoinCounters::default(),
            prunable: BinaryHeap::new(),
            dirty: None,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &JoinConfig {
        &self.config
    }

    /// The table side's watermark (`i64::MIN` before the first update).
    #[must_use]
    pub fn table_watermark(&self) -> Millis {
        self.table_wm
    }

    /// The probe side's watermark (`i64::MIN` before the first probe).
    #[must_use]
    pub fn probe_watermark(&self) -> Millis {
        self.probe_wm
    }

    /// Counters since creation.
    #[must_use]
    pub fn counters(&self) -> JoinCounters {
        self.counters
    }

    /// (keys, versions, waiting probes) held.
    #[must_use]
    pub fn state_size(&self) -> (usize, usize, usize) {
        (self.table.len(), self.table.values().map(Vec::len).sum(), self.waiting.len())
    }

    /// The freeing horizon: no future lookup asks for a time before it (probes behind the
    /// probe watermark are late, waiting ones are at or after the oldest), and no future table
    /// update has a version time at or before it (those behind the table watermark are late).
    /// The second half matters: a tombstone freed while an older upsert could still arrive
    /// would let that upsert come back to life.
    fn horizon(&self) -> Millis {
        let probes = self.waiting.keys().next().map_or(self.probe_wm, |&(t, _)| t.min(self.probe_wm));
        probes.min(self.table_wm.saturating_sub(1))
    }

    fn check_times(times: &[Millis], column: &str) -> CoreResult<()> {
        match times.iter().position(|&t| !is_valid_event_time(t)) {
            Some(row) => Err(CoreError::invalid(
                column,
                row,
                format!("time {} is outside [{MIN_EVENT_TIME}, {MAX_EVENT_TIME}]", times[row]),
            )),
            None => Ok(()),
        }
    }

    fn check_len(column: &str, expected: usize, actual: usize) -> CoreResult<()> {
        if expected == actual {
            Ok(())
        } else {
            Err(CoreError::LengthMismatch { column: column.to_owned(), expected, actual })
        }
    }

    /// Applies table updates row by row; emits the probes the table watermark releases.
    ///
    /// # Errors
    /// Lengths, column count or a time out of range: nothing is applied.
    pub fn update(&mut self, u: &Updates<'_>) -> CoreResult<Joined> {
        let n = u.keys.len();
        Self::check_len("time", n, u.times.len())?;
        if u.values.len() != self.config.columns.len() {
            return Err(CoreError::Config(format!(
                "{} table value columns given, the join has {}",
                u.values.len(),
                self.config.columns.len()
            )));
        }
        for (name, col) in self.config.columns.iter().zip(u.values) {
            Self::check_len(name, n, col.len())?;
        }
        if let Some(d) = u.deletes {
            Self::check_len("deleted", n, d.len())?;
        }
        Self::check_times(u.times, "time")?;
        let mut out = Joined::with_columns(self.config.columns.len());
        for i in 0..n {
            let (key, time) = (u.keys[i], u.times[i]);
            self.counters.updates += 1;
            if time < self.table_wm {
                self.counters.late_updates += 1;
                out.late_rows.push(i as u64);
                continue;
            }
            let deleted = u.deletes.is_some_and(|d| d[i]);
            let values = (!deleted).then(|| u.values.iter().map(|c| c[i]).collect::<Values>());
            self.insert(key, Version { time, values });
            let wm = time.saturating_sub(self.config.table_disorder);
            if wm > self.table_wm {
                self.table_wm = wm;
                self.release(&mut out);
            }
        }
        self.prune();
        Ok(out)
    }

    /// Joins probe rows: emitted at once where the table watermark has passed their time,
    /// held otherwise.
    ///
    /// # Errors
    /// Lengths or a time out of range: nothing changes.
    pub fn process(&mut self, p: &Probes<'_>) -> CoreResult<Joined> {
        let n = p.keys.len();
        Self::check_len("time", n, p.times.len())?;
        Self::check_len("id", n, p.ids.len())?;
        Self::check_times(p.times, "time")?;
        let mut out = Joined::with_capacity(self.config.columns.len(), n);
        // The table does not change while probes are joined (updates come in their own
        // calls), so every key is resolved first: independent hash lookups overlap their cache
        // misses, and each key's versions are prefetched a few rows ahead.
        let table = &self.table;
        let slots: Vec<&[Version]> =
            p.keys.iter().map(|k| table.get(k).map_or(&[][..], Vec::as_slice)).collect();
        let kind = self.config.kind;
        for i in 0..n {
            if let Some(ahead) = slots.get(i + PREFETCH_AHEAD) {
                if ahead.len() <= 4 {
                    crate::prefetch::prefetch(*ahead);
                }
            }
            let (key, time, id) = (p.keys[i], p.times[i], p.ids[i]);
            self.counters.probes += 1;
            if time < self.probe_wm {
                self.counters.late_probes += 1;
                out.late_rows.push(i as u64);
                continue;
            }
            self.probe_wm = self.probe_wm.max(time.saturating_sub(self.config.probe_disorder));
            if time < self.table_wm {
                emit_into(slots[i], kind, &mut self.counters, (key, time, id), &mut out);
            } else {
                self.waiting.insert((time, self.seq), Waiting { key, id });
                self.seq += 1;
            }
        }
        self.prune();
        Ok(out)
    }

    /// Raises the table watermark to at least `wm` (an idle table side) and emits what it
    /// releases.
    pub fn advance_table_to(&mut self, wm: Millis) -> Joined {
        let mut out = Joined::with_columns(self.config.columns.len());
        if wm > self.table_wm {
            self.table_wm = wm;
            self.release(&mut out);
            self.prune();
        }
        out
    }

    /// End of input: every waiting probe is joined and emitted (the table watermark goes to
    /// +infinity, so later table updates are late).
    pub fn flush(&mut self) -> Joined {
        self.advance_table_to(i64::MAX)
    }

    fn release(&mut self, out: &mut Joined) {
        while let Some(entry) = self.waiting.first_entry() {
            let (time, _) = *entry.key();
            if time >= self.table_wm {
                break;
            }
            let w = entry.remove();
            self.emit(w.key, time, w.id, out);
        }
    }

    /// The version valid at `time` (None: no version, or a tombstone).
    fn emit(&mut self, key: i64, time: Millis, id: i64, out: &mut Joined) {
        let versions = self.table.get(&key).map_or(&[][..], Vec::as_slice);
        emit_into(versions, self.config.kind, &mut self.counters, (key, time, id), out);
    }

    fn insert(&mut self, key: i64, version: Version) {
        let versions = self.table.entry(key).or_default();
        let at = versions.partition_point(|v| v.time < version.time);
        if versions.get(at).is_some_and(|v| v.time == version.time) {
            versions[at] = version;
        } else {
            versions.insert(at, version);
        }
        if let Some(d) = &mut self.dirty {
            d.insert(key);
        }
        let horizon = self.horizon();
        self.prune_key(key, horizon);
    }

    /// When the key's oldest version becomes useless: the second version's time, or a lone
    /// tombstone's own time.
    fn prune_time(versions: &[Version]) -> Option<Millis> {
        match versions {
            [] => None,
            [only] => only.values.is_none().then_some(only.time),
            [_, second, ..] => Some(second.time),
        }
    }

    /// Keeps the latest version `<= horizon` (unless a tombstone) and every later one.
    fn prune_key(&mut self, key: i64, horizon: Millis) {
        let Some(versions) = self.table.get_mut(&key) else { return };
        let mut drop = versions.partition_point(|v| v.time <= horizon).saturating_sub(1);
        if versions.get(drop).is_some_and(|v| v.time <= horizon && v.values.is_none()) {
            drop += 1;
        }
        if drop > 0 {
            versions.drain(..drop);
            self.counters.freed += drop as u64;
            if let Some(d) = &mut self.dirty {
                d.insert(key);
            }
        }
        if versions.is_empty() {
            self.table.remove(&key);
        } else if let Some(p) = Self::prune_time(versions) {
            self.prunable.push(Reverse((p, key)));
        }
    }

    fn prune(&mut self) {
        let horizon = self.horizon();
        while let Some(&Reverse((p, key))) = self.prunable.peek() {
            if p > horizon {
                break;
            }
            self.prunable.pop();
            let current = self.table.get(&key).and_then(|v| Self::prune_time(v));
            if current == Some(p) {
                self.prune_key(key, horizon);
            }
        }
        // stale heap entries are bounded by a multiple of the versions held
        if self.prunable.len() > 4 * (self.table.len() + 16) {
            self.rebuild_prunable();
        }
    }

    fn rebuild_prunable(&mut self) {
        self.prunable =
            self.table.iter().filter_map(|(&k, v)| Self::prune_time(v).map(|p| Reverse((p, k)))).collect();
    }
}

/// Rows ahead whose versions are prefetched while a probe batch is joined.
const PREFETCH_AHEAD: usize = 8;

/// Joins one probe `(key, time, id)` to `versions` (its key's, in time order) and appends the
/// row to `out`; an unmatched row is dropped by an inner join.
fn emit_into(
    versions: &[Version],
    kind: JoinKind,
    counters: &mut JoinCounters,
    (key, time, id): (i64, Millis, i64),
    out: &mut Joined,
) {
    let at = versions.partition_point(|v| v.time <= time);
    let found =
        at.checked_sub(1).and_then(|i| versions[i].values.as_deref().map(|vals| (versions[i].time, vals)));
    if found.is_none() && kind == JoinKind::Inner {
        counters.unmatched += 1;
        return;
    }
    out.keys.push(key);
    out.times.push(time);
    out.ids.push(id);
    out.matched.push(found.is_some());
    match found {
        Some((vt, values)) => {
            out.version_times.push(vt);
            for (col, v) in out.values.iter_mut().zip(values) {
                col.push(*v);
            }
            counters.matched += 1;
        }
        None => {
            out.version_times.push(i64::MIN);
            for col in &mut out.values {
                col.push(f64::NAN);
            }
            counters.unmatched += 1;
        }
    }
}
