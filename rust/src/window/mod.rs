//! Keyed event-time windows: assigners, panes, keyed state and firing.
//!
//! Semantics are Apache Flink's (see `docs/semantics.md`): windows are half-open
//! `[start, end)`, aligned to the epoch plus an offset; a window fires when the watermark
//! reaches `end - 1`; its state lives until `end - 1 + allowed_lateness`.
//!
//! - [`operator`]: the one shape of a window operator ([`operator::WindowOperator`]: on_event,
//!   on_watermark, snapshot, changes, restore) and the one per-event loop
//!   ([`operator::run_batch`]) every operator runs in.
//! - [`emit`]: the one emit decision, which rows an event causes in a window it updated.
//! - [`panes_per_key`] and [`panes_by_time`]: tumbling and hopping windows kept as panes of
//!   `gcd(size, slide)`, so an event touches one pane and a window combines its panes when it
//!   fires; per key (each key's panes together) or by pane time (one column of accumulators
//!   per pane, indexed by key slot). Same rows and state bytes; [`PaneLayout::choose`] is the
//!   one place that picks between them.
//! - [`session`]: per-key sessions that merge when they overlap or touch.
//! - [`cap`]: the optional cap on live keys and its eviction order, shared by all three.
//! - [`timers`]: the time-ordered index that finds due windows without scanning keys.
//! - [`keys`]: the key table (key -> dense slot), over [`index`] (key -> slot, prefetchable).
//! - [`output`]: the emitted rows as columns, and the late side output.
//!
//! # Adding a window type
//!
//! A window type is one file with a struct that implements [`operator::WindowOperator`], plus
//! its arm in the engine (a [`WindowSpec`] variant, an `Operator` variant and its line in
//! `Operator::build`, which maps the spec to the operator). The engine does the rest —
//! validation, the watermark, the counters, the state header — and runs the operator through
//! [`operator::run_batch`], the same per-event loop as every other. The shortest honest
//! operator, one window per key over all event time fired at the end of input, is below (the
//! Python side, `docs/window-operators.md`, lists what else a new type touches). For early rows,
//! an operator implements [`emit::EventWindow`] for the window an event updated and asks
//! [`emit::emit_for_event`], as `SessionWindow` in [`session`] does in 30 lines.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use fraudstream::aggregate::{Acc, AggKind, AggSpec, Layout};
//! use fraudstream::batch::Batch;
//! use fraudstream::snapshot::{Reader, Writer};
//! use fraudstream::time::{Millis, MAX_EVENT_TIME, MIN_EVENT_TIME, WATERMARK_END};
//! use fraudstream::watermark::WatermarkTracker;
//! use fraudstream::window::operator::{advance, run_batch, Book, Event, StateContext, StateSize, WindowOperator};
//! use fraudstream::window::output::{EmitKind, Output};
//! use fraudstream::window::{EmitMode, Rules};
//! use fraudstream::CoreResult;
//!
//! /// One window per key over all event time, fired at the end of input (final rows only).
//! #[derive(Default)]
//! struct GlobalWindows {
//!     accs: BTreeMap<i64, Acc>, // (by key: rows come out in key order)
//!     book: Book,
//! }
//!
//! const ALL: (Millis, Millis) = (MIN_EVENT_TIME, MAX_EVENT_TIME + 1);
//!
//! impl WindowOperator for GlobalWindows {
//!     fn on_event(&mut self, rules: &Rules, e: Event<'_>, _out: &mut Output) -> bool {
//!         if ALL.1 - 1 + rules.allowed_lateness <= e.wm {
//!             return false; // after the end of input
//!         }
//!         let acc = self.accs.entry(e.key).or_insert_with(|| rules.layout.new_acc());
//!         rules.layout.add(acc, e.batch, e.row, e.t);
//!         self.book.changes.record(e.key);
//!         true
//!     }
//!
//!     fn has_due(&self, wm: Millis) -> bool {
//!         ALL.1 - 1 <= wm && !self.accs.is_empty()
//!     }
//!
//!     fn on_watermark(&mut self, rules: &Rules, _wm: Millis, out: &mut Output) {
//!         for (key, acc) in std::mem::take(&mut self.accs) {
//!             out.push(&rules.layout, key, ALL, EmitKind::Final, &acc);
//!             self.book.changes.record(key);
//!         }
//!     }
//!
//!     fn state_size(&self) -> StateSize {
//!         StateSize::of((self.accs.len(), self.accs.len(), 0), 0)
//!     }
//!
//!     fn book(&self) -> &Book {
//!         &self.book
//!     }
//!
//!     fn book_mut(&mut self) -> &mut Book {
//!         &mut self.book
//!     }
//!
//!     fn rebuild_cap(&mut self) {} // (no cap on live keys: set_max_keys is never called)
//!
//!     fn recency(&self, key: i64) -> Option<Millis> {
//!         self.accs.contains_key(&key).then_some(ALL.0)
//!     }
//!
//!     fn evict(&mut self, key: i64) {
//!         self.accs.remove(&key);
//!         self.book.changes.record(key);
//!     }
//!
//!     fn snapshot(&self, ctx: StateContext<'_>, w: &mut Writer) {
//!         w.count(self.accs.len());
//!         for (key, acc) in &self.accs {
//!             w.i64(*key);
//!             ctx.rules.layout.write_acc(acc, w);
//!         }
//!     }
//!
//!     fn write_changes(&mut self, ctx: StateContext<'_>, w: &mut Writer) {
//!         let keys = self.book.changes.take();
//!         w.count(keys.len());
//!         for key in keys {
//!             w.i64(key);
//!             match self.accs.get(&key) {
//!                 Some(acc) => {
//!                     w.u8(1);
//!                     ctx.rules.layout.write_acc(acc, w);
//!                 }
//!                 None => w.u8(0), // (fired and dropped)
//!             }
//!         }
//!     }
//!
//!     fn apply_changes(&mut self, ctx: StateContext<'_>, r: &mut Reader<'_>) -> CoreResult<()> {
//!         for _ in 0..r.count()? {
//!             let key = r.i64()?;
//!             match r.u8()? {
//!                 1 => self.accs.insert(key, ctx.rules.layout.read_acc(r)?),
//!                 _ => self.accs.remove(&key),
//!             };
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let layout = Layout::new(&[AggSpec::new("n", AggKind::Count, None)]).unwrap();
//! let rules = Rules { layout, emit: EmitMode::Final, allowed_lateness: 0, final_rows: true };
//! let (mut op, mut watermark) = (GlobalWindows::default(), WatermarkTracker::new(0, 1, None).unwrap());
//! let mut out = Output::for_layout(&rules.layout);
//! let batch = Batch::new(&[7, 8, 7], &[1, 2, 3]);
//! run_batch(&mut op, &rules, &mut watermark, &mut Vec::new(), &batch, None, &[], &mut out);
//! assert!(out.keys.is_empty(), "nothing fires before the end of input");
//! advance(&mut op, &rules, watermark.advance_to(WATERMARK_END), &mut out);
//! assert_eq!((out.keys, out.ints), (vec![7, 8], vec![vec![2, 1]]));
//! ```

