//! Columnar event batches: borrowed slices, validated as a whole before any state changes.
//!
//! A [`Batch`] holds the key and event-time columns, an optional partition column and the value
//! columns the aggregations read, in the order the engine's [`Schema`] names them. Validation
//! checks every row first and reports the first bad one by column name and row number, so a
//! rejected batch leaves the engine exactly as it was.

use crate::time::{is_valid_event_time, MAX_EVENT_TIME, MIN_EVENT_TIME};
use crate::{CoreError, CoreResult};

/// A borrowed value column: floats (amounts) or integers (codes, ids).
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    /// 64-bit floats; must be finite.
    F64(&'a [f64]),
    /// 64-bit integers.
    I64(&'a [i64]),
}

impl Values<'_> {
    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` as a float (integers convert exactly up to 2^53).
    #[inline]
    #[must_use]
    pub fn number(&self, row: usize) -> f64 {
        match self {
            Values::F64(v) => v[row],
            Values::I64(v) => v[row] as f64,
        }
    }

    /// The value at `row` as an identity for distinct counting: integers as they are, floats
    /// by their bits (with -0.0 folded into 0.0, so equal numbers are one value).
    #[inline]
    #[must_use]
    pub fn identity(&self, row: usize) -> i64 {
        match self {
            Values::F64(v) => {
                let x = v[row];
                if x == 0.0 {
                    0
                } else {
                    x.to_bits() as i64
                }
            }
            Values::I64(v) => v[row],
        }
    }
}

/// The column names the engine reads, so errors can name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Name of the key column.
    pub key: String,
    /// Name of the event-time column.
    pub time: String,
    /// Names of the value columns, in the order a [`Batch`] passes them.
    pub values: Vec<String>,
}

/// One batch of events as borrowed columns.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// Grouping key of each event.
    pub keys: &'a [i64],
    /// Event time of each event, ms since the epoch.
    pub times: &'a [i64],
    /// Source partition of each event (for per-partition watermarks); all 0 when absent.
    pub partitions: Option<&'a [i64]>,
    /// Value columns, in the order of [`Schema::values`].
    pub values: Vec<Values<'a>>,
}

impl<'a> Batch<'a> {
    /// A batch without partition or value columns.
    #[must_use]
    pub fn new(keys: &'a [i64], times: &'a [i64]) -> Self {
        Batch { keys, times, partitions: None, values: Vec::new() }
    }

    /// Number of events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the batch holds no events.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Partition of `row` (0 when the batch has no partition column).
    #[inline]
    #[must_use]
    pub fn partition(&self, row: usize) -> usize {
        self.partitions.map_or(0, |p| p[row] as usize)
    }

    /// Checks lengths, time range, partition range and that float values are finite.
    ///
    /// # Errors
    /// [`CoreError::LengthMismatch`] or [`CoreError::InvalidValue`] naming the first bad row.
    pub fn validate(&self, schema: &Schema, partitions: usize) -> CoreResult<()> {
        let n = self.keys.len();
        let check_len = |column: &str, actual: usize| {
            if actual == n {
                Ok(())
            } else {
                Err(CoreError::LengthMismatch { column: column.to_owned(), expected: n, actual })
            }
        };
        check_len(&schema.time, self.times.len())?;
        if self.values.len() != schema.values.len() {
            return Err(CoreError::Config(format!(
                "batch has {} value columns, the aggregation reads {}: {:?}",
                self.values.len(),
                schema.values.len(),
                schema.values
            )));
        }
        for (name, column) in schema.values.iter().zip(&self.values) {
            check_len(name, column.len())?;
        }
        if let Some(row) = first_where(self.times, |&t| !is_valid_event_time(t)) {
            return Err(CoreError::invalid(
                &schema.time,
                row,
                format!(
                    "event time {} ms is outside the supported range [{MIN_EVENT_TIME}, {MAX_EVENT_TIME}] \
                     (1970-01-01 .. 9999-12-31)",
                    self.times[row]
                ),
            ));
        }
        if let Some(parts) = self.partitions {
            check_len("partition", parts.len())?;
            let limit = i64::try_from(partitions).unwrap_or(i64::MAX);
            if let Some(row) = first_where(parts, |&p| p < 0 || p >= limit) {
                return Err(CoreError::invalid(
                    "partition",
                    row,
                    format!("partition {} is outside [0, {partitions})", parts[row]),
                ));
            }
        }
        for (name, column) in schema.values.iter().zip(&self.values) {
            if let Values::F64(v) = column {
                if let Some(row) = first_where(v, |x| !x.is_finite()) {
                    return Err(CoreError::invalid(name, row, format!("value {} is not finite", v[row])));
                }
            }
        }
        Ok(())
    }
}

/// The first index where `bad` holds. Valid batches are the rule: a branch-free pass over the
/// whole column (which the compiler vectorizes) says whether to look for the row at all.
#[inline]
fn first_where<T>(column: &[T], bad: impl Fn(&T) -> bool) -> Option<usize> {
    if column.iter().fold(false, |any, x| any | bad(x)) {
        column.iter().position(bad)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema { key: "card".into(), time: "ts".into(), values: vec!["amount".into()] }
    }

    #[test]
    fn accepts_a_good_batch() {
        let amounts = [1.0, 2.5];
        let b = Batch { values: vec![Values::F64(&amounts)], ..Batch::new(&[1, 2], &[10, 20]) };
        assert!(b.validate(&schema(), 1).is_ok());
    }

    #[test]
    fn names_the_column_and_row() {
        let amounts = [1.0, f64::NAN, 3.0];
        let b = Batch { values: vec![Values::F64(&amounts)], ..Batch::new(&[1, 2, 3], &[1, 2, 3]) };
        let err = b.validate(&schema(), 1).unwrap_err();
        assert_eq!(err, CoreError::invalid("amount", 1, "value NaN is not finite"));
    }

    #[test]
    fn rejects_mismatched_lengths_and_bad_times() {
        let amounts = [1.0];
        let b = Batch { values: vec![Values::F64(&amounts)], ..Batch::new(&[1, 2], &[1, 2]) };
        assert!(matches!(b.validate(&schema(), 1), Err(CoreError::LengthMismatch { .. })));
        let amounts = [1.0, 1.0];
        let b = Batch { values: vec![Values::F64(&amounts)], ..Batch::new(&[1, 2], &[1, -7]) };
        let err = b.validate(&schema(), 1).unwrap_err().to_string();
        assert!(err.contains("'ts' row 1"), "{err}");
    }

    #[test]
    fn rejects_partitions_out_of_range() {
        let amounts = [1.0, 1.0];
        let parts = [0, 2];
        let b = Batch {
            values: vec![Values::F64(&amounts)],
            partitions: Some(&parts),
            ..Batch::new(&[1, 2], &[1, 2])
        };
        assert!(b.validate(&schema(), 2).is_err());
        assert!(b.validate(&schema(), 3).is_ok());
    }

    #[test]
    fn float_identity_folds_negative_zero() {
        let v = [0.0, -0.0, 1.5];
        let c = Values::F64(&v);
        assert_eq!(c.identity(0), c.identity(1));
        assert_ne!(c.identity(0), c.identity(2));
    }
}
