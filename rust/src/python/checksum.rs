//! `_core.crc32`: zlib's CRC-32 by `crc32fast` (several times zlib's speed here), for the
//! checksums of state packs and changelog frames, which cover megabytes inside a commit.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::detached;

/// The CRC-32 of `data[start:end]` continuing from `value`: the same number as
/// `zlib.crc32(data[start:end], value)`, without the slice's copy. `data` is bytes (immutable,
/// so it is read with the GIL released).
#[pyfunction]
#[pyo3(signature = (data, value=0, start=0, end=None))]
pub fn crc32(py: Python<'_>, data: &[u8], value: u32, start: usize, end: Option<usize>) -> PyResult<u32> {
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
