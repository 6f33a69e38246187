//! `_core.message_columns` and `_core.score_records`: the Kafka pipeline's per-message work
//! for a whole consumed batch in one call each, so no Python loop runs per message on the hot
//! path. The formatting is [`crate::records`]; this file only reads and builds Python objects.

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::convert::slice;
use super::detached;
use super::errors::IntoPyResult;
use crate::records::{decimal_keys, score_values, ScoreColumns};

/// The columns of consumed messages: `(values, partitions, offsets, timestamps, error_rows)`.
///
/// A message is anything with `error()`, `value()`, `partition()`, `offset()` and `timestamp()`
/// (confluent-kafka's `Message`). `values` holds each value (`b""` for a null one);
/// `partitions` and `offsets` are int64 (-1 for None); `timestamps` the message timestamp in
/// epoch ms, -1 when it has none; `error_rows` the positions of messages whose `error()` is
/// set, which have -1 in every column.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn message_columns<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)>
{
    let n = messages.len();
    let empty = PyBytes::new(py, b"").into_any();
    let mut values = Vec::with_capacity(n);
    let (mut partitions, mut offsets, mut stamps) = (vec![-1i64; n], vec![-1i64; n], vec![-1i64; n]);
    let mut errors: Vec<i64> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if !m.call_method0(intern!(py, "error"))?.is_none() {
            errors.push(i64::try_from(i).unwrap_or(i64::MAX));
            values.push(empty.clone());
            continue;
        }
        let value = m.call_method0(intern!(py, "value"))?;
        values.push(if value.is_none() { empty.clone() } else { value });
        partitions[i] = m.call_method0(intern!(py, "partition"))?.extract::<Option<i64>>()?.unwrap_or(-1);
        offsets[i] = m.call_method0(intern!(py, "offset"))?.extract::<Option<i64>>()?.unwrap_or(-1);
        let (kind, ts) = m.call_method0(intern!(py, "timestamp"))?.extract::<(i64, Option<i64>)>()?;
        stamps[i] = match ts {
            Some(ts) if kind != 0 && ts >= 0 => ts,
            _ => -1,
        };
    }
    Ok((
        PyList::new(py, values)?,
        partitions.into_pyarray(py).into_any(),
        offsets.into_pyarray(py).into_any(),
        stamps.into_pyarray(py).into_any(),
        errors.into_pyarray(py).into_any(),
    ))
}

/// The scored-transaction records of a batch, `[(key, value), ...]`: the key is the card id
/// in decimal, the value `{"txn_id":..,"card_id":..,"score":..,"decision":"..","offset":..}`
/// (the score to six decimals, null for NaN; `decision` indexes `decisions`), with
/// `"degraded":true` added where `degraded` is non-zero.
#[pyfunction]
#[pyo3(signature = (txn_id, card_id, score, decision, offset, decisions, degraded=None))]
#[allow(clippy::too_many_arguments)]
pub fn score_records<'py>(
    py: Python<'py>,
    txn_id: PyReadonlyArray1<'py, i64>,
    card_id: PyReadonlyArray1<'py, i64>,
    score: PyReadonlyArray1<'py, f64>,
    decision: PyReadonlyArray1<'py, i64>,
    offset: PyReadonlyArray1<'py, i64>,
    decisions: Vec<String>,
    degraded: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Bound<'py, PyList>> {
    let cols = ScoreColumns {
        txn_id: slice(py, &txn_id, "txn_id")?,
        card_id: slice(py, &card_id, "card_id")?,
        score: slice(py, &score, "score")?,
        decision: slice(py, &decision, "decision")?,
        offset: slice(py, &offset, "offset")?,
        degraded: degraded.as_ref().map(|d| slice(py, d, "degraded")).transpose()?,
    };
    let names: Vec<&str> = decisions.iter().map(String::as_str).collect();
    let built =
        detached(py, || score_values(&cols, &names).map(|values| (decimal_keys(cols.card_id), values)));
    let (keys, values) = built.py_result(py)?;
    let records = keys
        .iter()
        .zip(values.iter())
        .map(|(k, v)| PyTuple::new(py, [PyBytes::new(py, k), PyBytes::new(py, v)]));
    PyList::new(py, records.collect::<PyResult<Vec<_>>>()?)
}
