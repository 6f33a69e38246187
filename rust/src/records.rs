//! Output records of the Kafka pipeline, built for a whole batch in one pass.
//!
//! The pipeline publishes one scored-transaction record per processed transaction, keyed by
//! card. Building them one by one in Python (a dict or an f-string per transaction) cost more
//! than scoring; here a batch's values and keys are written into one contiguous buffer, and the
//! bindings cut it into `bytes` objects.
//!
//! Invariants:
//! - Record `i` of the output is built from row `i` of every column; all columns have the same
//!   length, checked before anything is written.
//! - A score value is exactly what `fraudstream.kafka.task` wrote before, byte for byte:
//!   `{"txn_id":T,"card_id":C,"score":S,"decision":"D","offset":O}` with `S` the score to six
//!   decimals (round half to even, as Python's `f"{s:.6f}"`), or `null` for NaN, and
//!   `,"degraded":true` before the closing brace on a row scored with a feature store's
//!   defaults.
//! - A key is the card id as decimal ASCII (Python's `str(card).encode()`).

use std::io::Write;

use crate::error::{CoreError, CoreResult};

/// Byte strings written back to back: record `i` is `bytes[ends[i - 1]..ends[i]]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordBuffer {
    /// Every record's bytes, concatenated.
    pub bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    pub ends: Vec<usize>,
}

impl RecordBuffer {
    /// The number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i` (`None` past the end).
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    fn with_capacity(records: usize, bytes_each: usize) -> Self {
        Self { bytes: Vec::with_capacity(records * bytes_each), ends: Vec::with_capacity(records) }
    }

    fn close_record(&mut self) {
        self.ends.push(self.bytes.len());
    }
}

/// The columns of a batch of scored transactions (one row per record).
#[derive(Debug, Clone, Copy)]
pub struct ScoreColumns<'a> {
    /// Transaction ids.
    pub txn_id: &'a [i64],
    /// Card ids (also the records' keys).
    pub card_id: &'a [i64],
    /// Scores; NaN when the processor does not score.
    pub score: &'a [f64],
    /// Index of the decision's name in the `decisions` given to [`score_values`].
    pub decision: &'a [i64],
    /// The offset of each transaction's input message.
    pub offset: &'a [i64],
    /// Non-zero on a row scored with defaults (a feature store down or slow); `None`: none was.
    pub degraded: Option<&'a [i64]>,
}

impl ScoreColumns<'_> {
    /// Rows, after checking that every column has as many as `txn_id`.
    fn rows(&self) -> CoreResult<usize> {
        let n = self.txn_id.len();
        let lengths = [
            ("card_id", self.card_id.len()),
            ("score", self.score.len()),
            ("decision", self.decision.len()),
            ("offset", self.offset.len()),
            ("degraded", self.degraded.map_or(n, <[i64]>::len)),
        ];
        for (column, actual) in lengths {
            if actual != n {
                return Err(CoreError::LengthMismatch { column: column.into(), expected: n, actual });
            }
        }
        Ok(n)
    }
}

