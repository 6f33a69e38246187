//! Aggregations: count, sum, min, max, mean, count_distinct (exact), first and last.
//!
//! An [`AggSpec`] list compiles into a [`Layout`]: which slots of an [`Acc`] each aggregate
//! uses. An `Acc` is the state of one pane or session; adding an event is O(1) (amortized for
//! distinct sets) and two accumulators merge, which is how a hopping window combines its panes.
//! `first`/`last` are by event time (ties: the earlier / later arrival), so they do not depend
//! on how a stream was split into batches.

use std::fmt;
use std::str::FromStr;

use rustc_hash::FxHashSet;
use smallvec::SmallVec;

use crate::batch::{Batch, Values};
use crate::snapshot::{Reader, Writer};
use crate::{CoreError, CoreResult};

/// The aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggKind {
    /// Number of events.
    Count,
    /// Sum of a column.
    Sum,
    /// Smallest value of a column.
    Min,
    /// Largest value of a column.
    Max,
    /// Arithmetic mean of a column.
    Mean,
    /// Exact number of distinct values of a column.
    CountDistinct,
    /// Value at the earliest event time.
    First,
    /// Value at the latest event time.
    Last,
}

impl AggKind {
    /// The canonical names, as accepted by [`FromStr`].
    pub const NAMES: [&'static str; 8] =
        ["count", "sum", "min", "max", "mean", "count_distinct", "first", "last"];

    /// Whether the aggregate's result is an integer (counts) rather than a float.
    #[must_use]
    pub fn is_integer(self) -> bool {
        matches!(self, AggKind::Count | AggKind::CountDistinct)
    }

    /// Whether the aggregate reads a value column.
    #[must_use]
    pub fn needs_column(self) -> bool {
        self != AggKind::Count
    }

    /// Canonical name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Mean => "mean",
            AggKind::CountDistinct => "count_distinct",
            AggKind::First => "first",
            AggKind::Last => "last",
        }
    }
}

impl fmt::Display for AggKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AggKind {
    type Err = CoreError;

    fn from_str(s: &str) -> CoreResult<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "mean" | "avg" => AggKind::Mean,
            "count_distinct" | "distinct" => AggKind::CountDistinct,
            "first" => AggKind::First,
            "last" => AggKind::Last,
            other => {
                return Err(CoreError::Config(format!(
                    "unknown aggregation {other:?}; expected one of {:?}",
                    AggKind::NAMES
                )))
            }
        })
    }
}

/// One requested aggregate: output name, function and the column it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggSpec {
    /// Name of the output column.
    pub name: String,
    /// The function.
    pub kind: AggKind,
    /// The value column read (None for `count`).
    pub column: Option<String>,
}

impl AggSpec {
    /// Convenience constructor.
    #[must_use]
    pub fn new(name: &str, kind: AggKind, column: Option<&str>) -> Self {
        AggSpec { name: name.to_owned(), kind, column: column.map(str::to_owned) }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Count,
    Sum { num: usize, col: usize },
    Min { num: usize, col: usize },
    Max { num: usize, col: usize },
    Mean { num: usize, col: usize },
    First { num: usize, time: usize, col: usize },
    Last { num: usize, time: usize, col: usize },
    Distinct { set: usize, col: usize },
}

/// Exact distinct set: inline for the few values a card sees in a window, hashed beyond.
#[derive(Debug, Clone, PartialEq)]
pub enum DistinctSet {
    /// Up to [`DistinctSet::SMALL`] values, unsorted, scanned linearly.
    Small(SmallVec<[i64; 4]>),
    /// More values.
    Large(FxHashSet<i64>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Small(SmallVec::new())
    }
}

impl DistinctSet {
    /// Size at which the inline set becomes a hash set.
    pub const SMALL: usize = 32;

