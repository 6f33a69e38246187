"""Stream-table joins as processors: the event-time temporal join and the lookup join.

:class:`TemporalJoinProcessor` joins each transaction to the version of a table row valid at
the transaction's event time (Flink's ``JOIN ... FOR SYSTEM_TIME AS OF t.event_time``), in the
Rust core (``fraudstream._core.TemporalJoin``). :class:`LookupJoinProcessor` joins each
transaction to the table's latest value when it arrives (a processing-time lookup, no waiting).
Both implement the processor contract (``docs/processors.md``); table rows come in through
:meth:`~TemporalJoinProcessor.update_table`. The exact semantics are in ``docs/semantics.md``
("Temporal join").

Table values are float64 columns (integer attributes such as ``account_age_days`` or a country
code are stored as float64, exact up to 2**53). The joined rows come out in
:attr:`JoinOutput.joined`: ``key``, ``time``, ``id`` (the probe's id column, e.g. ``txn_id``),
``matched`` (the validity mask: False means the table held no version, values are NaN),
``version_time`` (of the matched version, ``INT64_MIN`` when unmatched) and one column per
table column. Invariants: deterministic whatever the batching on either side; a bad batch
raises and changes nothing; ``changes()`` are the core's state deltas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudstream import _core
from fraudstream.processor import Columns, ProcessorOutput


def _no_columns() -> Columns:
    return {}


@dataclass
class JoinOutput(ProcessorOutput):
    """A :class:`~fraudstream.processor.ProcessorOutput` whose ``joined`` holds the enriched
    rows (see the module docstring); ``late_rows`` are the call's late input rows (late probes
    for ``process``, late table updates for ``update_table``)."""

    joined: Columns = field(default_factory=_no_columns)


_INT64_MAX = np.iinfo(np.int64).max


def _int(columns: Mapping[str, Any], name: str) -> np.ndarray[Any, Any]:
    """An integer column as contiguous int64; floats, bools and strings are refused, not cast."""
    if name not in columns:
        raise KeyError(f"missing column {name!r}")
    arr = np.asarray(columns[name])
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and arr.size == 0):
        raise TypeError(f"column {name!r} must hold integers, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"column {name!r} holds a value beyond the int64 range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _floats(columns: Mapping[str, Any], names: Sequence[str]) -> list[np.ndarray[Any, Any]]:
    missing = [n for n in names if n not in columns]
    if missing:
        raise KeyError(f"missing table column(s) {', '.join(map(repr, missing))}")
    return [np.ascontiguousarray(columns[n], dtype=np.float64) for n in names]


def _output(raw: dict[str, Any]) -> JoinOutput:
    late = raw.pop("late_rows").astype(np.int64)
    return JoinOutput(joined=raw, late_rows=late)


class _JoinState:
    """The processor contract's state methods over a join's Rust state (``self.core``): both
    joins keep their keyed state as snapshot and change bytes the same way."""

    core: _core.TemporalJoin | _core.LookupTable

    def snapshot(self) -> bytes:
        return self.core.snapshot()

    def changes(self) -> bytes:
        return self.core.take_changes()

    def restore(self, data: bytes) -> None:
        self.core.restore(data)

    def apply_changes(self, data: bytes) -> None:
        self.core.apply_changes(data)


class TemporalJoinProcessor(_JoinState):
    """The event-time temporal join of a transaction stream with a versioned table.

    - ``columns``: the table's value columns (float64).
    - ``key`` / ``time`` / ``id``: the probe (transaction) columns joined on, timed by, carried.
    - ``table_key`` / ``table_time`` / ``table_deleted``: the columns of :meth:`update_table`
      (``table_deleted``, a bool column, is optional in each batch: absent means upserts).
    - ``table_disorder_ms`` / ``probe_disorder_ms``: bounded out-of-orderness of each side.
    - ``inner``: drop unmatched probes (default: a left join, unmatched rows with nulls).
    - ``table_idle_lag_ms``: ``advance(now)`` raises the table watermark to ``now - lag`` so a
      quiet table does not hold probes forever (None: probes wait for table updates or flush).
    """

    def __init__(
        self,
        columns: Sequence[str],
        *,
        key: str = "card_id",
        time: str = "event_time",
        id: str = "txn_id",
        table_key: str = "key",
        table_time: str = "time",
        table_deleted: str = "deleted",
        table_disorder_ms: int = 0,
        probe_disorder_ms: int = 0,
        inner: bool = False,
        table_idle_lag_ms: int | None = None,
    ) -> None:
        self.core: _core.TemporalJoin = _core.TemporalJoin(
            columns=list(columns),
            table_disorder=table_disorder_ms,
            probe_disorder=probe_disorder_ms,
            inner=inner,
        )
        self.columns = list(columns)
        self.key, self.time, self.id = key, time, id
        self.table_key, self.table_time, self.table_deleted = table_key, table_time, table_deleted
        self.table_idle_lag_ms = table_idle_lag_ms
        self.core.track_changes(True)

    def process(self, columns: Mapping[str, Any]) -> JoinOutput:
        """Joins a batch of probe rows; returns the rows whose time the table watermark passed."""
        keys, times, ids = _int(columns, self.key), _int(columns, self.time), _int(columns, self.id)
        return _output(self.core.process(keys, times, ids))

    def update_table(self, columns: Mapping[str, Any]) -> JoinOutput:
        """Applies table updates (key, version time, value columns, optional deleted flags);
        returns the waiting probe rows the advanced table watermark releases."""
        keys, times = _int(columns, self.table_key), _int(columns, self.table_time)
        values = _floats(columns, self.columns)
        deleted = columns.get(self.table_deleted)
        flags = None if deleted is None else np.ascontiguousarray(deleted, dtype=np.bool_)
        return _output(self.core.update(keys, times, values, flags))

    def advance(self, wall_clock_ms: int) -> JoinOutput:
        if self.table_idle_lag_ms is None:
            return JoinOutput()
        return _output(self.core.advance_table_to(wall_clock_ms - self.table_idle_lag_ms))

    def flush(self) -> JoinOutput:
        """End of input: every waiting probe row is joined and emitted."""
        return _output(self.core.flush())

    @property
    def watermark(self) -> int | None:
        """The probe side's watermark (event-time ms), for the pipeline's gauge."""
        return self.core.probe_watermark

    @property
    def table_watermark(self) -> int | None:
        return self.core.table_watermark

    def state_size(self) -> dict[str, int]:
        size = self.core.state_size()
        per_version = 40 + 8 * len(self.columns)  # time, boxed values, vector slot
        estimate = size["versions"] * per_version + size["waiting"] * 48 + size["keys"] * 32
        return {"keys": size["keys"], "windows": size["versions"], "bytes": estimate, **size}

    def counters(self) -> dict[str, int]:
        return self.core.counters()


class LookupJoinProcessor(_JoinState):
    """The processing-time lookup join: each probe row takes the table's latest value (by
    arrival of the updates) at the moment its batch is processed; nothing waits.

    Columns as for :class:`TemporalJoinProcessor` (there is no table time: arrival order
    decides). ``joined`` holds ``key``, ``time``, ``id``, ``matched`` and the table columns,
    one row per probe row in input order (an inner join keeps the matched ones).
    """

    def __init__(
        self,
        columns: Sequence[str],
        *,
        key: str = "card_id",
        time: str = "event_time",
        id: str = "txn_id",
        table_key: str = "key",
        table_deleted: str = "deleted",
        inner: bool = False,
    ) -> None:
        self.core: _core.LookupTable = _core.LookupTable(columns=list(columns))
        self.columns = list(columns)
        self.key, self.time, self.id = key, time, id
        self.table_key, self.table_deleted = table_key, table_deleted
        self.inner = inner
        self.core.track_changes(True)

    def process(self, columns: Mapping[str, Any]) -> JoinOutput:
        keys, times, ids = _int(columns, self.key), _int(columns, self.time), _int(columns, self.id)
        if not len(keys) == len(times) == len(ids):
            raise ValueError(f"columns {self.key!r}, {self.time!r}, {self.id!r} differ in length")
        found = self.core.lookup(keys)
        joined: Columns = {"key": keys, "time": times, "id": ids, **found}
        if self.inner:
            mask = found["matched"]
            joined = {k: v[mask] for k, v in joined.items()}
        return JoinOutput(joined=joined)

    def update_table(self, columns: Mapping[str, Any]) -> JoinOutput:
        keys = _int(columns, self.table_key)
        deleted = columns.get(self.table_deleted)
        flags = None if deleted is None else np.ascontiguousarray(deleted, dtype=np.bool_)
        self.core.update(keys, _floats(columns, self.columns), flags)
        return JoinOutput()

    def advance(self, wall_clock_ms: int) -> JoinOutput:
        return JoinOutput()

    def flush(self) -> JoinOutput:
        return JoinOutput()

    def state_size(self) -> dict[str, int]:
        keys = len(self.core)
        return {"keys": keys, "windows": 0, "bytes": keys * (32 + 8 * len(self.columns))}


__all__ = ["JoinOutput", "LookupJoinProcessor", "TemporalJoinProcessor"]
