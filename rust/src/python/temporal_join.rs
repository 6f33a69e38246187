//! `_core.TemporalJoin` and `_core.LookupTable`: thin wrappers over
//! [`crate::join::TemporalJoin`] and [`crate::join::lookup::LookupTable`].
//!
//! Columns are borrowed from numpy without copying, the GIL is released for every batch
//! call, and joined columns are moved into new numpy arrays.

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::convert::{int_column, slice};
use super::errors::IntoPyResult;
use super::Shared;
use crate::join::lookup::{Looked, LookupTable as CoreLookup};
use crate::join::{JoinConfig, JoinKind, Joined, KeyedTableState, Probes, TemporalJoin as CoreJoin, Updates};

fn float_column<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, f64>> {
    obj.extract::<PyReadonlyArray1<'py, f64>>()
        .map_err(|_| PyTypeError::new_err(format!("column '{name}' must be a 1-d float64 numpy array")))
}

fn bool_column<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, bool>> {
    obj.extract::<PyReadonlyArray1<'py, bool>>()
        .map_err(|_| PyTypeError::new_err(format!("column '{name}' must be a 1-d bool numpy array")))
}

fn value_columns<'py>(
    values: &[Bound<'py, PyAny>],
    names: &[String],
) -> PyResult<Vec<PyReadonlyArray1<'py, f64>>> {
    if values.len() != names.len() {
        return Err(PyValueError::new_err(format!(
            "{} value columns given, the table has {} ({})",
            values.len(),
            names.len(),
            names.join(", ")
        )));
    }
    values.iter().zip(names).map(|(v, n)| float_column(v, n)).collect()
}

fn joined_to_py<'py>(py: Python<'py>, names: &[String], out: Joined) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("key", out.keys.into_pyarray(py))?;
    d.set_item("time", out.times.into_pyarray(py))?;
    d.set_item("id", out.ids.into_pyarray(py))?;
    d.set_item("matched", out.matched.into_pyarray(py))?;
    d.set_item("version_time", out.version_times.into_pyarray(py))?;
    for (name, col) in names.iter().zip(out.values) {
        d.set_item(name, col.into_pyarray(py))?;
    }
    d.set_item("late_rows", out.late_rows.into_pyarray(py))?;
    Ok(d)
}

/// The event-time temporal join of a stream with a versioned table.
#[pyclass(module = "fraudstream._core", frozen)]
pub struct TemporalJoin {
    join: Shared<CoreJoin>,
    columns: Vec<String>,
}

#[pymethods]
impl TemporalJoin {
    /// A join with an empty table of float64 `columns`; disorders in ms.
    #[new]
    #[pyo3(signature = (*, columns, table_disorder=0, probe_disorder=0, inner=false))]
    fn new(
        py: Python<'_>,
        columns: Vec<String>,
        table_disorder: i64,
        probe_disorder: i64,
        inner: bool,
    ) -> PyResult<Self> {
        let kind = if inner { JoinKind::Inner } else { JoinKind::Left };
        let config = JoinConfig { columns: columns.clone(), table_disorder, probe_disorder, kind };
        let join = CoreJoin::new(config).py_result(py)?;
        Ok(TemporalJoin { join: Shared::new(join, "temporal join"), columns })
    }

    /// The table's value columns.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// The table side's watermark, or None before the first update.
    #[getter]
    fn table_watermark(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        self.join.with(py, |j| Some(j.table_watermark()).filter(|&w| w != i64::MIN))
    }

    /// The probe side's watermark, or None before the first probe.
    #[getter]
    fn probe_watermark(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        self.join.with(py, |j| Some(j.probe_watermark()).filter(|&w| w != i64::MIN))
    }

