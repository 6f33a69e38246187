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

/// Exact set of the values of a distinct count that the bitmap of an [`Acc`] does not hold
/// (outside `[0, 64)`): inline for the few values a card sees in a window, hashed beyond.
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
        match self {
            DistinctSet::Small(s) => s.clear(),
            DistinctSet::Large(_) => *self = DistinctSet::default(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            DistinctSet::Small(s) if s.spilled() => s.capacity() * 8,
            DistinctSet::Small(_) => 0,
            DistinctSet::Large(h) => h.capacity() * 9,
        }
    }
}

/// Values of a distinct count below this bound (and not negative) live in a bitmap word.
const BITMAP_VALUES: i64 = 64;

/// The running state of one pane or session.
///
/// Compact on purpose (56 bytes for up to four state words), since keyed state for many keys
/// is bound by cache misses: `words` holds the numeric slots (f64 bits), the time slots and one
/// bitmap per distinct count (its values in `[0, 64)`, e.g. small category codes); distinct
/// values outside that range go to `others`, allocated only when such a value occurs.
///
/// The default is an empty placeholder without state words (for storage slots not in use);
/// [`Layout::new_acc`] makes a real one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Acc {
    /// Events added.
    pub count: u64,
    words: SmallVec<[u64; 4]>,
    others: Overflow,
}

/// The distinct values of an accumulator outside its bitmaps, one set per distinct count
/// (allocated on first use; `None` while there is none). A flat accumulator keeps it beside
/// itself, where it has any.
pub type Overflow = Option<Box<SmallVec<[DistinctSet; 1]>>>;

impl Acc {
    /// Whether the accumulator holds heap data (distinct values outside the bitmap range, or
    /// more state words than fit inline).
    #[inline]
    #[must_use]
    pub fn has_heap(&self) -> bool {
        self.others.is_some() || self.words.spilled()
    }

    #[inline]
    fn view(&self) -> AccRef<'_> {
        AccRef { count: self.count, words: &self.words, others: self.others.as_deref() }
    }

    #[inline]
    fn view_mut(&mut self) -> AccMut<'_> {
        AccMut { count: &mut self.count, words: &mut self.words, others: Some(&mut self.others) }
    }

    /// The values of a distinct set, sorted.
    fn distinct_values(&self, word: usize, set: usize) -> Vec<i64> {
        let acc = self.view();
        let mut values: Vec<i64> = Vec::with_capacity(acc.distinct_len(word, set));
        let mut bits = acc.words[word];
        while bits != 0 {
            values.push(i64::from(bits.trailing_zeros()));
            bits &= bits - 1;
        }
        if let Some(o) = acc.others_of(set) {
            values.extend(o.values());
        }
        values.sort_unstable();
        values
    }
}

/// An accumulator's state, read: its count, its state words (f64 bits of the numeric slots,
/// the time slots, a bitmap per distinct count) and its distinct values outside the bitmaps.
/// Views an [`Acc`] or a flat accumulator (`[count, words...]`, no values outside the bitmaps):
/// one implementation of each aggregate for both.
#[derive(Clone, Copy)]
struct AccRef<'a> {
    count: u64,
    words: &'a [u64],
    others: Option<&'a SmallVec<[DistinctSet; 1]>>,
}

impl<'a> AccRef<'a> {
    #[inline]
    fn flat(flat: &'a [u64], overflow: Option<&'a Overflow>) -> Self {
        AccRef { count: flat[0], words: &flat[1..], others: overflow.and_then(|o| o.as_deref()) }
    }

    #[inline]
    fn num(&self, i: usize) -> f64 {
        f64::from_bits(self.words[i])
    }

    #[inline]
    fn time(&self, i: usize) -> i64 {
        self.words[i] as i64
    }

    fn others_of(&self, set: usize) -> Option<&'a DistinctSet> {
        self.others.map(|o| &o[set])
    }

    #[inline]
    fn distinct_len(&self, word: usize, set: usize) -> usize {
        self.words[word].count_ones() as usize + self.others_of(set).map_or(0, DistinctSet::len)
    }
}

/// An accumulator's state, written (see [`AccRef`]); `others` is `None` for a flat one.
struct AccMut<'a> {
    count: &'a mut u64,
    words: &'a mut [u64],
    others: Option<&'a mut Overflow>,
}

impl<'a> AccMut<'a> {
    #[inline]
    fn flat(flat: &'a mut [u64], overflow: Option<&'a mut Overflow>) -> Self {
        let (count, words) = flat.split_first_mut().expect("a flat accumulator starts with its count");
        AccMut { count, words, others: overflow }
    }

    #[inline]
    fn num(&self, i: usize) -> f64 {
        f64::from_bits(self.words[i])
    }

