//! Maps [`CoreError`] to the exception classes of `fraudstream.errors` — the one place where
//! core errors become Python exceptions.
//!
//! Each class is a typed handle (`import_exception!`), imported once on first use and cached,
//! never looked up by name when an error is raised.

use pyo3::prelude::*;

use crate::CoreError;

pyo3::import_exception!(fraudstream.errors, InvalidBatchError);
pyo3::import_exception!(fraudstream.errors, ConfigError);
pyo3::import_exception!(fraudstream.errors, SnapshotError);
pyo3::import_exception!(fraudstream.errors, QueueClosedError);
pyo3::import_exception!(fraudstream.errors, QueueTimeoutError);

/// Converts a core error into the matching `fraudstream.errors` exception, with the column and
/// row as attributes where the error names them.
pub(crate) fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    let message = err.to_string();
    let exc = match &err {
        CoreError::LengthMismatch { .. } | CoreError::InvalidValue { .. } => {
            InvalidBatchError::new_err(message)
        }
        CoreError::Config(_) | CoreError::Predicate { .. } => ConfigError::new_err(message),
        CoreError::Snapshot(_) => SnapshotError::new_err(message),
        CoreError::QueueClosed => QueueClosedError::new_err(message),
        CoreError::Timeout(_) => QueueTimeoutError::new_err(message),
    };
    let value = exc.value(py);
    let located = match &err {
        CoreError::InvalidValue { column, row, .. } => {
            value.setattr("column", column).and_then(|()| value.setattr("row", row))
        }
        CoreError::LengthMismatch { column, .. } => value.setattr("column", column),
        _ => Ok(()),
    };
    located.err().unwrap_or(exc)
}

/// The error for any input array that is not C-contiguous, keys and values alike: the core
/// reads every column as a plain slice, so a strided view must be copied by the caller.
pub(crate) fn not_contiguous(py: Python<'_>, column: &str) -> PyErr {
    let exc = InvalidBatchError::new_err(format!(
        "column '{column}' must be a C-contiguous array (numpy.ascontiguousarray copies a strided view)"
    ));
    exc.value(py).setattr("column", column).err().unwrap_or(exc)
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