    /// Applies table updates (upserts; deletes where `deleted`); returns the joined rows the
    /// table watermark released, with `late_rows` the late updates.
    #[pyo3(signature = (keys, times, values, deleted=None))]
    fn update<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        values: Vec<Bound<'py, PyAny>>,
        deleted: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let keys = int_column(keys, "key")?;
        let times = int_column(times, "time")?;
        let arrays = value_columns(&values, &self.columns)?;
        let deleted = deleted.map(|d| bool_column(d, "deleted")).transpose()?;
        let slices =
            arrays.iter().zip(&self.columns).map(|(a, n)| slice(py, a, n)).collect::<PyResult<Vec<_>>>()?;
        let u = Updates {
            keys: slice(py, &keys, "key")?,
            times: slice(py, &times, "time")?,
            values: &slices,
            deletes: deleted.as_ref().map(|d| slice(py, d, "deleted")).transpose()?,
        };
        let out = self.join.with(py, |j| j.update(&u))?.py_result(py)?;
        joined_to_py(py, &self.columns, out)
    }

    /// Joins probe rows; returns those the table watermark has passed, with `late_rows` the
    /// late probes.
    fn process<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let keys = int_column(keys, "key")?;
        let times = int_column(times, "time")?;
        let ids = int_column(ids, "id")?;
        let p = Probes {
            keys: slice(py, &keys, "key")?,
            times: slice(py, &times, "time")?,
            ids: slice(py, &ids, "id")?,
        };
        let out = self.join.with(py, |j| j.process(&p))?.py_result(py)?;
        joined_to_py(py, &self.columns, out)
    }

    /// Raises the table watermark to at least `watermark` (an idle table side).
    fn advance_table_to<'py>(&self, py: Python<'py>, watermark: i64) -> PyResult<Bound<'py, PyDict>> {
        let out = self.join.with(py, |j| j.advance_table_to(watermark))?;
        joined_to_py(py, &self.columns, out)
    }

    /// End of input: every waiting probe is emitted.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = self.join.with(py, CoreJoin::flush)?;
        joined_to_py(py, &self.columns, out)
    }

    /// {"keys", "versions", "waiting"} held.
    fn state_size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (keys, versions, waiting) = self.join.with(py, |j| j.state_size())?;
        let d = PyDict::new(py);
        d.set_item("keys", keys)?;
        d.set_item("versions", versions)?;
        d.set_item("waiting", waiting)?;
        Ok(d)
    }

    /// Counters since creation.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.join.with(py, |j| j.counters())?;
        let d = PyDict::new(py);
        d.set_item("probes", c.probes)?;
        d.set_item("late_probes", c.late_probes)?;
        d.set_item("updates", c.updates)?;
        d.set_item("late_updates", c.late_updates)?;
        d.set_item("matched", c.matched)?;
        d.set_item("unmatched", c.unmatched)?;
        d.set_item("freed", c.freed)?;
        Ok(d)
    }

    /// The whole state as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.join.with(py, |j| j.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Starts (or stops) recording changed keys for `take_changes`.
    fn track_changes(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.join.with(py, |j| j.track_changes(on))
    }

    /// The changes since the previous call, as versioned bytes.
    fn take_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.join.with(py, CoreJoin::take_changes)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Replaces the state with a snapshot of a join of the same configuration.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.join.with(py, |j| j.restore(data))?.py_result(py)
    }

    /// Applies bytes from `take_changes`.
    fn apply_changes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.join.with(py, |j| j.apply_changes(data))?.py_result(py)
    }
}

fn looked_to_py<'py>(py: Python<'py>, names: &[String], out: Looked) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("matched", out.matched.into_pyarray(py))?;
    for (name, col) in names.iter().zip(out.values) {
        d.set_item(name, col.into_pyarray(py))?;
    }
    Ok(d)
}

/// The latest value per key, for processing-time lookup joins.
#[pyclass(module = "fraudstream._core", frozen)]
pub struct LookupTable {
    table: Shared<CoreLookup>,
    columns: Vec<String>,
}

#[pymethods]
impl LookupTable {
    /// An empty table of float64 `columns`.
    #[new]
    #[pyo3(signature = (*, columns))]
    fn new(py: Python<'_>, columns: Vec<String>) -> PyResult<Self> {
        let table = CoreLookup::new(columns.clone()).py_result(py)?;
        Ok(LookupTable { table: Shared::new(table, "lookup table"), columns })
    }

    /// The table's value columns.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// Keys held.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.table.with(py, |t| t.len())
    }

    /// Upserts rows (deletes where `deleted`), in order.
    #[pyo3(signature = (keys, values, deleted=None))]
    fn update<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        values: Vec<Bound<'py, PyAny>>,
        deleted: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let keys = int_column(keys, "key")?;
        let arrays = value_columns(&values, &self.columns)?;
        let deleted = deleted.map(|d| bool_column(d, "deleted")).transpose()?;
        let slices =
            arrays.iter().zip(&self.columns).map(|(a, n)| slice(py, a, n)).collect::<PyResult<Vec<_>>>()?;
        let keys = slice(py, &keys, "key")?;
        let deletes = deleted.as_ref().map(|d| slice(py, d, "deleted")).transpose()?;
        self.table.with(py, |t| t.update(keys, &slices, deletes))?.py_result(py)
    }

    /// The current value of each key: {"matched", one array per column (NaN unmatched)}.
    fn lookup<'py>(&self, py: Python<'py>, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let keys = int_column(keys, "key")?;
        let keys = slice(py, &keys, "key")?;
        let out = self.table.with(py, |t| t.lookup(keys))?;
        looked_to_py(py, &self.columns, out)
    }

    /// The whole table as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.table.with(py, |t| t.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Starts (or stops) recording changed keys for `take_changes`.
    fn track_changes(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.table.with(py, |t| t.track_changes(on))
    }

    /// The keys changed since the previous call, as versioned bytes.
    fn take_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.table.with(py, CoreLookup::take_changes)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Replaces the table with a snapshot.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.table.with(py, |t| t.restore(data))?.py_result(py)
    }

    /// Applies bytes from `take_changes`.
    fn apply_changes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.table.with(py, |t| t.apply_changes(data))?.py_result(py)
    }
}