pub mod cap;
pub mod combine;
pub mod emit;
pub mod index;
pub mod keys;
#[macro_use]
pub mod operator;
pub mod output;
pub mod panes_by_time;
pub mod panes_per_key;
pub mod session;
pub mod timers;

use crate::aggregate::Layout;
use crate::predicate::Predicate;
use crate::time::{check_duration, gcd, Millis};
use crate::CoreResult;

/// Most panes one tumbling/hopping window may span (`size / gcd(size, slide)`).
///
/// A window fires every `slide` for every key with data in it, combining up to all its panes,
/// and an event belongs to `size / slide` windows: the work per event grows with the square of
/// this ratio. `hopping("10m", "1ms")` (600,000 panes) took over 40 s for 5 events; 20,000
/// events over an hour on 1,000 keys run at 370k events/s with `1h`/`1m` (60 panes), 7k/s
/// with `1h`/`3.6s` (1,000 panes) and 70/s with `10000s`/`1s` (10,000). The fraud rules use 5
/// to 24 panes, `24h`/`5m` is 288; above the limit, pick a coarser slide.
pub const MAX_PANES_PER_WINDOW: i64 = 1_000;

/// Which windows an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows `[k*size + offset, (k+1)*size + offset)`.
    Tumbling {
        /// Window length, ms.
        size: Millis,
        /// Alignment offset, ms (`0 <= offset < size`).
        offset: Millis,
    },
    /// Overlapping windows of `size` starting every `slide` ms (Flink's HOP).
    Hopping {
        /// Window length, ms.
        size: Millis,
        /// Distance between window starts, ms.
        slide: Millis,
        /// Alignment offset, ms (`0 <= offset < slide`).
        offset: Millis,
    },
    /// Activity sessions closed by a gap of inactivity.
    Session {
        /// Inactivity gap, ms: a session ends at its last event + gap.
        gap: Millis,
    },
}