    #[inline]
    fn set_num(&mut self, i: usize, x: f64) {
        self.words[i] = x.to_bits();
    }

    #[inline]
    fn time(&self, i: usize) -> i64 {
        self.words[i] as i64
    }

    #[inline]
    fn set_time(&mut self, i: usize, t: i64) {
        self.words[i] = t as u64;
    }

    fn others_mut(&mut self, set: usize, sets: usize) -> &mut DistinctSet {
        let others = self.others.as_deref_mut().expect(
            "a distinct value outside the bitmaps needs the accumulator's overflow (Layout::fits_flat)",
        );
        &mut others.get_or_insert_with(|| Box::new((0..sets).map(|_| DistinctSet::default()).collect()))[set]
    }

    /// Adds `v` to the distinct set with bitmap `word` and index `set` (of `sets`).
    #[inline]
    fn insert_distinct(&mut self, word: usize, set: usize, sets: usize, v: i64) {
        if (0..BITMAP_VALUES).contains(&v) {
            self.words[word] |= 1u64 << v;
        } else {
            self.others_mut(set, sets).insert(v);
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

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

    fn distinct_layout() -> Layout {
        Layout::new(&[
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("a", AggKind::CountDistinct, Some("x")),
            AggSpec::new("s", AggKind::Sum, Some("y")),
            AggSpec::new("b", AggKind::CountDistinct, Some("y")),
        ])
        .unwrap()
    }

    fn add_values(l: &Layout, acc: &mut Acc, xs: &[i64]) {
        let keys = vec![0; xs.len()];
        let ys: Vec<f64> = xs.iter().map(|&x| (x % 7) as f64).collect();
        let b = Batch { values: vec![Values::I64(xs), Values::F64(&ys)], ..Batch::new(&keys, &keys) };
        for row in 0..xs.len() {
            l.add(acc, &b, row, 0);
        }
    }

    /// Values around the bitmap bounds, small codes and large ids.
    fn value() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..64, -3i64..3, 60i64..70, any::<i64>(), Just(i64::MIN), Just(i64::MAX)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The compact distinct set (bitmap for [0, 64) + inline/hashed rest) against a BTreeSet:
        /// add, merge, snapshot round trip and reset.
        #[test]
        fn compact_distinct_set_matches_btreeset(
            xs in proptest::collection::vec(value(), 0..80),
            ys in proptest::collection::vec(value(), 0..80),
        ) {
            let l = distinct_layout();
            let (mut a, mut b) = (l.new_acc(), l.new_acc());
            add_values(&l, &mut a, &xs);
            add_values(&l, &mut b, &ys);
            let oracle_a: BTreeSet<i64> = xs.iter().copied().collect();
            prop_assert_eq!(l.value(&a, 1), oracle_a.len() as f64);
            prop_assert_eq!(a.distinct_values(1, 0), oracle_a.iter().copied().collect::<Vec<_>>());
            l.merge(&mut a, &b);
            let oracle: BTreeSet<i64> = xs.iter().chain(&ys).copied().collect();
            prop_assert_eq!(l.value(&a, 1), oracle.len() as f64);
            prop_assert_eq!(a.distinct_values(1, 0), oracle.iter().copied().collect::<Vec<_>>());
            let ys_oracle: BTreeSet<i64> = xs.iter().chain(&ys).map(|&x| Values::F64(&[(x % 7) as f64]).identity(0)).collect();
            prop_assert_eq!(l.value(&a, 3), ys_oracle.len() as f64);
            prop_assert_eq!(a.count, (xs.len() + ys.len()) as u64);

            let mut w = Writer::default();
            l.write_acc(&a, &mut w);
            let bytes = w.into_bytes();
            let back = l.read_acc(&mut Reader::new(&bytes)).unwrap();
            let mut w2 = Writer::default();
            l.write_acc(&back, &mut w2);
            prop_assert_eq!(w2.into_bytes(), bytes, "round trip gives the same bytes");
            prop_assert_eq!(l.value(&back, 1), oracle.len() as f64);

            l.reset(&mut a);
            prop_assert_eq!(l.value(&a, 1), 0.0);
            prop_assert_eq!(l.value(&a, 3), 0.0);
            add_values(&l, &mut a, &ys);
            let oracle_b: BTreeSet<i64> = ys.iter().copied().collect();
            prop_assert_eq!(a.distinct_values(1, 0), oracle_b.iter().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn accumulator_is_compact() {
        assert_eq!(std::mem::size_of::<Acc>(), 56);
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
        l.write_acc(&acc, &mut w);
        let bytes = w.into_bytes();
        let back = l.read_acc(&mut Reader::new(&bytes)).unwrap();
        for i in 0..8 {
            assert_eq!(l.value(&acc, i).to_bits(), l.value(&back, i).to_bits());
        }
    }
}
