//! The emit decision for an event: which rows it causes in the windows it updated.
//!
//! Every operator asks [`emit_for_event`] for each window an event went into, in end order,
//! and supplies the window's aggregates through [`EventWindow`] (computed only when a row is
//! due). The rules (`docs/semantics.md`):
//! - a window that already fired (`end - 1 <= wm`) and still accepts late events emits again
//!   at once: an `Update` if it had emitted before, else its first `Final` (or only counts the
//!   row, [`Rules::final_rows`] off);
//! - an open window emits an `Early` row on every update ([`EmitMode::EveryUpdate`]), or once,
//!   the first time the predicate holds ([`EmitMode::When`]), or nothing ([`EmitMode::Final`]).

use super::output::{EmitKind, Output};
use super::{EmitMode, Rules};
use crate::aggregate::Layout;
use crate::predicate::Predicate;
use crate::time::Millis;

/// One window an event updated, as [`emit_for_event`] needs it.
pub trait EventWindow {
    /// Computes the aggregates of `window` (it holds the event), for the calls below.
    fn aggregate(&mut self, layout: &Layout, window: (Millis, Millis));

    /// Whether the window emitted a row before this event (after `aggregate`).
    fn emitted_before(&self) -> bool;

    /// Whether the window ending at `end` already fired early on the predicate.
    fn triggered(&self, end: Millis) -> bool;

    /// Records that the window ending at `end` fired early on the predicate.
    fn mark_triggered(&mut self, end: Millis);

    /// Whether the predicate holds on the aggregates.
    fn holds(&self, layout: &Layout, predicate: &Predicate) -> bool;

    /// Pushes the aggregates as a row of `key` and `window`.
    fn push(&self, layout: &Layout, out: &mut Output, key: i64, window: (Millis, Millis), kind: EmitKind);
}

/// The rows an event of `key` causes in `window`, one it went into, at watermark `wm` (the one
/// before the event). Returns `false` when no later window of the event can emit (windows
/// come in end order: the rest are open too, and emit only when they fire).
#[inline]
pub fn emit_for_event<W: EventWindow>(
    rules: &Rules,
    key: i64,
    window: (Millis, Millis),
    wm: Millis,
    w: &mut W,
    out: &mut Output,
) -> bool {
    let (layout, end) = (&rules.layout, window.1);
    if end - 1 <= wm {
        if end - 1 + rules.allowed_lateness > wm {
            if rules.final_rows {
                w.aggregate(layout, window);
                let kind = if w.emitted_before() { EmitKind::Update } else { EmitKind::Final };
                w.push(layout, out, key, window, kind);
            } else {
                out.withheld += 1; // (the window holds this event)
            }
        }
        return true;
    }
    match &rules.emit {
        EmitMode::Final => return false,
        EmitMode::EveryUpdate => {
            w.aggregate(layout, window);
            w.push(layout, out, key, window, EmitKind::Early);
        }
        EmitMode::When(predicate) => {
            if !w.triggered(end) {
                w.aggregate(layout, window);
                if w.holds(layout, predicate) {
                    w.mark_triggered(end);
                    w.push(layout, out, key, window, EmitKind::Early);
                }
            }
        }
    }
    true
}

/// [`emit_for_event`] for every window of a tumbling/hopping event: ends from `ends.0` to
/// `ends.1`, `slide` apart, each `size` long.
#[inline]
pub fn emit_for_event_windows<W: EventWindow>(
    rules: &Rules,
    key: i64,
    (size, slide): (Millis, Millis),
    ends: (Millis, Millis),
    wm: Millis,
    w: &mut W,
    out: &mut Output,
) {
    let mut end = ends.0;
    while end <= ends.1 && emit_for_event(rules, key, (end - size, end), wm, w, out) {
        end += slide;
    }
}