impl WindowSpec {
    /// Checks sizes and offsets.
    ///
    /// # Errors
    /// [`crate::CoreError::Config`] naming the bad parameter.
    pub fn validate(&self) -> CoreResult<()> {
        let offset_ok = |offset: Millis, bound: Millis, name: &str| {
            if (0..bound).contains(&offset) {
                Ok(())
            } else {
                Err(crate::CoreError::Config(format!(
                    "window offset must be in [0, {name}={bound}), got {offset}"
                )))
            }
        };
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                check_duration("window size", size, false)?;
                offset_ok(offset, size, "size")
            }
            WindowSpec::Hopping { size, slide, offset } => {
                check_duration("window size", size, false)?;
                check_duration("window slide", slide, false)?;
                if slide > size {
                    return Err(crate::CoreError::Config(format!(
                        "hopping window slide ({slide} ms) must not exceed its size ({size} ms)"
                    )));
                }
                let panes = size / gcd(size, slide);
                if panes > MAX_PANES_PER_WINDOW {
                    return Err(crate::CoreError::Config(format!(
                        "hopping window of size {size} ms and slide {slide} ms spans {panes} panes \
                         of gcd(size, slide) = {} ms; at most {MAX_PANES_PER_WINDOW} are allowed \
                         (an event's work grows with the square of this): use a coarser slide",
                        gcd(size, slide)
                    )));
                }
                offset_ok(offset, slide, "slide")
            }
            WindowSpec::Session { gap } => check_duration("session gap", gap, false),
        }
    }
}

/// Alignment arithmetic of tumbling/hopping windows over panes.
///
/// Window starts are `offset + k*slide`; panes are `gcd(size, slide)` long and aligned the
/// same way, so every window is a whole number of panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Window length.
    pub size: Millis,
    /// Distance between window starts.
    pub slide: Millis,
    /// Pane length: `gcd(size, slide)`.
    pub pane: Millis,
    /// Alignment offset.
    pub offset: Millis,
}

impl Geometry {
    /// Geometry of a tumbling or hopping spec (`None` for sessions).
    #[must_use]
    pub fn of(spec: &WindowSpec) -> Option<Self> {
        let (size, slide, offset) = match *spec {
            WindowSpec::Tumbling { size, offset } => (size, size, offset),
            WindowSpec::Hopping { size, slide, offset } => (size, slide, offset),
            WindowSpec::Session { .. } => return None,
        };
        Some(Geometry { size, slide, pane: gcd(size, slide), offset })
    }

    fn floor_to(&self, t: Millis, step: Millis) -> Millis {
        self.offset + (t - self.offset).div_euclid(step) * step
    }

    /// Start of the pane holding `t`.
    #[inline]
    #[must_use]
    pub fn pane_start(&self, t: Millis) -> Millis {
        self.floor_to(t, self.pane)
    }

