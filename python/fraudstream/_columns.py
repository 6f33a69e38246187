"""Turning user columns (numpy, pyarrow, lists, pandas) into the arrays the core borrows.

Conversions copy only when they must (another dtype, non-contiguous memory, pyarrow with
chunks); int64/float64 numpy arrays pass through untouched, so the core reads them zero-copy.
Float columns used as keys or times must hold whole, finite numbers; the error names the
column and the first bad row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.errors import InvalidBatchError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _bad(column: str, row: int | None, message: str) -> InvalidBatchError:
    where = f"column '{column}'" + (f" row {row}" if row is not None else "")
    err = InvalidBatchError(f"{where}: {message}")
    err.column, err.row = column, row
    return err


def to_numpy(obj: Any, column: str) -> np.ndarray[Any, Any]:
    """A 1-d numpy view of ``obj`` (numpy, pyarrow Array/ChunkedArray, pandas Series, list)."""
    module = type(obj).__module__
    if module.startswith("pyarrow"):
        if hasattr(obj, "combine_chunks"):
            obj = obj.combine_chunks()
        if obj.null_count:
            raise _bad(column, None, f"has {obj.null_count} nulls; fill or drop them first")
        obj = obj.to_numpy(zero_copy_only=False)
    arr = np.asarray(obj)
    if arr.ndim != 1:
        raise _bad(column, None, f"must be 1-dimensional, got shape {arr.shape}")
    return arr


def int_column(obj: Any, column: str) -> IntArray:
    """An int64 C-contiguous array; floats must be finite whole numbers."""
    arr = to_numpy(obj, column)
    if arr.dtype == np.int64:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            row = int(np.argmax(arr > np.iinfo(np.int64).max))
            raise _bad(column, row, f"value {arr[row]} does not fit in int64")
        return np.ascontiguousarray(arr, dtype=np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64, copy=False)  # compare in float64: the bound overflows float16
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) > 2.0**63 - 1024)
        if bad.any():
            row = int(np.argmax(bad))
            raise _bad(column, row, f"value {arr[row]!r} is not a whole, finite number")
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.datetime64):
        return np.ascontiguousarray(arr.astype("datetime64[ms]").astype(np.int64))
    raise TypeError(f"column '{column}' must hold integers, got dtype {arr.dtype}")


def value_column(obj: Any, column: str) -> IntArray | FloatArray:
    """A float64 or int64 C-contiguous array (other numeric dtypes are widened)."""
    arr = to_numpy(obj, column)
    if arr.dtype in (np.float64, np.int64):
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(arr, dtype=np.float64)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return int_column(arr, column)
    raise TypeError(f"column '{column}' must be numeric, got dtype {arr.dtype}")


def get_column(columns: Any, name: str) -> Any:
    """Column ``name`` of a mapping, pyarrow RecordBatch/Table or pandas DataFrame."""
    is_arrow = hasattr(columns, "schema") and hasattr(columns, "column")
    names = list(columns.schema.names) if is_arrow else list(columns.keys())
    if name not in names:
        raise InvalidBatchError(f"missing column '{name}'; the batch has {sorted(names)}")
    return columns.column(name) if is_arrow else columns[name]