/// The JSON values of a batch of scored transactions (see the module header for the format).
///
/// # Errors
/// [`CoreError::LengthMismatch`] when the columns differ in length, [`CoreError::InvalidValue`]
/// for a decision code outside `decisions`; nothing is built then.
///
/// # Examples
/// ```
/// use fraudstream::records::{score_values, ScoreColumns};
/// let cols = ScoreColumns { txn_id: &[7], card_id: &[42], score: &[0.25], decision: &[1], offset: &[3], degraded: None };
/// let out = score_values(&cols, &["pass", "alert"]).unwrap();
/// assert_eq!(
///     out.get(0).unwrap(),
///     br#"{"txn_id":7,"card_id":42,"score":0.250000,"decision":"alert","offset":3}"#
/// );
/// ```
pub fn score_values(cols: &ScoreColumns<'_>, decisions: &[&str]) -> CoreResult<RecordBuffer> {
    let n = cols.rows()?;
    if let Some(row) =
        cols.decision.iter().position(|&d| usize::try_from(d).map_or(true, |d| d >= decisions.len()))
    {
        return Err(CoreError::InvalidValue {
            column: "decision".into(),
            row,
            reason: format!(
                "decision code {} is not one of the {} known",
                cols.decision[row],
                decisions.len()
            ),
        });
    }
    let mut out = RecordBuffer::with_capacity(n, 96);
    for i in 0..n {
        let b = &mut out.bytes;
        // writing into a Vec cannot fail
        let _ = write!(b, r#"{{"txn_id":{},"card_id":{},"score":"#, cols.txn_id[i], cols.card_id[i]);
        let score = cols.score[i];
        if score.is_nan() {
            b.extend_from_slice(b"null");
        } else {
            let _ = write!(b, "{score:.6}");
        }
        // checked above: every code indexes `decisions`
        let decision = decisions[usize::try_from(cols.decision[i]).unwrap_or_default()];
        let _ = write!(b, r#","decision":"{decision}","offset":{}"#, cols.offset[i]);
        if cols.degraded.is_some_and(|d| d[i] != 0) {
            b.extend_from_slice(br#","degraded":true"#);
        }
        b.push(b'}');
        out.close_record();
    }
    Ok(out)
}

/// Each id as decimal ASCII: the keys of records keyed by card.
#[must_use]
pub fn decimal_keys(ids: &[i64]) -> RecordBuffer {
    let mut out = RecordBuffer::with_capacity(ids.len(), 12);
    for id in ids {
        let _ = write!(out.bytes, "{id}");
        out.close_record();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(score: f64) -> String {
        let cols = ScoreColumns {
            txn_id: &[1],
            card_id: &[-2],
            score: &[score],
            decision: &[0],
            offset: &[0],
            degraded: None,
        };
        let out = score_values(&cols, &["pass"]).unwrap();
        String::from_utf8(out.get(0).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn scores_have_six_decimals_and_nan_is_null() {
        assert!(one(0.123_456_7).contains(r#""score":0.123457,"#));
        assert!(one(1.0).contains(r#""score":1.000000,"#));
        assert!(one(f64::NAN).contains(r#""score":null,"#));
        // exactly half way at six decimals: round half to even, as Python's formatting
        assert!(one(0.007_812_5).contains(r#""score":0.007812,"#));
        assert!(one(-0.0).contains(r#""score":-0.000000,"#));
    }

    #[test]
    fn records_are_cut_where_they_end() {
        let cols = ScoreColumns {
            txn_id: &[1, 2, 3],
            card_id: &[10, 20, 30],
            score: &[0.5, 0.25, f64::NAN],
            decision: &[0, 1, 2],
            offset: &[100, 101, 102],
            degraded: Some(&[0, 1, 0]),
        };
        let out = score_values(&cols, &["pass", "alert", "flagged"]).unwrap();
        let texts: Vec<String> = out.iter().map(|r| String::from_utf8(r.to_vec()).unwrap()).collect();
        assert_eq!(
            texts,
            [
                r#"{"txn_id":1,"card_id":10,"score":0.500000,"decision":"pass","offset":100}"#,
                r#"{"txn_id":2,"card_id":20,"score":0.250000,"decision":"alert","offset":101,"degraded":true}"#,
                r#"{"txn_id":3,"card_id":30,"score":null,"decision":"flagged","offset":102}"#,
            ]
        );
        assert_eq!(out.get(3), None);
    }

    #[test]
    fn bad_columns_are_refused_before_anything_is_built() {
        let short = ScoreColumns {
            txn_id: &[1, 2],
            card_id: &[1],
            score: &[0.0, 0.0],
            decision: &[0, 0],
            offset: &[0, 1],
            degraded: None,
        };
        assert!(
            matches!(score_values(&short, &["pass"]), Err(CoreError::LengthMismatch { ref column, .. }) if column == "card_id")
        );
        let unknown = ScoreColumns {
            txn_id: &[1, 2],
            card_id: &[1, 1],
            score: &[0.0, 0.0],
            decision: &[0, 3],
            offset: &[0, 1],
            degraded: None,
        };
        assert!(matches!(score_values(&unknown, &["pass"]), Err(CoreError::InvalidValue { row: 1, .. })));
        let negative = ScoreColumns { decision: &[-1, 0], ..unknown };
        assert!(matches!(score_values(&negative, &["pass"]), Err(CoreError::InvalidValue { row: 0, .. })));
        let flags = ScoreColumns { degraded: Some(&[1]), ..short };
        assert!(
            matches!(score_values(&flags, &["pass"]), Err(CoreError::LengthMismatch { ref column, .. }) if column == "card_id")
        );
        let flags = ScoreColumns { degraded: Some(&[1]), ..negative };
        assert!(
            matches!(score_values(&flags, &["pass"]), Err(CoreError::LengthMismatch { ref column, .. }) if column == "degraded")
        );
    }

    #[test]
    fn keys_are_decimal_ids() {
        let keys = decimal_keys(&[0, 42, -7, i64::MAX]);
        let texts: Vec<&[u8]> = keys.iter().collect();
        assert_eq!(texts, [&b"0"[..], b"42", b"-7", b"9223372036854775807"]);
        assert!(decimal_keys(&[]).is_empty());
    }
}
