//! `_core.DuplicateFilter`: a thin wrapper over [`crate::dedup::DuplicateFilter`].

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::convert::{int_column, slice};
use super::engine::WindowEngine;
use super::errors::IntoPyResult;
use super::{detached, Shared};
use crate::dedup::DuplicateFilter as Filter;

/// Which events repeat a transaction id within a horizon of event time (see
/// `fraudstream.kafka.task`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct DuplicateFilter {
    filter: Shared<Filter>,
}

#[pymethods]
impl DuplicateFilter {
    /// A filter for ids repeated within `horizon` ms of event time, under a watermark
    /// `out_of_orderness` ms behind the latest event time, holding at most `max_ids` ids.
    #[new]
    #[pyo3(signature = (horizon, out_of_orderness=0, max_ids=None))]
    fn new(py: Python<'_>, horizon: i64, out_of_orderness: i64, max_ids: Option<usize>) -> PyResult<Self> {
        let filter = Filter::new(horizon, out_of_orderness, max_ids).py_result(py)?;
        Ok(DuplicateFilter { filter: Shared::new(filter, "duplicate filter") })
    }

    /// The rows of `ids` (int64, event times `times`) that repeat an id, ascending (int64).
    fn process<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ids, times) = (int_column(ids, "txn_id")?, int_column(times, "event_time")?);
        let (ids, times) = (slice(py, &ids, "txn_id")?, slice(py, &times, "event_time")?);
        let rows = self.filter.with(py, |f| f.process(ids, times))?.py_result(py)?;
        let rows: Vec<i64> = rows.into_iter().map(|r| r as i64).collect();
        Ok(rows.into_pyarray(py).into_any())
    }

    /// The watermark, or None before the first event.
    #[getter]
    fn watermark(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        self.filter.with(py, |f| Some(f.watermark()).filter(|&w| w != i64::MIN))
    }

    /// Live ids.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.filter.with(py, |f| f.len())
    }

    /// {"events", "duplicates", "late", "evicted", "ids", "bytes"}.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (c, ids, bytes) = self.filter.with(py, |f| (f.counters(), f.len(), f.state_bytes()))?;
        let d = PyDict::new(py);
        d.set_item("events", c.events)?;
        d.set_item("duplicates", c.duplicates)?;
        d.set_item("late", c.late)?;
        d.set_item("evicted", c.evicted)?;
        d.set_item("ids", ids)?;
        d.set_item("bytes", bytes)?;
        Ok(d)
    }

    /// The whole state as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.filter.with(py, |f| f.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// `snapshot()`'s bytes in a uint8 array that owns them: no copy of a state of megabytes.
    fn snapshot_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        Ok(self.filter.with(py, |f| f.snapshot())?.into_pyarray(py))
    }

    /// Starts (or stops) recording which ids change, for `take_changes`.
    fn track_changes(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.filter.with(py, |f| f.track_changes(on))
    }

    /// The changes since the previous call, as versioned bytes.
    fn take_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.filter.with(py, Filter::take_changes)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Applies bytes from `take_changes` of a filter of the same configuration.
    fn apply_changes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.filter.with(py, |f| f.apply_changes(data))?.py_result(py)
    }

    /// Replaces the state with a snapshot of a filter of the same configuration (changes are
    /// still recorded if they were).
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let empty = self.filter.with(py, |f| f.clone())?;
        let mut restored = detached(py, || empty.restore(data)).py_result(py)?;
        self.filter.with(py, |f| {
            restored.track_changes(f.tracks_changes());
            *f = restored;
        })
    }

    /// Whether `data` is a snapshot or change record of a duplicate filter (and not of the
    /// session window engine that held this state in earlier versions).
    #[staticmethod]
    fn holds_state(data: &[u8]) -> bool {
        Filter::holds_state(data)
    }

    /// Takes over the sessions, watermark and evictions of a session window engine (the state
    /// of this filter in earlier versions).
    fn adopt(&self, py: Python<'_>, engine: &WindowEngine) -> PyResult<()> {
        let (sessions, max_time, evicted) = engine.session_state(py)?;
        self.filter.with(py, |f| f.adopt(&sessions, max_time, evicted))?.py_result(py)
    }
}
