//! `_core.WindowEngine`: a thin wrapper over [`crate::engine::Engine`].
//!
//! The engine is [`Shared`] between Python threads; every call borrows its numpy columns,
//! then releases the GIL to wait for the engine and do the work.

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::convert::{int_column, output_to_py, slice, value_columns, value_slices, PyOutput};
use super::errors::IntoPyResult;
use super::{detached, Shared};
use crate::aggregate::AggSpec;
use crate::batch::Batch;
use crate::engine::{EarlyFiring, Engine, EngineConfig};
use crate::window::output::Output;
use crate::window::WindowSpec;

/// A session engine's sessions `(key, start, end)`, its watermark and its evictions.
pub(crate) type SessionState = (Vec<(i64, i64, i64)>, i64, u64);

/// Keyed event-time window aggregation over numpy columns (see `fraudstream.windows`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct WindowEngine {
    engine: Shared<Engine>,
}

impl WindowEngine {
    fn emit<'py>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut Engine) -> Output + Send,
    ) -> PyResult<PyOutput<'py>> {
        let (out, layout) = self.engine.with(py, |e| (f(e), e.layout().clone()))?;
        output_to_py(py, &layout, out)
    }
}

impl WindowEngine {
    /// The sessions `(key, start, end)`, the watermark and the evictions of a session engine.
    pub(crate) fn session_state(&self, py: Python<'_>) -> PyResult<SessionState> {
        let (sessions, wm, evicted) =
            self.engine.with(py, |e| (e.sessions(), e.watermark(), e.counters().evicted))?;
        let sessions = sessions.ok_or_else(|| PyValueError::new_err("not a session window engine"))?;
        Ok((sessions, wm, evicted))
    }
}

