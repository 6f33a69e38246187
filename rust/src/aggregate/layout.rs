//! A compiled list of aggregates: where each keeps its state in an [`Acc`], and the per-event
//! add, the merge of two accumulators, the emitted values and the state bytes.

use smallvec::SmallVec;

use super::acc::{Acc, AccMut, AccRef, Overflow};
use super::distinct::{DistinctSet, BITMAP_VALUES};
use super::kinds::{AggKind, AggSpec};
use crate::batch::{Batch, Values};
use crate::snapshot::{Reader, Writer};
use crate::{CoreError, CoreResult};

/// Where an aggregate keeps its state in an [`Acc`]: `num`/`time` are word indices, `word` is
/// the word of a distinct set's bitmap and `set` its index among the distinct sets.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Count,
    Sum { num: usize, col: usize },
    Min { num: usize, col: usize },
    Max { num: usize, col: usize },
    Mean { num: usize, col: usize },
    First { num: usize, time: usize, col: usize },
    Last { num: usize, time: usize, col: usize },
    Distinct { word: usize, set: usize, col: usize },
}

/// Where each aggregate's result goes in an output: integer or float column, and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSlot {
    /// The n-th integer output column.
    Int(usize),
    /// The n-th float output column.
    Float(usize),
}

/// The slots of a layout grouped by what adding and merging do to them, so that those run as
/// loops over short lists rather than a branch on the kind of every slot (word indices and
/// value columns, as in [`Slot`]).
#[derive(Debug, Clone, Default)]
struct Ops {
    /// `(num, col)` of sums and means.
    sums: Vec<(usize, usize)>,
    mins: Vec<(usize, usize)>,
    maxs: Vec<(usize, usize)>,
    /// `(num, time, col)`.
    firsts: Vec<(usize, usize, usize)>,
    lasts: Vec<(usize, usize, usize)>,
    /// `(word, set, col)`.
    distincts: Vec<(usize, usize, usize)>,
    /// Whether any min, max, first or last is present (most layouts are counts, sums and
    /// distinct counts: one test skips four empty loops per event and per merge).
    ordered: bool,
}

impl Ops {
    fn of(slots: &[Slot]) -> Self {
        let mut ops = Ops::default();
        for slot in slots {
            match *slot {
                Slot::Count => {}
                Slot::Sum { num, col } | Slot::Mean { num, col } => ops.sums.push((num, col)),
                Slot::Min { num, col } => ops.mins.push((num, col)),
                Slot::Max { num, col } => ops.maxs.push((num, col)),
                Slot::First { num, time, col } => ops.firsts.push((num, time, col)),
                Slot::Last { num, time, col } => ops.lasts.push((num, time, col)),
                Slot::Distinct { word, set, col } => ops.distincts.push((word, set, col)),
            }
        }
        ops.ordered =
            !(ops.mins.is_empty() && ops.maxs.is_empty() && ops.firsts.is_empty() && ops.lasts.is_empty());
        ops
    }
}