    /// Adds a value.
    #[inline]
    pub fn insert(&mut self, v: i64) {
        match self {
            DistinctSet::Small(s) => {
                if !s.contains(&v) {
                    if s.len() == Self::SMALL {
                        let mut h: FxHashSet<i64> = s.iter().copied().collect();
                        h.insert(v);
                        *self = DistinctSet::Large(h);
                    } else {
                        s.push(v);
                    }
                }
            }
            DistinctSet::Large(h) => {
                h.insert(v);
            }
        }
    }

    /// Number of distinct values.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Small(s) => s.len(),
            DistinctSet::Large(h) => h.len(),
        }
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in no particular order.
    pub fn values(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            DistinctSet::Small(s) => Box::new(s.iter().copied()),
            DistinctSet::Large(h) => Box::new(h.iter().copied()),
        }
    }

    fn merge(&mut self, other: &DistinctSet) {
        match other {
            DistinctSet::Small(s) => s.iter().for_each(|&v| self.insert(v)),
            DistinctSet::Large(h) => h.iter().for_each(|&v| self.insert(v)),
        }
    }

    fn clear(&mut self) {
        *self = DistinctSet::default();
    }

    fn heap_bytes(&self) -> usize {
        match self {
            DistinctSet::Small(s) if s.spilled() => s.capacity() * 8,
            DistinctSet::Small(_) => 0,
            DistinctSet::Large(h) => h.capacity() * 9,
        }
    }
}

/// The running state of one pane or session.
#[derive(Debug, Clone, PartialEq)]
pub struct Acc {
    /// Events added.
    pub count: u64,
    num: SmallVec<[f64; 4]>,
    time: SmallVec<[i64; 2]>,
    sets: SmallVec<[DistinctSet; 1]>,
}

/// Where each aggregate's result goes in an output: integer or float column, and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSlot {
    /// The n-th integer output column.
    Int(usize),
    /// The n-th float output column.
    Float(usize),
}

/// A compiled list of aggregates.
#[derive(Debug, Clone)]
pub struct Layout {
    specs: Vec<AggSpec>,
    slots: Vec<Slot>,
    outputs: Vec<OutputSlot>,
    columns: Vec<String>,
    template: Acc,
}

