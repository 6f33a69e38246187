//! Aggregations: count, sum, min, max, mean, count_distinct (exact), first and last.
//!
//! An [`AggSpec`] list compiles into a [`Layout`]: which slots of an [`Acc`] each aggregate
//! uses. An `Acc` is the state of one pane or session; adding an event is O(1) (amortized for
//! distinct sets) and two accumulators merge, which is how a hopping window combines its panes.
//! `first`/`last` are by event time (ties: the earlier / later arrival), so they do not depend
//! on how a stream was split into batches.
//!
//! - [`kinds`]: the functions ([`AggKind`]) and what a caller asks for ([`AggSpec`]).
//! - [`acc`]: the accumulator of one pane or session ([`Acc`]) and the views that read and
//!   write it or its flat form, one implementation of each aggregate for both.
//! - [`distinct`]: exact distinct counts: a bitmap word for values in `[0, 64)`, a
//!   [`DistinctSet`] for the others.
//! - [`layout`]: the compiled list ([`Layout`]): where each aggregate lives in an accumulator,
//!   adding, merging, emitting and the state bytes.

pub mod acc;
pub mod distinct;
pub mod kinds;
pub mod layout;

pub use acc::{Acc, Overflow};
pub use distinct::DistinctSet;
pub use kinds::{AggKind, AggSpec};
pub use layout::{Layout, OutputSlot};

#[cfg(test)]
mod tests;