    /// End of the earliest window containing the pane starting at `ps`.
    #[inline]
    #[must_use]
    pub fn first_end(&self, ps: Millis) -> Millis {
        self.floor_to(ps - self.size, self.slide) + self.slide + self.size
    }

    /// End of the latest window containing the pane starting at `ps`.
    #[inline]
    #[must_use]
    pub fn last_end(&self, ps: Millis) -> Millis {
        self.floor_to(ps, self.slide) + self.size
    }

    /// The earliest window end of pane `ps` that has not fired at watermark `wm`
    /// (`end - 1 > wm`), or `None` when all its windows have fired.
    #[must_use]
    pub fn first_unfired_end(&self, ps: Millis, wm: Millis) -> Option<Millis> {
        let first = self.first_end(ps);
        let end =
            if first - 1 > wm { first } else { first + ((wm + 1 - first) / self.slide + 1) * self.slide };
        (end <= self.last_end(ps)).then_some(end)
    }
}

/// How tumbling and hopping windows keep their panes: the one place the engine chooses.
///
/// - [`PaneLayout::ByTime`] ([`panes_by_time`]) for windows of one partition: disorder is
///   bounded by the out-of-orderness, so few pane times are live, and an event touches one
///   accumulator of the newest pane, which all recent events share and which stays in cache
///   however many keys there are.
/// - [`PaneLayout::PerKey`] ([`panes_per_key`]) for windows of several partitions: one
///   partition may run far ahead of the watermark, so the pane times are unbounded; each key
///   keeps its own open panes, `inline` of them in its key-table entry (see
///   [`panes_per_key::inline_panes`]).
///
/// Both give the same rows and the same state bytes, so state moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneLayout {
    /// Panes kept by pane time.
    ByTime,
    /// Panes kept per key, `inline` in each key's table entry.
    PerKey {
        /// Panes held inline per key (a compiled capacity).
        inline: usize,
    },
}

impl PaneLayout {
    /// The layout for windows of `geo` over `partitions` input partitions, with `lateness`
    /// allowed.
    #[must_use]
    pub fn choose(geo: &Geometry, partitions: usize, lateness: Millis) -> Self {
        if partitions == 1 {
            PaneLayout::ByTime
        } else {
            PaneLayout::PerKey { inline: panes_per_key::inline_panes(geo, lateness, None) }
        }
    }
}

/// A pane's start and the ends of the first and last windows containing it.
#[derive(Debug, Clone, Copy)]
pub struct PaneSpan {
    /// Start of the pane.
    pub start: i64,
    /// End of the earliest window containing it.
    pub first_end: i64,
    /// End of the latest window containing it.
    pub last_end: i64,
}

impl PaneSpan {
    /// A span no time falls in.
    pub const NONE: PaneSpan = PaneSpan { start: i64::MAX, first_end: 0, last_end: 0 };

    /// The span of the pane of `t`, remembered in `self`: consecutive events mostly share a
    /// pane, and this saves three divisions.
    #[inline(always)]
    pub fn of(&mut self, g: &Geometry, t: i64) -> PaneSpan {
        let span = *self;
        if t >= span.start && t - span.start < g.pane {
            return span;
        }
        self.advance(g, t)
    }

    #[inline(never)]
    fn advance(&mut self, g: &Geometry, t: i64) -> PaneSpan {
        let start = g.pane_start(t);
        *self = PaneSpan { start, first_end: g.first_end(start), last_end: g.last_end(start) };
        *self
    }
}

/// When windows emit rows.
#[derive(Debug, Clone, PartialEq)]
pub enum EmitMode {
    /// Once, when the watermark closes the window (plus updates for late data).
    Final,
    /// Also an early row every time an open window's aggregates change.
    EveryUpdate,
    /// Also an early row the first time the predicate holds on an open window.
    When(Predicate),
}