impl Layout {
    /// Compiles aggregate specs; value columns are numbered in order of first use.
    ///
    /// # Errors
    /// [`CoreError::Config`] for an empty list, a duplicate output name, or a missing/extra
    /// column.
    pub fn new(specs: &[AggSpec]) -> CoreResult<Self> {
        if specs.is_empty() {
            return Err(CoreError::Config("at least one aggregation is required".into()));
        }
        let mut columns: Vec<String> = Vec::new();
        let mut slots = Vec::with_capacity(specs.len());
        let mut outputs = Vec::with_capacity(specs.len());
        let (mut nums, mut times, mut sets, mut ints, mut floats) = (0, 0, 0, 0, 0);
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(CoreError::Config(format!("duplicate aggregation name {:?}", spec.name)));
            }
            if matches!(spec.name.as_str(), "key" | "window_start" | "window_end" | "kind") {
                return Err(CoreError::Config(format!(
                    "aggregation name {:?} clashes with an output column",
                    spec.name
                )));
            }
            let col = match (&spec.column, spec.kind.needs_column()) {
                (Some(c), true) => Some(match columns.iter().position(|x| x == c) {
                    Some(p) => p,
                    None => {
                        columns.push(c.clone());
                        columns.len() - 1
                    }
                }),
                (None, false) => None,
                (None, true) => {
                    return Err(CoreError::Config(format!(
                        "aggregation {:?} ({}) needs a column",
                        spec.name, spec.kind
                    )))
                }
                (Some(c), false) => {
                    return Err(CoreError::Config(format!(
                        "aggregation {:?} (count) takes no column, got {c:?}",
                        spec.name
                    )))
                }
            };
            let col = col.unwrap_or(0);
            let take = |n: &mut usize| {
                *n += 1;
                *n - 1
            };
            slots.push(match spec.kind {
                AggKind::Count => Slot::Count,
                AggKind::Sum => Slot::Sum { num: take(&mut nums), col },
                AggKind::Min => Slot::Min { num: take(&mut nums), col },
                AggKind::Max => Slot::Max { num: take(&mut nums), col },
                AggKind::Mean => Slot::Mean { num: take(&mut nums), col },
                AggKind::First => Slot::First { num: take(&mut nums), time: take(&mut times), col },
                AggKind::Last => Slot::Last { num: take(&mut nums), time: take(&mut times), col },
                AggKind::CountDistinct => Slot::Distinct { set: take(&mut sets), col },
            });
            outputs.push(if spec.kind.is_integer() {
                OutputSlot::Int(take(&mut ints))
            } else {
                OutputSlot::Float(take(&mut floats))
            });
        }
        let mut template = Acc {
            count: 0,
            num: SmallVec::from_elem(0.0, nums),
            time: SmallVec::from_elem(0, times),
            sets: (0..sets).map(|_| DistinctSet::default()).collect(),
        };
        let mut layout =
            Layout { specs: specs.to_vec(), slots, outputs, columns, template: template.clone() };
        layout.reset(&mut template);
        layout.template = template;
        Ok(layout)
    }

    /// The specs this layout was compiled from.
    #[must_use]
    pub fn specs(&self) -> &[AggSpec] {
        &self.specs
    }

    /// Value columns read, in the order a batch must pass them.
    #[must_use]
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Output slot of each aggregate.
    #[must_use]
    pub fn outputs(&self) -> &[OutputSlot] {
        &self.outputs
    }

    /// Number of (integer, float) output columns.
    #[must_use]
    pub fn output_widths(&self) -> (usize, usize) {
        let ints = self.outputs.iter().filter(|o| matches!(o, OutputSlot::Int(_))).count();
        (ints, self.outputs.len() - ints)
    }

    /// A fresh, empty accumulator.
    #[must_use]
    pub fn new_acc(&self) -> Acc {
        self.template.clone()
    }

    /// Empties `acc` in place (keeps its allocations).
    pub fn reset(&self, acc: &mut Acc) {
        acc.count = 0;
        for slot in &self.slots {
            match *slot {
                Slot::Count => {}
                Slot::Sum { num, .. } | Slot::Mean { num, .. } => acc.num[num] = 0.0,
                Slot::Min { num, .. } => acc.num[num] = f64::INFINITY,
                Slot::Max { num, .. } => acc.num[num] = f64::NEG_INFINITY,
                Slot::First { num, time, .. } => {
                    acc.num[num] = f64::NAN;
                    acc.time[time] = i64::MAX;
                }
                Slot::Last { num, time, .. } => {
                    acc.num[num] = f64::NAN;
                    acc.time[time] = i64::MIN;
                }
                Slot::Distinct { set, .. } => acc.sets[set].clear(),
            }
        }
    }

    /// Adds the event at `row` of `batch` (event time `t`).
    #[inline]
    pub fn add(&self, acc: &mut Acc, batch: &Batch<'_>, row: usize, t: i64) {
        acc.count += 1;
        let values: &[Values<'_>] = &batch.values;
        for slot in &self.slots {
            match *slot {
                Slot::Count => {}
                Slot::Sum { num, col } | Slot::Mean { num, col } => {
                    acc.num[num] += values[col].number(row);
                }
                Slot::Min { num, col } => acc.num[num] = acc.num[num].min(values[col].number(row)),
                Slot::Max { num, col } => acc.num[num] = acc.num[num].max(values[col].number(row)),
                Slot::First { num, time, col } => {
                    if t < acc.time[time] {
                        acc.time[time] = t;
                        acc.num[num] = values[col].number(row);
                    }
                }
                Slot::Last { num, time, col } => {
                    if t >= acc.time[time] {
                        acc.time[time] = t;
                        acc.num[num] = values[col].number(row);
                    }
                }
                Slot::Distinct { set, col } => acc.sets[set].insert(values[col].identity(row)),
            }
        }
    }

    /// Folds `from` into `into`. For `first`/`last` ties, `into` is taken as the earlier.
    pub fn merge(&self, into: &mut Acc, from: &Acc) {
        into.count += from.count;
        for slot in &self.slots {
            match *slot {
                Slot::Count => {}
                Slot::Sum { num, .. } | Slot::Mean { num, .. } => into.num[num] += from.num[num],
                Slot::Min { num, .. } => into.num[num] = into.num[num].min(from.num[num]),
                Slot::Max { num, .. } => into.num[num] = into.num[num].max(from.num[num]),
                Slot::First { num, time, .. } => {
                    if from.time[time] < into.time[time] {
                        into.time[time] = from.time[time];
                        into.num[num] = from.num[num];
                    }
                }
                Slot::Last { num, time, .. } => {
                    if from.count > 0 && from.time[time] >= into.time[time] {
                        into.time[time] = from.time[time];
                        into.num[num] = from.num[num];
                    }
                }
                Slot::Distinct { set, .. } => into.sets[set].merge(&from.sets[set]),
            }
        }
    }

    /// The result of aggregate `agg` as a float (for predicates).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn value(&self, acc: &Acc, agg: usize) -> f64 {
        match self.slots[agg] {
            Slot::Count => acc.count as f64,
            Slot::Sum { num, .. }
            | Slot::Min { num, .. }
            | Slot::Max { num, .. }
            | Slot::First { num, .. }
            | Slot::Last { num, .. } => acc.num[num],
            Slot::Mean { num, .. } => acc.num[num] / acc.count as f64,
            Slot::Distinct { set, .. } => acc.sets[set].len() as f64,
        }
    }

    /// Appends every aggregate's result to the output columns.
    #[allow(clippy::cast_possible_wrap)]
    pub fn emit(&self, acc: &Acc, ints: &mut [Vec<i64>], floats: &mut [Vec<f64>]) {
        for (agg, out) in self.outputs.iter().enumerate() {
            match (*out, self.slots[agg]) {
                (OutputSlot::Int(i), Slot::Count) => ints[i].push(acc.count as i64),
                (OutputSlot::Int(i), Slot::Distinct { set, .. }) => {
                    ints[i].push(acc.sets[set].len() as i64);
                }
                (OutputSlot::Float(f), _) => floats[f].push(self.value(acc, agg)),
                (OutputSlot::Int(_), _) => unreachable!("integer outputs are counts"),
            }
        }
    }

    /// Heap bytes held by `acc` beyond its inline size.
    #[must_use]
    pub fn heap_bytes(acc: &Acc) -> usize {
        let inline = |spilled: bool, bytes: usize| if spilled { bytes } else { 0 };
        inline(acc.num.spilled(), acc.num.capacity() * 8)
            + inline(acc.time.spilled(), acc.time.capacity() * 8)
            + acc.sets.iter().map(DistinctSet::heap_bytes).sum::<usize>()
    }

    /// Writes `acc` to a snapshot.
    pub fn write_acc(acc: &Acc, w: &mut Writer) {
        w.u64(acc.count);
        w.count(acc.num.len());
        acc.num.iter().for_each(|&x| w.f64(x));
        w.count(acc.time.len());
        acc.time.iter().for_each(|&t| w.i64(t));
        w.count(acc.sets.len());
        for set in &acc.sets {
            let mut values: Vec<i64> = set.values().collect();
            values.sort_unstable();
            w.count(values.len());
            values.iter().for_each(|&v| w.i64(v));
        }
    }

    /// Reads an accumulator written by [`Layout::write_acc`], checking it fits this layout.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] when truncated or shaped for another layout.
    pub fn read_acc(&self, r: &mut Reader<'_>) -> CoreResult<Acc> {
        let mut acc = self.new_acc();
        acc.count = r.u64()?;
        r.expect_len(acc.num.len(), "numeric slots")?;
        for x in &mut acc.num {
            *x = r.f64()?;
        }
        r.expect_len(acc.time.len(), "time slots")?;
        for t in &mut acc.time {
            *t = r.i64()?;
        }
        r.expect_len(acc.sets.len(), "distinct sets")?;
        for set in &mut acc.sets {
            let n = r.count()?;
            for _ in 0..n {
                set.insert(r.i64()?);
            }
        }
        Ok(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(&[
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("total", AggKind::Sum, Some("amount")),
            AggSpec::new("lo", AggKind::Min, Some("amount")),
            AggSpec::new("hi", AggKind::Max, Some("amount")),
            AggSpec::new("avg", AggKind::Mean, Some("amount")),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
            AggSpec::new("first", AggKind::First, Some("amount")),
            AggSpec::new("last", AggKind::Last, Some("amount")),
        ])
        .unwrap()
    }

    fn add_all(l: &Layout, acc: &mut Acc, times: &[i64], amounts: &[f64], countries: &[i64]) {
        let keys = vec![0; times.len()];
        let b =
            Batch { values: vec![Values::F64(amounts), Values::I64(countries)], ..Batch::new(&keys, times) };
        for (row, &t) in times.iter().enumerate() {
            l.add(acc, &b, row, t);
        }
    }

    #[test]
    fn columns_in_order_of_first_use() {
        assert_eq!(layout().columns(), ["amount", "country"]);
        assert_eq!(layout().output_widths(), (2, 6));
    }

    #[test]
    fn every_function_over_one_accumulator() {
        let l = layout();
        let mut acc = l.new_acc();
        add_all(&l, &mut acc, &[5, 3, 9, 9], &[10.0, 2.0, 7.0, 8.0], &[1, 2, 1, 3]);
        let v = |i| l.value(&acc, i);
        assert_eq!((v(0), v(1), v(2), v(3), v(4), v(5)), (4.0, 27.0, 2.0, 10.0, 6.75, 3.0));
        assert_eq!(v(6), 2.0, "first = value at the earliest time");
        assert_eq!(v(7), 8.0, "last = later arrival among equal latest times");
    }

    #[test]
    fn merge_equals_adding_everything_to_one() {
        let l = layout();
        let (mut a, mut b, mut whole) = (l.new_acc(), l.new_acc(), l.new_acc());
        add_all(&l, &mut a, &[1, 2], &[1.0, 2.0], &[7, 8]);
        add_all(&l, &mut b, &[3, 4], &[3.0, 4.0], &[8, 9]);
        add_all(&l, &mut whole, &[1, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0], &[7, 8, 8, 9]);
        l.merge(&mut a, &b);
        for i in 0..8 {
            assert_eq!(l.value(&a, i), l.value(&whole, i), "aggregate {i}");
        }
    }

    #[test]
    fn distinct_set_spills_to_a_hash_set_exactly() {
        let mut s = DistinctSet::default();
        for v in 0..100 {
            s.insert(v % 70);
        }
        assert!(matches!(s, DistinctSet::Large(_)));
        assert_eq!(s.len(), 70);
    }

    #[test]
    fn configuration_errors() {
        assert!(Layout::new(&[]).is_err());
        assert!(Layout::new(&[AggSpec::new("s", AggKind::Sum, None)]).is_err());
        assert!(Layout::new(&[AggSpec::new("n", AggKind::Count, Some("x"))]).is_err());
        let dup = [AggSpec::new("n", AggKind::Count, None), AggSpec::new("n", AggKind::Count, None)];
        assert!(Layout::new(&dup).is_err());
        assert!("median".parse::<AggKind>().is_err());
        assert_eq!("avg".parse::<AggKind>().unwrap(), AggKind::Mean);
    }

    #[test]
    fn snapshot_round_trip() {
        let l = layout();
        let mut acc = l.new_acc();
        add_all(&l, &mut acc, &[5, 3], &[10.0, 2.0], &[1, 2]);
        let mut w = Writer::default();
        Layout::write_acc(&acc, &mut w);
        let bytes = w.into_bytes();
        let back = l.read_acc(&mut Reader::new(&bytes)).unwrap();
        for i in 0..8 {
            assert_eq!(l.value(&acc, i).to_bits(), l.value(&back, i).to_bits());
        }
    }
}