/// A compiled list of aggregates.
#[derive(Debug, Clone)]
pub struct Layout {
    specs: Vec<AggSpec>,
    slots: Vec<Slot>,
    ops: Ops,
    outputs: Vec<OutputSlot>,
    columns: Vec<String>,
    /// Numbers of numeric slots, time slots and distinct sets.
    nums: usize,
    times: usize,
    sets: usize,
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
                AggKind::CountDistinct => Slot::Distinct { word: 0, set: take(&mut sets), col },
            });
            outputs.push(if spec.kind.is_integer() {
                OutputSlot::Int(take(&mut ints))
            } else {
                OutputSlot::Float(take(&mut floats))
            });
        }
        // Word layout: numeric slots, then time slots, then one bitmap per distinct set.
        for slot in &mut slots {
            match slot {
                Slot::First { time, .. } | Slot::Last { time, .. } => *time += nums,
                Slot::Distinct { word, set, .. } => *word = nums + times + *set,
                _ => {}
            }
        }
        let mut template = Acc { count: 0, words: SmallVec::from_elem(0, nums + times + sets), others: None };
        let mut layout = Layout {
            specs: specs.to_vec(),
            slots,
            outputs,
            columns,
            nums,
            times,
            sets,
            template: template.clone(),
            ops: Ops::default(),
        };
        layout.empty_words(&mut template.view_mut());
        layout.ops = Ops::of(&layout.slots);
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
    #[inline]
    pub fn new_acc(&self) -> Acc {
        Acc { count: 0, words: SmallVec::from_slice(&self.template.words), others: None }
    }

    /// Empties `acc` in place (keeps its allocations).
    pub fn reset(&self, acc: &mut Acc) {
        acc.count = 0;
        acc.words.copy_from_slice(&self.template.words);
        if let Some(others) = &mut acc.others {
            others.iter_mut().for_each(DistinctSet::clear);
        }
    }

    /// The empty state words of this layout, by slot.
    fn empty_words(&self, acc: &mut AccMut<'_>) {
        for slot in &self.slots {
            match *slot {
                Slot::Count => {}
                Slot::Sum { num, .. } | Slot::Mean { num, .. } => acc.set_num(num, 0.0),
                Slot::Min { num, .. } => acc.set_num(num, f64::INFINITY),
                Slot::Max { num, .. } => acc.set_num(num, f64::NEG_INFINITY),
                Slot::First { num, time, .. } => {
                    acc.set_num(num, f64::NAN);
                    acc.set_time(time, i64::MAX);
                }
                Slot::Last { num, time, .. } => {
                    acc.set_num(num, f64::NAN);
                    acc.set_time(time, i64::MIN);
                }
                Slot::Distinct { word, .. } => acc.words[word] = 0,
            }
        }
    }

    /// Adds the event at `row` of `batch` (event time `t`).
    #[inline]
    pub fn add(&self, acc: &mut Acc, batch: &Batch<'_>, row: usize, t: i64) {
        self.add_to(&mut acc.view_mut(), batch, row, t);
    }

    #[inline(always)]
    fn add_to(&self, acc: &mut AccMut<'_>, batch: &Batch<'_>, row: usize, t: i64) {
        *acc.count += 1;
        let values: &[Values<'_>] = &batch.values;
        let ops = &self.ops;
        for &(num, col) in &ops.sums {
            acc.set_num(num, acc.num(num) + values[col].number(row));
        }
        if ops.ordered {
            for &(num, col) in &ops.mins {
                acc.set_num(num, acc.num(num).min(values[col].number(row)));
            }
            for &(num, col) in &ops.maxs {
                acc.set_num(num, acc.num(num).max(values[col].number(row)));
            }
            for &(num, time, col) in &ops.firsts {
                if t < acc.time(time) {
                    acc.set_time(time, t);
                    acc.set_num(num, values[col].number(row));
                }
            }
            for &(num, time, col) in &ops.lasts {
                if t >= acc.time(time) {
                    acc.set_time(time, t);
                    acc.set_num(num, values[col].number(row));
                }
            }
        }
        for &(word, set, col) in &ops.distincts {
            acc.insert_distinct(word, set, self.sets, values[col].identity(row));
        }
    }

    /// Folds `from` into `into`. For `first`/`last` ties, `into` is taken as the earlier.
    pub fn merge(&self, into: &mut Acc, from: &Acc) {
        self.merge_words(&mut into.view_mut(), from.view());
        self.merge_overflow(&mut into.others, &from.others);
    }

    /// Folds the distinct values of `from` outside the bitmaps into `into` (out of line: rare,
    /// and the callers are per-row loops).
    #[inline(never)]
    fn merge_overflow(&self, into: &mut Overflow, from: &Overflow) {
        if let Some(others) = from {
            for (set, o) in others.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
                let sets = self.sets;
                into.get_or_insert_with(|| Box::new((0..sets).map(|_| DistinctSet::default()).collect()))
                    [set]
                    .merge(o);
            }
        }
    }

    /// Empties `overflow` in place (keeps its allocation).
    #[inline]
    pub fn reset_overflow(overflow: &mut Overflow) {
        if let Some(others) = overflow {
            others.iter_mut().for_each(DistinctSet::clear);
        }
    }

    /// Heap bytes held by `overflow`.
    #[must_use]
    pub fn overflow_bytes(overflow: &Overflow) -> usize {
        overflow.as_ref().map_or(0, |o| {
            std::mem::size_of_val::<SmallVec<[DistinctSet; 1]>>(o)
                + if o.spilled() { o.capacity() * std::mem::size_of::<DistinctSet>() } else { 0 }
                + o.iter().map(DistinctSet::heap_bytes).sum::<usize>()
        })
    }

    /// [`Layout::merge`] of the count and words (not of distinct values outside the bitmaps).
    #[inline(always)]
    fn merge_words(&self, into: &mut AccMut<'_>, from: AccRef<'_>) {
        *into.count += from.count;
        let ops = &self.ops;
        for &(num, _) in &ops.sums {
            into.set_num(num, into.num(num) + from.num(num));
        }
        if ops.ordered {
            for &(num, _) in &ops.mins {
                into.set_num(num, into.num(num).min(from.num(num)));
            }
            for &(num, _) in &ops.maxs {
                into.set_num(num, into.num(num).max(from.num(num)));
            }
            for &(num, time, _) in &ops.firsts {
                if from.time(time) < into.time(time) {
                    into.set_time(time, from.time(time));
                    into.set_num(num, from.num(num));
                }
            }
            for &(num, time, _) in &ops.lasts {
                if from.count > 0 && from.time(time) >= into.time(time) {
                    into.set_time(time, from.time(time));
                    into.set_num(num, from.num(num));
                }
            }
        }
        for &(word, _, _) in &ops.distincts {
            into.words[word] |= from.words[word];
        }
    }

    /// The result of aggregate `agg` as a float (for predicates).
    #[must_use]
    pub fn value(&self, acc: &Acc, agg: usize) -> f64 {
        self.value_of(acc.view(), agg)
    }

    fn value_of(&self, acc: AccRef<'_>, agg: usize) -> f64 {
        match self.slots[agg] {
            Slot::Count => acc.count as f64,
            Slot::Sum { num, .. }
            | Slot::Min { num, .. }
            | Slot::Max { num, .. }
            | Slot::First { num, .. }
            | Slot::Last { num, .. } => acc.num(num),
            Slot::Mean { num, .. } => acc.num(num) / acc.count as f64,
            Slot::Distinct { word, set, .. } => acc.distinct_len(word, set) as f64,
        }
    }

    /// Appends every aggregate's result to the output columns.
    pub fn emit(&self, acc: &Acc, ints: &mut [Vec<i64>], floats: &mut [Vec<f64>]) {
        self.emit_of(acc.view(), ints, floats);
    }

    #[inline]
    fn emit_of(&self, acc: AccRef<'_>, ints: &mut [Vec<i64>], floats: &mut [Vec<f64>]) {
        self.emit_with(acc, |i, v| ints[i].push(v), |f, v| floats[f].push(v));
    }

    /// Every aggregate's result of `acc`, to `int(column, value)` or `float(column, value)`.
    #[inline(always)]
    fn emit_with(&self, acc: AccRef<'_>, mut int: impl FnMut(usize, i64), mut float: impl FnMut(usize, f64)) {
        for (agg, out) in self.outputs.iter().enumerate() {
            match (*out, self.slots[agg]) {
                (OutputSlot::Int(i), Slot::Count) => int(i, acc.count as i64),
                (OutputSlot::Int(i), Slot::Distinct { word, set, .. }) => {
                    int(i, acc.distinct_len(word, set) as i64);
                }
                (OutputSlot::Float(f), _) => float(f, self.value_of(acc, agg)),
                (OutputSlot::Int(_), _) => unreachable!("integer outputs are counts"),
            }
        }
    }

    /// Words of a flat accumulator: its count, then its state words. Flat accumulators are
    /// plain `u64` runs that columnar state stores side by side; distinct values outside the
    /// bitmaps go to an [`Overflow`] kept beside them (see [`Layout::fits_flat`]).
    #[must_use]
    pub fn flat_width(&self) -> usize {
        1 + self.template.words.len()
    }

    /// An empty flat accumulator.
    #[must_use]
    pub fn flat_empty(&self) -> Vec<u64> {
        std::iter::once(0).chain(self.template.words.iter().copied()).collect()
    }

    /// Whether the event at `row` fits a flat accumulator alone: each distinct count's value
    /// is in the bitmap range `[0, 64)` (else [`Layout::add_flat`] needs the overflow).
    #[inline]
    #[must_use]
    pub fn fits_flat(&self, batch: &Batch<'_>, row: usize) -> bool {
        self.ops
            .distincts
            .iter()
            .all(|&(_, _, col)| (0..BITMAP_VALUES).contains(&batch.values[col].identity(row)))
    }

    /// [`Layout::add`] into a flat accumulator; `overflow` may be `None` when the event
    /// [`Layout::fits_flat`].
    #[inline]
    pub fn add_flat(
        &self,
        acc: &mut [u64],
        overflow: Option<&mut Overflow>,
        batch: &Batch<'_>,
        row: usize,
        t: i64,
    ) {
        self.add_to(&mut AccMut::flat(acc, overflow), batch, row, t);
    }

    /// [`Layout::merge`] of flat accumulators and their overflows.
    #[inline(always)]
    pub fn merge_flat(
        &self,
        into: &mut [u64],
        into_overflow: &mut Overflow,
        from: &[u64],
        from_overflow: Option<&Overflow>,
    ) {
        self.merge_words(&mut AccMut::flat(into, None), AccRef::flat(from, None));
        if let Some(o) = from_overflow {
            self.merge_overflow(into_overflow, o);
        }
    }

    /// Writes the results of a flat accumulator to row `at` of the output columns (which have
    /// that row already).
    #[inline(always)]
    pub fn emit_flat_at(
        &self,
        acc: &[u64],
        overflow: &Overflow,
        ints: &mut [Vec<i64>],
        floats: &mut [Vec<f64>],
        at: usize,
    ) {
        self.emit_with(AccRef::flat(acc, Some(overflow)), |i, v| ints[i][at] = v, |f, v| floats[f][at] = v);
    }

    /// [`Layout::emit`] of a flat accumulator.
    #[inline]
    pub fn emit_flat(
        &self,
        acc: &[u64],
        overflow: &Overflow,
        ints: &mut [Vec<i64>],
        floats: &mut [Vec<f64>],
    ) {
        self.emit_of(AccRef::flat(acc, Some(overflow)), ints, floats);
    }

    /// [`Layout::value`] of a flat accumulator and its overflow.
    #[must_use]
    pub fn value_flat(&self, acc: &[u64], overflow: &Overflow, agg: usize) -> f64 {
        self.value_of(AccRef::flat(acc, Some(overflow)), agg)
    }

    /// The [`Acc`] of a flat accumulator and its overflow.
    #[must_use]
    pub fn acc_of_flat(&self, flat: &[u64], overflow: Option<&Overflow>) -> Acc {
        Acc { count: flat[0], words: SmallVec::from_slice(&flat[1..]), others: overflow.cloned().flatten() }
    }

    /// Writes `acc` into the flat accumulator `flat`; returns its overflow (`None`: nothing
    /// outside the bitmaps).
    #[must_use]
    pub fn flat_of_acc(&self, acc: &Acc, flat: &mut [u64]) -> Overflow {
        flat[0] = acc.count;
        flat[1..].copy_from_slice(&acc.words);
        acc.others.clone().filter(|o| o.iter().any(|s| !s.is_empty()))
    }

    /// Heap bytes held by `acc` beyond its inline size.
    #[must_use]
    pub fn heap_bytes(acc: &Acc) -> usize {
        let words = if acc.words.spilled() { acc.words.capacity() * 8 } else { 0 };
        words + Layout::overflow_bytes(&acc.others)
    }

    /// Writes `acc` to a snapshot (numeric slots, time slots, then each distinct set's values
    /// in increasing order).
    pub fn write_acc(&self, acc: &Acc, w: &mut Writer) {
        w.u64(acc.count);
        let view = acc.view();
        w.count(self.nums);
        (0..self.nums).for_each(|i| w.f64(view.num(i)));
        w.count(self.times);
        (0..self.times).for_each(|i| w.i64(view.time(self.nums + i)));
        w.count(self.sets);
        for set in 0..self.sets {
            let values = acc.distinct_values(self.nums + self.times + set, set);
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
        let mut view = acc.view_mut();
        *view.count = r.u64()?;
        r.expect_len(self.nums, "numeric slots")?;
        for i in 0..self.nums {
            view.set_num(i, r.f64()?);
        }
        r.expect_len(self.times, "time slots")?;
        for i in 0..self.times {
            view.set_time(self.nums + i, r.i64()?);
        }
        r.expect_len(self.sets, "distinct sets")?;
        for set in 0..self.sets {
            let n = r.count()?;
            for _ in 0..n {
                view.insert_distinct(self.nums + self.times + set, set, self.sets, r.i64()?);
            }
        }
        Ok(acc)
    }
}
