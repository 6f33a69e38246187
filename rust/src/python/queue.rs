//! `_core.BoundedQueue`: the core queue holding Python objects.
//!
//! Blocking calls release the GIL and wait in slices of [`SLICE`], checking for signals
//! between slices, so Ctrl-C interrupts a producer blocked on a full queue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::detached;
use super::errors::IntoPyResult;
use crate::queue::{BoundedQueue as CoreQueue, Got, PutError};
use crate::CoreError;

const SLICE: Duration = Duration::from_millis(50);

/// Bounded FIFO queue with backpressure and water marks (see `fraudstream.pipeline`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct BoundedQueue {
    queue: CoreQueue<Py<PyAny>>,
    sample: Mutex<(Instant, Duration, Duration)>,
}

fn deadline_of(timeout: Option<f64>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)))
}

fn next_slice(deadline: Option<Instant>) -> Instant {
    let slice = Instant::now() + SLICE;
    deadline.map_or(slice, |d| d.min(slice))
}

impl BoundedQueue {
    fn put_all(
        &self,
        py: Python<'_>,
        items: Vec<Py<PyAny>>,
        sizes: &[usize],
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let deadline = deadline_of(timeout);
        let (mut items, mut sizes) = (items, sizes.to_vec());
        loop {
            let slice = next_slice(deadline);
            let result = detached(py, || self.queue.put_batch(items, &sizes, Some(slice)));
            match result {
                Ok(()) => return Ok(()),
                Err(PutError::Closed(_)) => return Err(CoreError::QueueClosed).py_result(py),
                Err(PutError::Full(rest)) => {
                    sizes.drain(..sizes.len().saturating_sub(rest.len()));
                    items = rest;
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let ms = (timeout.unwrap_or(0.0) * 1000.0) as u64;
                        return Err(CoreError::Timeout(ms)).py_result(py);
                    }
                }
            }
        }
    }
}

#[pymethods]
impl BoundedQueue {
    /// A queue of at most `capacity` items (and `capacity_bytes` bytes, if given). Pressure
    /// turns on at `high_water` items (default: capacity) and off at `low_water` (default:
    /// half of high_water).
    #[new]
    #[pyo3(signature = (capacity, capacity_bytes=None, high_water=None, low_water=None))]
    fn new(
        py: Python<'_>,
        capacity: usize,
        capacity_bytes: Option<usize>,
        high_water: Option<usize>,
        low_water: Option<usize>,
    ) -> PyResult<Self> {
        let queue = CoreQueue::new(capacity, capacity_bytes, high_water, low_water).py_result(py)?;
        Ok(BoundedQueue { queue, sample: Mutex::new((Instant::now(), Duration::ZERO, Duration::ZERO)) })
    }

    /// Puts one item, waiting while the queue is full (up to `timeout` seconds; None: forever).
    #[pyo3(signature = (item, nbytes=0, timeout=None))]
    fn put(&self, py: Python<'_>, item: Py<PyAny>, nbytes: usize, timeout: Option<f64>) -> PyResult<()> {
        self.put_all(py, vec![item], &[nbytes], timeout)
    }

    /// Puts several items in order, waiting for space as needed.
    #[pyo3(signature = (items, nbytes=None, timeout=None))]
    fn put_batch(
        &self,
        py: Python<'_>,
        items: Vec<Py<PyAny>>,
        nbytes: Option<Vec<usize>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let sizes = nbytes.unwrap_or_else(|| vec![0; items.len()]);
        if sizes.len() != items.len() {
            return Err(CoreError::Config(format!("{} items but {} sizes", items.len(), sizes.len())))
                .py_result(py);
        }
        self.put_all(py, items, &sizes, timeout)
    }

    /// Puts one item if there is room now; returns False when full (never waits).
    #[pyo3(signature = (item, nbytes=0))]
    fn try_put(&self, py: Python<'_>, item: Py<PyAny>, nbytes: usize) -> PyResult<bool> {
        match self.queue.try_put(item, nbytes) {
            Ok(()) => Ok(true),
            Err(PutError::Full(_)) => Ok(false),
            Err(PutError::Closed(_)) => Err(CoreError::QueueClosed).py_result(py),
        }
    }

    /// Up to `max_items` items; waits up to `timeout` seconds (None: forever) for the first.
    /// Returns [] on timeout and None at end of stream (closed and drained).
    #[pyo3(signature = (max_items=1024, timeout=None))]
    fn get_batch(
        &self,
        py: Python<'_>,
        max_items: usize,
        timeout: Option<f64>,
    ) -> PyResult<Option<Vec<Py<PyAny>>>> {
        let deadline = deadline_of(timeout);
        loop {
            let slice = next_slice(deadline);
            match detached(py, || self.queue.get_batch(max_items, Some(slice))) {
                Got::Items(items) => return Ok(Some(items)),
                Got::EndOfStream => return Ok(None),
                Got::TimedOut => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Some(Vec::new()));
                    }
                }
            }
        }
    }

    /// No more puts; consumers drain what is left, then see end of stream.
    fn close(&self) {
        self.queue.close();
    }

    /// Drops all queued items; returns how many (for shutdown after a failure).
    fn clear(&self, py: Python<'_>) -> usize {
        detached(py, || self.queue.clear())
    }

    /// True from the high water mark until the length is back down to the low water mark.
    #[getter]
    fn pressure(&self) -> bool {
        self.queue.pressure()
    }

    /// Whether the queue was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.queue.metrics().closed
    }

    /// Capacity in items.
    #[getter]
    fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    fn __len__(&self) -> usize {
        self.queue.metrics().len
    }

    /// Counters, plus blocked/idle time as ms per second since the previous call
    /// (`backpressured_ms_per_s` is Flink's backPressuredTimeMsPerSecond).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.queue.metrics();
        let now = Instant::now();
        let (rate_blocked, rate_idle) = {
            let mut s = self.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let secs = now.duration_since(s.0).as_secs_f64().max(1e-9);
            let rates = (
                (m.blocked.saturating_sub(s.1)).as_secs_f64() * 1000.0 / secs,
                (m.idle.saturating_sub(s.2)).as_secs_f64() * 1000.0 / secs,
            );
            *s = (now, m.blocked, m.idle);
            rates
        };
        let d = PyDict::new(py);
        d.set_item("len", m.len)?;
        d.set_item("bytes", m.bytes)?;
        d.set_item("peak_len", m.peak_len)?;
        d.set_item("items_in", m.items_in)?;
        d.set_item("items_out", m.items_out)?;
        d.set_item("blocked_ms_total", m.blocked.as_secs_f64() * 1000.0)?;
        d.set_item("idle_ms_total", m.idle.as_secs_f64() * 1000.0)?;
        d.set_item("backpressured_ms_per_s", rate_blocked)?;
        d.set_item("idle_ms_per_s", rate_idle)?;
        d.set_item("pressure", m.pressure)?;
        d.set_item("pressure_events", m.pressure_events)?;
        d.set_item("closed", m.closed)?;
        Ok(d)
    }
}
