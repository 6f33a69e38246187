//! PyO3 bindings: the only code that names pyo3 or numpy.
//!
//! One thin wrapper file per exposed type; `errors.rs` maps [`crate::CoreError`] to the Python
//! exception hierarchy of `fraudstream.errors`; `convert.rs` borrows numpy columns and builds
//! output arrays. Every batch call releases the GIL (`py.detach`).

mod checksum;
mod convert;
mod cooldown;
mod decode;
mod dedup;
mod engine;
mod errors;
mod features;
mod queue;
mod records;
mod temporal_join;

use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The compiled core of fraudstream.
#[pymodule]
mod _core {
    #[pymodule_export]
    use super::checksum::crc32;
    #[pymodule_export]
    use super::cooldown::Cooldown;
    #[pymodule_export]
    use super::decode::{decode_transactions, pack_code, unpack_code};
    #[pymodule_export]
    use super::dedup::DuplicateFilter;
    #[pymodule_export]
    use super::engine::WindowEngine;
    #[pymodule_export]
    use super::features::{FeatureEngine, ModelScorer};
    #[pymodule_export]
    use super::queue::BoundedQueue;
    #[pymodule_export]
    use super::records::{message_columns, score_records};
    #[pymodule_export]
    use super::temporal_join::{LookupTable, TemporalJoin};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("MIN_EVENT_TIME", crate::time::MIN_EVENT_TIME)?;
        m.add("MAX_EVENT_TIME", crate::time::MAX_EVENT_TIME)?;
        Ok(())
    }
}

/// Runs `f` with the GIL released.
pub(crate) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

/// A core object shared between Python threads behind a mutex.
///
/// Its lock is only ever waited for with the GIL released: a thread that holds the GIL while
/// another thread's batch holds the lock would freeze every Python thread for that batch.
pub(crate) struct Shared<T> {
    inner: Mutex<T>,
    what: &'static str,
}

impl<T: Send> Shared<T> {
    /// `what` names the object in the error raised if a panic ever poisoned the lock.
    pub(crate) fn new(value: T, what: &'static str) -> Self {
        Shared { inner: Mutex::new(value), what }
    }

    /// Runs `f` on the object, with the GIL released while waiting for the lock and while `f`
    /// runs.
    pub(crate) fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> R + Send) -> PyResult<R> {
        let what = self.what;
        py.detach(|| match self.inner.lock() {
            Ok(mut guard) => Ok(f(&mut guard)),
            Err(_) => Err(PyRuntimeError::new_err(format!("{what} poisoned by an earlier panic"))),
        })
    }
}
