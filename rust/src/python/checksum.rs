//! `_core.crc32`: zlib's CRC-32 by `crc32fast` (several times zlib's speed here), for the
//! checksums of state packs and changelog frames, which cover megabytes inside a commit.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::detached;

/// The CRC-32 of `data[start:end]` continuing from `value`: the same number as
/// `zlib.crc32(data[start:end], value)`, without the slice's copy. `data` is bytes or a uint8
/// array (a `snapshot_array()`), read with the GIL released.
#[pyfunction]
#[pyo3(signature = (data, value=0, start=0, end=None))]
pub fn crc32(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    value: u32,
    start: usize,
    end: Option<usize>,
) -> PyResult<u32> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return sum(py, bytes.as_bytes(), value, start, end);
    }
    let Ok(array) = data.extract::<PyReadonlyArray1<'_, u8>>() else {
        return Err(PyTypeError::new_err("crc32: data must be bytes or a uint8 array"));
    };
    let slice = array.as_slice().map_err(|_| PyValueError::new_err("crc32: the array must be contiguous"))?;
    sum(py, slice, value, start, end)
}

fn sum(py: Python<'_>, data: &[u8], value: u32, start: usize, end: Option<usize>) -> PyResult<u32> {
    let end = end.unwrap_or(data.len());
    let bytes = data.get(start..end).ok_or_else(|| {
        PyValueError::new_err(format!("crc32: range {start}..{end} outside {} bytes", data.len()))
    })?;
    Ok(detached(py, || {
        let mut hasher = crc32fast::Hasher::new_with_initial(value);
        hasher.update(bytes);
        hasher.finalize()
    }))
}