/// What the operators share: the aggregates, emit mode, lateness and which rows are built.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Compiled aggregates.
    pub layout: Layout,
    /// Early firing.
    pub emit: EmitMode,
    /// How long after firing a window still accepts late events.
    pub allowed_lateness: Millis,
    /// Whether the rows of windows the watermark closed (`Final`, and `Update` for late data)
    /// are built. When false, every operator still fires, closes and frees its windows exactly
    /// as when true (same state, same counters), but where it would build such a row it only
    /// counts it ([`output::Output::withheld`]); early rows and late rows are unchanged. See
    /// `EngineConfig::final_rows`.
    pub final_rows: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn hop() -> Geometry {
        Geometry::of(&WindowSpec::Hopping { size: 5 * MIN, slide: MIN, offset: 0 }).unwrap()
    }

    #[test]
    fn hopping_panes_and_window_ends() {
        let g = hop();
        assert_eq!(g.pane, MIN);
        let ps = g.pane_start(7 * MIN + 5);
        assert_eq!(ps, 7 * MIN);
        // [3,8) [4,9) ... [7,12) minutes contain 7:00.005
        assert_eq!(g.first_end(ps), 8 * MIN);
        assert_eq!(g.last_end(ps), 12 * MIN);
    }

    #[test]
    fn uneven_hop_uses_gcd_panes() {
        let g = Geometry::of(&WindowSpec::Hopping { size: 10, slide: 4, offset: 0 }).unwrap();
        assert_eq!(g.pane, 2);
        // windows [k*4, k*4+10): t=9 lies in [0,10) [4,14) [8,18)
        let ps = g.pane_start(9);
        assert_eq!((ps, g.first_end(ps), g.last_end(ps)), (8, 10, 18));
    }

    #[test]
    fn tumbling_with_offset() {
        let g = Geometry::of(&WindowSpec::Tumbling { size: 10, offset: 3 }).unwrap();
        assert_eq!(g.pane_start(2), -7);
        assert_eq!(g.pane_start(13), 13);
        assert_eq!((g.first_end(13), g.last_end(13)), (23, 23));
    }

    #[test]
    fn first_unfired_end_skips_fired_windows() {
        let g = hop();
        let ps = 7 * MIN;
        assert_eq!(g.first_unfired_end(ps, i64::MIN), Some(8 * MIN));
        assert_eq!(g.first_unfired_end(ps, 8 * MIN - 2), Some(8 * MIN));
        assert_eq!(g.first_unfired_end(ps, 8 * MIN - 1), Some(9 * MIN));
        assert_eq!(g.first_unfired_end(ps, 10 * MIN + 5), Some(11 * MIN));
        assert_eq!(g.first_unfired_end(ps, 12 * MIN - 1), None);
    }

    #[test]
    fn specs_are_validated() {
        assert!(WindowSpec::Hopping { size: 10, slide: 20, offset: 0 }.validate().is_err());
        assert!(WindowSpec::Tumbling { size: 0, offset: 0 }.validate().is_err());
        assert!(WindowSpec::Tumbling { size: 10, offset: 10 }.validate().is_err());
        assert!(WindowSpec::Session { gap: 5 }.validate().is_ok());
    }

    #[test]
    fn panes_per_window_are_capped() {
        let hop = |size, slide| WindowSpec::Hopping { size, slide, offset: 0 }.validate();
        let e = hop(10 * MIN, 1).unwrap_err().to_string();
        assert!(e.contains("600000 panes") && e.contains("coarser slide"), "{e}");
        assert!(hop(MAX_PANES_PER_WINDOW, 1).is_ok());
        assert!(hop(MAX_PANES_PER_WINDOW + 1, 1).is_err());
        assert!(hop(10 * MIN, 7 * MIN / 1000 * 1000 + 1).is_err(), "gcd 1 ms");
        assert!(hop(24 * 60 * MIN, 5 * MIN).is_ok());
        assert!(hop(60 * MIN, 1_000).is_err(), "1h / 1s: 3,600 panes");
        assert!(WindowSpec::Tumbling { size: 1, offset: 0 }.validate().is_ok(), "one pane");
    }
}
