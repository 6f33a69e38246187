//! numpy <-> core conversions: zero-copy borrows in, moved `Vec`s out.

use numpy::{Element, IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::not_contiguous;
use crate::aggregate::{Layout, OutputSlot};
use crate::batch::Values;
use crate::window::output::Output;

/// A borrowed value column, kept alive while its slice is used.
pub(crate) enum ValueArray<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl ValueArray<'_> {
    fn values(&self, py: Python<'_>, column: &str) -> PyResult<Values<'_>> {
        Ok(match self {
            ValueArray::F64(a) => Values::F64(slice(py, a, column)?),
            ValueArray::I64(a) => Values::I64(slice(py, a, column)?),
        })
    }
}

/// The elements of a borrowed array named `column`, without a copy.
pub(crate) fn slice<'a, T: Element>(
    py: Python<'_>,
    array: &'a PyReadonlyArray1<'_, T>,
    column: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| not_contiguous(py, column))
}

/// Borrows a 1-d int64 array named `name`.
pub(crate) fn int_column<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, i64>> {
    obj.extract::<PyReadonlyArray1<'py, i64>>().map_err(|_| wrong_type(obj, name, "int64"))
}

/// Borrows a 1-d float64 or int64 array named `name`.
fn value_column<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<ValueArray<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f64>>() {
        return Ok(ValueArray::F64(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i64>>() {
        return Ok(ValueArray::I64(a));
    }
    Err(wrong_type(obj, name, "float64 or int64"))
}

/// Borrows the value columns `objs`, the i-th named `names[i]`.
pub(crate) fn value_columns<'py>(
    objs: &[Bound<'py, PyAny>],
    names: &[String],
) -> PyResult<Vec<ValueArray<'py>>> {
    objs.iter().enumerate().map(|(i, obj)| value_column(obj, name_of(names, i))).collect()
}

/// The elements of borrowed value columns, the i-th named `names[i]`, without a copy.
pub(crate) fn value_slices<'a>(
    py: Python<'_>,
    arrays: &'a [ValueArray<'_>],
    names: &[String],
) -> PyResult<Vec<Values<'a>>> {
    arrays.iter().enumerate().map(|(i, a)| a.values(py, name_of(names, i))).collect()
}

fn name_of(names: &[String], i: usize) -> &str {
    names.get(i).map_or("?", String::as_str)
}

fn wrong_type(obj: &Bound<'_, PyAny>, name: &str, want: &str) -> PyErr {
    let got = obj
        .getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| obj.get_type().name().map(|n| n.to_string()).unwrap_or_default());
    let ndim = obj.getattr("ndim").and_then(|n| n.extract::<usize>()).unwrap_or(1);
    if ndim == 1 {
        PyTypeError::new_err(format!("column '{name}' must be a 1-d {want} numpy array, got {got}"))
    } else {
        PyValueError::new_err(format!("column '{name}' must be 1-dimensional, got {ndim} dimensions"))
    }
}

/// Emitted columns, late row numbers, trigger row of each emitted row.
pub(crate) type PyOutput<'py> = (Bound<'py, PyDict>, Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>);

/// The emitted rows as a dict of numpy arrays and the late row numbers.
pub(crate) fn output_to_py<'py>(py: Python<'py>, layout: &Layout, out: Output) -> PyResult<PyOutput<'py>> {
    let dict = PyDict::new(py);
    dict.set_item("key", out.keys.into_pyarray(py))?;
    dict.set_item("window_start", out.starts.into_pyarray(py))?;
    dict.set_item("window_end", out.ends.into_pyarray(py))?;
    dict.set_item("kind", out.kinds.into_pyarray(py))?;
    let mut ints = out.ints.into_iter();
    let mut floats = out.floats.into_iter();
    for (spec, slot) in layout.specs().iter().zip(layout.outputs()) {
        match slot {
            OutputSlot::Int(_) => {
                dict.set_item(&spec.name, ints.next().unwrap_or_default().into_pyarray(py))?
            }
            OutputSlot::Float(_) => {
                dict.set_item(&spec.name, floats.next().unwrap_or_default().into_pyarray(py))?;
            }
        }
    }
    Ok((dict, out.late_rows.into_pyarray(py), out.triggers.into_pyarray(py)))
}