#[pymethods]
impl WindowEngine {
    /// Builds an engine; `window` is "tumbling", "hopping" or "session"; `aggregations` is a
    /// list of (name, function, column or None); `early` is None, "on_update" or a predicate;
    /// `final_rows=False` closes windows without building their final and update rows;
    /// `max_keys` caps the live keys (the key whose latest event is the oldest evicted first).
    #[new]
    #[pyo3(signature = (
        *, window, size=0, slide=0, offset=0, gap=0, aggregations, key_column="key",
        time_column="time", out_of_orderness=0, allowed_lateness=0, early=None, partitions=1,
        idle_timeout=None, final_rows=true, max_keys=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        window: &str,
        size: i64,
        slide: i64,
        offset: i64,
        gap: i64,
        aggregations: Vec<(String, String, Option<String>)>,
        key_column: &str,
        time_column: &str,
        out_of_orderness: i64,
        allowed_lateness: i64,
        early: Option<String>,
        partitions: usize,
        idle_timeout: Option<i64>,
        final_rows: bool,
        max_keys: Option<usize>,
    ) -> PyResult<Self> {
        let spec = match window {
            "tumbling" => WindowSpec::Tumbling { size, offset },
            "hopping" => WindowSpec::Hopping { size, slide, offset },
            "session" => WindowSpec::Session { gap },
            other => {
                return Err(crate::CoreError::Config(format!(
                    "unknown window kind {other:?}; expected tumbling, hopping or session"
                )))
                .py_result(py)
            }
        };
        let mut aggs = Vec::with_capacity(aggregations.len());
        for (name, function, column) in aggregations {
            let kind = function.parse().py_result(py)?;
            aggs.push(AggSpec { name, kind, column });
        }
        let mut config = EngineConfig::new(spec, aggs);
        config.key_column = key_column.to_owned();
        config.time_column = time_column.to_owned();
        config.out_of_orderness = out_of_orderness;
        config.allowed_lateness = allowed_lateness;
        config.early = match early.as_deref() {
            None => EarlyFiring::Never,
            Some("on_update") => EarlyFiring::EveryUpdate,
            Some(predicate) => EarlyFiring::When(predicate.to_owned()),
        };
        config.partitions = partitions;
        config.idle_timeout = idle_timeout;
        config.final_rows = final_rows;
        config.max_keys = max_keys;
        Ok(WindowEngine { engine: Shared::new(Engine::new(config).py_result(py)?, "window engine") })
    }

    /// Value columns `process` expects, in order.
    #[getter]
    fn value_columns(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.engine.with(py, |e| e.schema().values.clone())
    }

    /// (name, "int" | "float") of each aggregate output column.
    #[getter]
    fn output_columns(&self, py: Python<'_>) -> PyResult<Vec<(String, &'static str)>> {
        self.engine.with(py, |e| {
            e.layout()
                .specs()
                .iter()
                .map(|s| (s.name.clone(), if s.kind.is_integer() { "int" } else { "float" }))
                .collect()
        })
    }

    /// The watermark, or None before the first event.
    #[getter]
    fn watermark(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        self.engine.with(py, |e| Some(e.watermark()).filter(|&w| w != i64::MIN))
    }

    /// Partitions currently idle.
    #[getter]
    fn idle_partitions(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        self.engine.with(py, |e| e.idle_partitions())
    }

    /// Processes one batch; returns (columns, late row numbers). `drop_rows`/`drop_keys`: the
    /// state of `drop_keys[i]` is dropped without a row before row `drop_rows[i]` (rows
    /// ascending; the caller's cap on keys, see `Engine::process_dropping`).
    #[pyo3(signature = (keys, times, values, partitions=None, now=None, drop_rows=None, drop_keys=None))]
    #[allow(clippy::too_many_arguments)]
    fn process<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        values: Vec<Bound<'py, PyAny>>,
        partitions: Option<&Bound<'py, PyAny>>,
        now: Option<i64>,
        drop_rows: Option<&Bound<'py, PyAny>>,
        drop_keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyOutput<'py>> {
        let drops = match (drop_rows, drop_keys) {
            (Some(rows), Some(keys)) => {
                let (rows, keys) = (int_column(rows, "drop_rows")?, int_column(keys, "drop_keys")?);
                let (rows, keys) = (rows.as_array(), keys.as_array());
                if rows.len() != keys.len() || rows.iter().any(|&r| r < 0) {
                    return Err(PyValueError::new_err("drop_rows and drop_keys must be as long, rows >= 0"));
                }
                rows.iter().zip(keys.iter()).map(|(&r, &k)| (r as usize, k)).collect()
            }
            (None, None) => Vec::new(),
            _ => return Err(PyValueError::new_err("drop_rows and drop_keys go together")),
        };
        let schema = self.engine.with(py, |e| e.schema().clone())?;
        let keys = int_column(keys, &schema.key)?;
        let times = int_column(times, &schema.time)?;
        let parts = partitions.map(|p| int_column(p, "partition")).transpose()?;
        let arrays = value_columns(&values, &schema.values)?;
        let batch = Batch {
            keys: slice(py, &keys, &schema.key)?,
            times: slice(py, &times, &schema.time)?,
            partitions: parts.as_ref().map(|p| slice(py, p, "partition")).transpose()?,
            values: value_slices(py, &arrays, &schema.values)?,
        };
        let (result, layout) =
            self.engine.with(py, |e| (e.process_dropping(&batch, now, &drops), e.layout().clone()))?;
        output_to_py(py, &layout, result.py_result(py)?)
    }

    /// Raises the watermark to at least `time` and fires what is due.
    fn advance_to<'py>(&self, py: Python<'py>, time: i64) -> PyResult<PyOutput<'py>> {
        self.emit(py, |e| e.advance_to(time))
    }

    /// Marks idle partitions at processing time `now` (ms) and fires what that releases.
    fn tick<'py>(&self, py: Python<'py>, now: i64) -> PyResult<PyOutput<'py>> {
        self.emit(py, |e| e.tick(now))
    }

    /// End of input: fires every window and empties the state.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<PyOutput<'py>> {
        self.emit(py, Engine::flush)
    }

    /// {"keys", "windows", "timers", "bytes"} of the current state.
    fn state_size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.engine.with(py, |e| e.state_size())?;
        let d = PyDict::new(py);
        d.set_item("keys", s.keys)?;
        d.set_item("windows", s.windows)?;
        d.set_item("timers", s.timers)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d)
    }

    /// {"events", "late", "emitted", "evicted"} since creation.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.engine.with(py, |e| e.counters())?;
        let d = PyDict::new(py);
        d.set_item("events", c.events)?;
        d.set_item("late", c.late)?;
        d.set_item("emitted", c.emitted)?;
        d.set_item("evicted", c.evicted)?;
        Ok(d)
    }

    /// The whole state as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.engine.with(py, |e| e.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// `snapshot()`'s bytes in a uint8 array that owns them: no copy of a state of megabytes.
    fn snapshot_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        Ok(self.engine.with(py, |e| e.snapshot())?.into_pyarray(py))
    }

    /// Starts (or stops) recording which keys change, for `take_changes`.
    fn track_changes(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.engine.with(py, |e| e.track_changes(on))
    }

    /// The changes since the previous call, as versioned bytes.
    fn take_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.engine.with(py, Engine::take_changes)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Applies bytes from `take_changes` of an engine of the same configuration.
    fn apply_changes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.engine.with(py, |e| e.apply_changes(data))?.py_result(py)
    }

    /// Replaces the state with a snapshot taken from an engine of the same configuration.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let config = self.engine.with(py, |e| e.config().clone())?;
        let mut restored = detached(py, || Engine::restore(config, data)).py_result(py)?;
        self.engine.with(py, |e| {
            // keep recording changes if this engine was: a changelog must not miss any
            restored.track_changes(e.tracks_changes());
            *e = restored;
        })
    }
}
