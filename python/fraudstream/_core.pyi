"""Type stubs of the compiled core (rust/src/python/). Checked by ``mypy.stubtest``."""

from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_EVENT_TIME",
    "MIN_EVENT_TIME",
    "BoundedQueue",
    "FeatureEngine",
    "LookupTable",
    "ModelScorer",
    "TemporalJoin",
    "WindowEngine",
    "__version__",
    "decode_transactions",
    "message_columns",
    "pack_code",
    "score_records",
    "unpack_code",
]
__version__: str
MIN_EVENT_TIME: int
MAX_EVENT_TIME: int

_Output = tuple[dict[str, np.ndarray[Any, Any]], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]

@final
class WindowEngine:
    def __new__(
        cls,
        *,
        window: str,
        size: int = 0,
        slide: int = 0,
        offset: int = 0,
        gap: int = 0,
        aggregations: list[tuple[str, str, str | None]],
        key_column: str = "key",
        time_column: str = "time",
        out_of_orderness: int = 0,
        allowed_lateness: int = 0,
        early: str | None = None,
        partitions: int = 1,
        idle_timeout: int | None = None,
        final_rows: bool = True,
        max_keys: int | None = None,
    ) -> WindowEngine: ...
    @property
    def value_columns(self) -> list[str]: ...
    @property
    def output_columns(self) -> list[tuple[str, str]]: ...
    @property
    def watermark(self) -> int | None: ...
    @property
    def idle_partitions(self) -> list[int]: ...
    def process(
        self,
        keys: npt.NDArray[np.int64],
        times: npt.NDArray[np.int64],
        values: list[npt.NDArray[np.float64] | npt.NDArray[np.int64]],
        partitions: npt.NDArray[np.int64] | None = None,
        now: int | None = None,
        drop_rows: npt.NDArray[np.int64] | None = None,
        drop_keys: npt.NDArray[np.int64] | None = None,
    ) -> _Output: ...
    def advance_to(self, time: int) -> _Output: ...
    def tick(self, now: int) -> _Output: ...
    def flush(self) -> _Output: ...
    def state_size(self) -> dict[str, int]: ...
    def counters(self) -> dict[str, int]: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
    def track_changes(self, on: bool) -> None: ...
    def take_changes(self) -> bytes: ...
    def apply_changes(self, data: bytes) -> None: ...

@final
class BoundedQueue:
    def __new__(
        cls,
        capacity: int,
        capacity_bytes: int | None = None,
        high_water: int | None = None,
        low_water: int | None = None,
    ) -> BoundedQueue: ...
    def put(self, item: object, nbytes: int = 0, timeout: float | None = None) -> None: ...
    def put_batch(
        self, items: list[Any], nbytes: list[int] | None = None, timeout: float | None = None
    ) -> None: ...
    def try_put(self, item: object, nbytes: int = 0) -> bool: ...
    def get_batch(self, max_items: int = 1024, timeout: float | None = None) -> list[Any] | None: ...
    def close(self) -> None: ...
    def clear(self) -> int: ...
    @property
    def pressure(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    def metrics(self) -> dict[str, Any]: ...

def decode_transactions(
    messages: list[bytes],
    *,
    max_record_bytes: int = ...,
    min_time: int = ...,
    max_time: int = ...,
    max_amount: float = ...,
) -> tuple[dict[str, np.ndarray[Any, Any]], npt.NDArray[np.uint32], list[str]]: ...
def pack_code(code: str) -> int | None: ...
def unpack_code(code: int) -> str: ...
def message_columns(
    messages: list[Any],
) -> tuple[
    list[bytes],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]: ...
def score_records(
    txn_id: npt.NDArray[np.int64],
    card_id: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
    decision: npt.NDArray[np.int64],
    offset: npt.NDArray[np.int64],
    decisions: list[str],
    degraded: npt.NDArray[np.int64] | None = None,
) -> list[tuple[bytes, bytes]]: ...

@final
class FeatureEngine:
    def __new__(
        cls,
        *,
        customer_windows: list[int],
        terminal_windows: list[int],
        label_delay: int,
        countries: bool = False,
        column_names: tuple[str, str, str, str, str, str, str] | None = None,
        max_cards: int | None = None,
        card_horizon: int | None = None,
    ) -> FeatureEngine: ...
    def process(
        self,
        ids: npt.NDArray[np.int64],
        times: npt.NDArray[np.int64],
        customers: npt.NDArray[np.int64],
        terminals: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.float64],
        frauds: npt.NDArray[np.int64] | None = None,
        countries: npt.NDArray[np.int64] | None = None,
    ) -> dict[str, Any]: ...
    def add_labels(
        self,
        times: npt.NDArray[np.int64],
        terminals: npt.NDArray[np.int64],
        tx_times: npt.NDArray[np.int64],
        tx_ids: npt.NDArray[np.int64],
        frauds: npt.NDArray[np.int64],
    ) -> None: ...
    @property
    def last_event(self) -> tuple[int, int] | None: ...
    def counters(self) -> dict[str, int]: ...
    def state_size(self) -> dict[str, int]: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...

@final
class ModelScorer:
    @staticmethod
    def logistic(
        names: list[str],
        transforms: list[str],
        mean: list[float],
        scale: list[float],
        coef: list[float],
        intercept: float,
    ) -> ModelScorer: ...
    @staticmethod
    def forest(
        names: list[str],
        transforms: list[str],
        mean: list[float],
        scale: list[float],
        feature: list[int],
        threshold: list[float],
        left: list[int],
        right: list[int],
        value: list[float],
        tree_sizes: list[int],
    ) -> ModelScorer: ...
    @property
    def names(self) -> list[str]: ...
    def score_columns(
        self, columns: list[npt.NDArray[np.float64] | npt.NDArray[np.int64]]
    ) -> npt.NDArray[np.float64]: ...
    def score(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

@final
class TemporalJoin:
    def __new__(
        cls,
        *,
        columns: list[str],
        table_disorder: int = 0,
        probe_disorder: int = 0,
        inner: bool = False,
    ) -> TemporalJoin: ...
    @property
    def columns(self) -> list[str]: ...
    @property
    def table_watermark(self) -> int | None: ...
    @property
    def probe_watermark(self) -> int | None: ...
    def update(
        self,
        keys: _I64,
        times: _I64,
        values: list[_F64],
        deleted: npt.NDArray[np.bool_] | None = None,
    ) -> dict[str, np.ndarray[Any, Any]]: ...
    def process(self, keys: _I64, times: _I64, ids: _I64) -> dict[str, np.ndarray[Any, Any]]: ...
    def advance_table_to(self, watermark: int) -> dict[str, np.ndarray[Any, Any]]: ...
    def flush(self) -> dict[str, np.ndarray[Any, Any]]: ...
    def state_size(self) -> dict[str, int]: ...
    def counters(self) -> dict[str, int]: ...
    def snapshot(self) -> bytes: ...
    def track_changes(self, on: bool) -> None: ...
    def take_changes(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
    def apply_changes(self, data: bytes) -> None: ...

@final
class LookupTable:
    def __new__(cls, *, columns: list[str]) -> LookupTable: ...
    @property
    def columns(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def update(
        self, keys: _I64, values: list[_F64], deleted: npt.NDArray[np.bool_] | None = None
    ) -> None: ...
    def lookup(self, keys: _I64) -> dict[str, np.ndarray[Any, Any]]: ...
    def snapshot(self) -> bytes: ...
    def track_changes(self, on: bool) -> None: ...
    def take_changes(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
    def apply_changes(self, data: bytes) -> None: ...
