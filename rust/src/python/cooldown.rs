//! `_core.Cooldown`: a thin wrapper over [`crate::cooldown::Cooldown`].

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::convert::{int_column, slice};
use super::errors::IntoPyResult;
use super::{detached, Shared};
use crate::cooldown::Cooldown as State;

/// One alert per card per incident, in event time (`fraudstream.alerts.Cooldown`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct Cooldown {
    state: Shared<State>,
    period: i64,
}

#[pymethods]
impl Cooldown {
    /// A cool-down of `period` ms (0: every candidate is kept).
    #[new]
    fn new(py: Python<'_>, period: i64) -> PyResult<Self> {
        let state = State::new(period).py_result(py)?;
        Ok(Cooldown { state: Shared::new(state, "cool-down"), period })
    }

    /// Which candidates (`cards`, `times`: int64, in the order given) are kept (bool array).
    fn decide<'py>(
        &self,
        py: Python<'py>,
        cards: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let (cards, times) = (int_column(cards, "card")?, int_column(times, "time")?);
        let (cards, times) = (slice(py, &cards, "card")?, slice(py, &times, "time")?);
        let keep = self.state.with(py, |s| s.decide(cards, times))?.py_result(py)?;
        Ok(keep.into_pyarray(py))
    }

    /// Forgets `card`'s entry.
    fn forget(&self, py: Python<'_>, card: i64) -> PyResult<()> {
        self.state.with(py, |s| s.forget(card))
    }

    /// Whether `card` has an entry.
    fn holds(&self, py: Python<'_>, card: i64) -> PyResult<bool> {
        self.state.with(py, |s| s.holds(card))
    }

    /// Candidates suppressed so far.
    #[getter]
    fn suppressed(&self, py: Python<'_>) -> PyResult<u64> {
        self.state.with(py, |s| s.suppressed())
    }

    /// The period, ms.
    #[getter]
    fn period(&self) -> i64 {
        self.period
    }

    /// Entries held (live or not yet pruned).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.state.with(py, |s| s.len())
    }

    /// Prunes expired entries once more than `entries` are held.
    fn prune_above(&self, py: Python<'_>, entries: usize) -> PyResult<()> {
        self.state.with(py, |s| s.prune_above(entries))
    }

    /// The state as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.state.with(py, |s| s.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Replaces the state with a snapshot's.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let period = self.period;
        let restored = detached(py, || State::restore(period, data)).py_result(py)?;
        self.state.with(py, |s| *s = restored)
    }
}
