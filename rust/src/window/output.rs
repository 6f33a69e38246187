//! Emitted window rows as columns, and the late side output.
//!
//! A row is `(key, window_start, window_end, kind, aggregates...)`. `kind` says why it was
//! emitted ([`EmitKind`]); integer aggregates (counts) and float aggregates go to separate
//! column groups in the order of the layout's [`crate::aggregate::OutputSlot`]s.

use crate::aggregate::{Acc, Layout};

/// Why a row was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EmitKind {
    /// The watermark closed the window: its first complete result.
    Final = 0,
    /// A late event (within allowed lateness) changed a window already emitted.
    Update = 1,
    /// Early firing: the window is still open.
    Early = 2,
}

/// Rows emitted by one call, plus the rows of the input that were too late.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Key of each row.
    pub keys: Vec<i64>,
    /// Window start (inclusive).
    pub starts: Vec<i64>,
    /// Window end (exclusive).
    pub ends: Vec<i64>,
    /// [`EmitKind`] as `u8`.
    pub kinds: Vec<u8>,
    /// Integer aggregate columns.
    pub ints: Vec<Vec<i64>>,
    /// Float aggregate columns.
    pub floats: Vec<Vec<f64>>,
    /// Input rows (0-based within the call) later than allowed lateness for every window.
    pub late_rows: Vec<u64>,
    /// For each row: the input row (within the call) whose processing emitted it, or
    /// [`NO_TRIGGER`] when `advance_to`, `tick` or `flush` did.
    pub triggers: Vec<u64>,
    /// The trigger recorded by [`Output::push`]; set by the engine before each step.
    pub trigger: u64,
}

/// Trigger of rows emitted by `advance_to`, `tick` or `flush` rather than by an input row.
pub const NO_TRIGGER: u64 = u64::MAX;

impl Output {
    /// An empty output shaped for `layout`.
    #[must_use]
    pub fn for_layout(layout: &Layout) -> Self {
        let (ints, floats) = layout.output_widths();
        Output {
            ints: vec![Vec::new(); ints],
            floats: vec![Vec::new(); floats],
            trigger: NO_TRIGGER,
            ..Output::default()
        }
    }

    /// Number of emitted rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was emitted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Appends a row.
    #[inline]
    pub fn push(&mut self, layout: &Layout, key: i64, window: (i64, i64), kind: EmitKind, acc: &Acc) {
        self.keys.push(key);
        self.starts.push(window.0);
        self.ends.push(window.1);
        self.kinds.push(kind as u8);
        self.triggers.push(self.trigger);
        layout.emit(acc, &mut self.ints, &mut self.floats);
    }

    /// Appends all rows of `other`, with its late rows offset by `row_offset`.
    pub fn append(&mut self, mut other: Output, row_offset: u64) {
        self.keys.append(&mut other.keys);
        self.starts.append(&mut other.starts);
        self.ends.append(&mut other.ends);
        self.kinds.append(&mut other.kinds);
        for (a, b) in self.ints.iter_mut().zip(&mut other.ints) {
            a.append(b);
        }
        for (a, b) in self.floats.iter_mut().zip(&mut other.floats) {
            a.append(b);
        }
        self.late_rows.extend(other.late_rows.iter().map(|r| r + row_offset));
        self.triggers
            .extend(other.triggers.iter().map(|&r| if r == NO_TRIGGER { r } else { r + row_offset }));
    }
}
