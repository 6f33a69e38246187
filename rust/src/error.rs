//! The core's single error type.
//!
//! Every fallible path in the core returns [`CoreResult`]; nothing driven by input panics.
//! The bindings map each variant to one Python exception class in `python/errors.rs`, the
//! only place that knows about Python.

use thiserror::Error;

/// Everything that can go wrong in the core.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A column's length differs from the key column's.
    #[error("column '{column}' has {actual} rows, expected {expected} (the length of the key column)")]
    LengthMismatch {
        /// The offending column.
        column: String,
        /// Rows in the key column.
        expected: usize,
        /// Rows in this column.
        actual: usize,
    },
    /// A value in a batch is out of range, not finite, or otherwise unusable.
    #[error("column '{column}' row {row}: {reason}")]
    InvalidValue {
        /// The offending column.
        column: String,
        /// The first bad row (0-based, within the batch).
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A predicate expression could not be parsed or refers to unknown aggregates.
    #[error("invalid predicate {source_text:?} at position {position}: {reason}")]
    Predicate {
        /// The expression as given (its first 200 characters when longer).
        source_text: String,
        /// Character offset of the problem (0-based).
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// Snapshot bytes are truncated, of another version, or of another configuration.
    #[error("cannot restore snapshot: {0}")]
    Snapshot(String),
    /// The queue was closed: no more puts; gets see end-of-stream once drained.
    #[error("queue is closed")]
    QueueClosed,
    /// A blocking queue operation did not complete within its timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
}

/// Shorthand for results of the core.
pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub(crate) fn invalid(column: &str, row: usize, reason: impl Into<String>) -> Self {
        CoreError::InvalidValue { column: column.to_owned(), row, reason: reason.into() }
    }
}
