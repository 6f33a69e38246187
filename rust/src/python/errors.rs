//! Maps [`CoreError`] to the exception classes of `fraudstream.errors` — the one place where
//! core errors become Python exceptions.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::CoreError;

fn class_name(err: &CoreError) -> &'static str {
    match err {
        CoreError::LengthMismatch { .. } | CoreError::InvalidValue { .. } => "InvalidBatchError",
        CoreError::Config(_) | CoreError::Predicate { .. } => "ConfigError",
        CoreError::Snapshot(_) => "SnapshotError",
        CoreError::Decode(_) => "DecodeError",
        CoreError::QueueClosed => "QueueClosedError",
        CoreError::Timeout(_) => "QueueTimeoutError",
    }
}

/// Converts a core error into the matching `fraudstream.errors` exception, with the column and
/// row as attributes where the error names them.
pub(crate) fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("fraudstream.errors")?;
        let class = module.getattr(class_name(&err))?;
        let exc = class.call1((err.to_string(),))?;
        match &err {
            CoreError::InvalidValue { column, row, .. } => {
                exc.setattr("column", column)?;
                exc.setattr("row", row)?;
            }
            CoreError::LengthMismatch { column, .. } => exc.setattr("column", column)?,
            _ => {}
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| PyRuntimeError::new_err(format!("{err} (and while raising it: {e})")))
}

/// `Result<T, CoreError>` -> `PyResult<T>`.
pub(crate) trait IntoPyResult<T> {
    fn py_result(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, CoreError> {
    fn py_result(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
