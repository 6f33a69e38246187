//! The aggregate functions and the request for one: output name, function, column read.

use std::fmt;
use std::str::FromStr;

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
