//! `_core.decode_transactions`: JSON message batches to numpy columns, in Rust.

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyBytesMethods, PyDict};

use super::detached;
use crate::decode::{decode_transactions as decode, DecodeLimits};

/// Decodes JSON transaction messages (see `fraudstream.kafka.schema`). Returns
/// `(columns, error_index, error_reason)`: a dict of numpy columns for the good records (with
/// `source_index`, their positions in `messages`), and for every rejected record its position
/// and a reason.
#[pyfunction]
#[pyo3(signature = (messages, *, max_record_bytes=1<<20, min_time=946_684_800_000, max_time=4_102_444_800_000, max_amount=1e9))]
pub fn decode_transactions<'py>(
    py: Python<'py>,
    messages: Vec<Bound<'py, PyBytes>>,
    max_record_bytes: usize,
    min_time: i64,
    max_time: i64,
    max_amount: f64,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>, Vec<String>)> {
    let limits = DecodeLimits { max_record_bytes, min_time, max_time, max_amount };
    let slices: Vec<&[u8]> = messages.iter().map(|b| b.as_bytes()).collect();
    let t = detached(py, || decode(slices.iter().copied(), &limits));
    let d = PyDict::new(py);
    d.set_item("source_index", t.source_index.into_pyarray(py))?;
    d.set_item("txn_id", t.txn_id.into_pyarray(py))?;
    d.set_item("card_id", t.card_id.into_pyarray(py))?;
    d.set_item("customer_id", t.customer_id.into_pyarray(py))?;
    d.set_item("terminal_id", t.terminal_id.into_pyarray(py))?;
    d.set_item("amount", t.amount.into_pyarray(py))?;
    d.set_item("currency", t.currency.into_pyarray(py))?;
    d.set_item("country", t.country.into_pyarray(py))?;
    d.set_item("merchant", t.merchant.into_pyarray(py))?;
    d.set_item("category", t.category.into_pyarray(py))?;
    d.set_item("event_time", t.event_time.into_pyarray(py))?;
    let (index, reasons): (Vec<u32>, Vec<String>) = t.errors.into_iter().unzip();
    Ok((d, index.into_pyarray(py).into_any(), reasons))
}

/// The letters of a packed country/currency code.
#[pyfunction]
pub fn unpack_code(code: i64) -> String {
    crate::decode::unpack_code(code)
}

/// Packs a 2- or 3-letter code the way the decoder does (None when it is not letters).
#[pyfunction]
pub fn pack_code(code: &str) -> Option<i64> {
    crate::decode::pack_code(code, code.len())
}
