"""Keyed event-time window aggregation: the Python face of the Rust engine.

>>> import numpy as np
>>> from fraudstream import WindowedAggregation, hopping
>>> agg = WindowedAggregation(
...     key="card", time="ts", window=hopping("5m", "1m"),
...     aggregations={"n": "count", "total": ("sum", "amount")},
...     out_of_orderness="5s",
... )
>>> out = agg.process({"card": np.array([1, 1]), "ts": np.array([0, 1_000]),
...                    "amount": np.array([10.0, 5.0])})
>>> len(out), len(agg.flush())
(0, 5)

Semantics are Flink's (``docs/semantics.md``): half-open windows aligned to the epoch, a
bounded-out-of-orderness watermark that advances after every event, emit-final at
``watermark >= end - 1``, allowed lateness with update rows, a late side output, and optional
early firing on every update or when a predicate first holds.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from fraudstream import _core
from fraudstream._columns import get_column, int_column, value_column
from fraudstream.errors import ConfigError, FlushedError
from fraudstream.pieces import Pieces

Duration: TypeAlias = int | str | timedelta
"""Milliseconds as an int, a ``timedelta``, or a string such as ``"250ms"``, ``"5s"``,
``"5m"``, ``"1h"``, ``"7d"`` (units may be combined: ``"1h30m"``)."""

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def to_millis(value: Duration, name: str = "duration") -> int:
    """Converts a :data:`Duration` to integer milliseconds.

    >>> to_millis("1h30m"), to_millis(timedelta(seconds=5)), to_millis(250)
    (5400000, 5000, 250)
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a duration, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int(value / timedelta(milliseconds=1))
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return round(sum(float(n) * _UNITS_MS[u] for n, u in parts))
    raise ConfigError(f"{name} must be milliseconds (int), a timedelta or a string like '5m', got {value!r}")


@dataclass(frozen=True)
class Tumbling:
    """Fixed, non-overlapping windows of ``size`` ms, shifted by ``offset``."""

    size: int
    offset: int = 0


@dataclass(frozen=True)
class Hopping:
    """Windows of ``size`` ms starting every ``slide`` ms (Flink's HOP)."""

    size: int
    slide: int
    offset: int = 0


@dataclass(frozen=True)
class Session:
    """Per-key activity sessions, closed by ``gap`` ms without events."""

    gap: int


Window: TypeAlias = Tumbling | Hopping | Session


def tumbling(size: Duration, offset: Duration = 0) -> Tumbling:
    """Tumbling windows, e.g. ``tumbling("1h")``."""
    return Tumbling(to_millis(size, "size"), to_millis(offset, "offset"))


def hopping(size: Duration, slide: Duration, offset: Duration = 0) -> Hopping:
    """Hopping (sliding) windows, e.g. ``hopping("5m", "1m")``."""
    return Hopping(to_millis(size, "size"), to_millis(slide, "slide"), to_millis(offset, "offset"))


def session(gap: Duration) -> Session:
    """Session windows, e.g. ``session("30m")``."""
    return Session(to_millis(gap, "gap"))


class EmitKind(IntEnum):
    """Why a row was emitted (the ``kind`` column)."""

    FINAL = 0
    """The watermark closed the window."""
    UPDATE = 1
    """Late data changed a window that was already emitted."""
    EARLY = 2
    """Early firing: the window is still open."""


AggregationSpec: TypeAlias = str | tuple[str, str]
"""``"count"`` or ``(function, column)``, e.g. ``("count_distinct", "country")``."""


@dataclass
class WindowOutput:
    """Rows emitted by one call, as columns, and the input rows that were too late.

    ``columns`` holds ``key``, ``window_start``, ``window_end``, ``kind`` (see
    :class:`EmitKind`) and one array per aggregation. ``late_rows`` are row numbers into the
    input of the call (the late side output); select them with ``column[out.late_rows]``.
    """

    columns: dict[str, np.ndarray[Any, Any]]
    late_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    trigger_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    """For each emitted row, the input row of the call whose processing emitted it (-1 when
    ``advance_to``, ``tick`` or ``flush`` did): the event that made an alert visible."""

    def __len__(self) -> int:
        return len(self.columns["key"])

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        return self.columns[name]

    def rows(self) -> Iterator[dict[str, Any]]:
        """The rows as dicts of Python scalars (convenient for small outputs and tests)."""
        names = list(self.columns)
        for values in zip(*(self.columns[n].tolist() for n in names), strict=True):
            yield dict(zip(names, values, strict=True))

    def select(self, mask: npt.NDArray[np.bool_]) -> WindowOutput:
        """The rows where ``mask`` holds (late rows unchanged)."""
        return WindowOutput(
            {k: v[mask] for k, v in self.columns.items()}, self.late_rows, self.trigger_rows[mask]
        )

    def to_arrow(self) -> Any:
        """The rows as a ``pyarrow.RecordBatch`` (needs the ``arrow`` extra)."""
        import pyarrow as pa

        return pa.RecordBatch.from_pydict(dict(self.columns))


def _wrap(
    raw: tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> WindowOutput:
    columns, late, triggers = raw
    # u64::MAX (no input row) reads as -1 in int64
    return WindowOutput(columns, late.astype(np.int64, copy=False), triggers.view(np.int64))


class WindowedAggregation:
    """Keyed event-time window aggregation, computed by the Rust core.

    Args:
        key: name of the int64 key column (e.g. a card id).
        time: name of the event-time column, int64 ms since the epoch (datetime64 accepted).
        window: :func:`tumbling`, :func:`hopping` or :func:`session`.
        aggregations: output name -> ``"count"`` or ``(function, column)``; functions are
            count, sum, min, max, mean, count_distinct, first, last.
        out_of_orderness: watermark delay: ``watermark = max event time - out_of_orderness``.
        allowed_lateness: how long after firing a window still takes late events (re-emitted
            as ``UPDATE`` rows). Events later than that are returned as ``late_rows``.
        early_fire: ``None``; ``"on_update"`` to emit open windows on every change; or a
            predicate over the aggregations such as ``"distinct(country) >= 3 and count >= 5"``
            to emit an open window once, the moment it first holds (for alerts).
        partition: optional name of a partition column (ints in ``[0, partitions)``); each
            partition has its own watermark and the combined one is their minimum.
        partitions: number of partitions.
        idle_timeout: processing time after which a silent partition stops holding the
            watermark back (checked on every call with the monotonic clock, or ``now_ms``).
        final_rows: ``False`` for a caller that reads only ``EARLY`` rows (alerting rules):
            windows still close and free their state, and late data still updates them,
            exactly as with ``True``, but their ``FINAL`` and ``UPDATE`` rows are not built
            (closing a window costs its cleanup, not a row per key). Early rows, late rows,
            :meth:`counters` (a row not built counts as emitted) and the state bytes are the
            same either way: the option is not state, so a snapshot or changes restore into
            an aggregation that differs only in it.
        max_keys: at most this many live keys (keys with open windows), for every window
            type. A new key beyond it evicts the key whose latest event is the oldest: the
            one whose newest pane (tumbling/hopping, panes of ``gcd(size, slide)``) starts
            first or whose latest session ends first; ties: the smaller key. The evicted
            key's open windows are dropped without a row and counted in :meth:`counters`
            (``evicted``); a later event of it starts afresh, exactly as a key never seen.
            The order depends on the state alone, so a restored aggregation evicts the same
            keys. Bounds the state whatever the input (one B-tree update when a key's newest
            pane changes); ``None``: unbounded.
    """

    def __init__(
        self,
        *,
        key: str,
        time: str,
        window: Window,
        aggregations: Mapping[str, AggregationSpec],
        out_of_orderness: Duration = 0,
        allowed_lateness: Duration = 0,
        early_fire: str | None = None,
        partition: str | None = None,
        partitions: int = 1,
        idle_timeout: Duration | None = None,
        final_rows: bool = True,
        max_keys: int | None = None,
    ) -> None:
        specs: list[tuple[str, str, str | None]] = []
        for name, spec in aggregations.items():
            if isinstance(spec, str):
                specs.append((name, spec, None))
            elif isinstance(spec, tuple) and len(spec) == 2:
                specs.append((name, spec[0], spec[1]))
            else:
                raise ConfigError(f"aggregation {name!r} must be 'count' or (function, column), got {spec!r}")
        kwargs: dict[str, Any] = {}
        if isinstance(window, Tumbling):
            kwargs = {"window": "tumbling", "size": window.size, "offset": window.offset}
        elif isinstance(window, Hopping):
            kwargs = {
                "window": "hopping",
                "size": window.size,
                "slide": window.slide,
                "offset": window.offset,
            }
        elif isinstance(window, Session):
            kwargs = {"window": "session", "gap": window.gap}
        else:
            raise ConfigError(f"window must be tumbling(), hopping() or session(), got {window!r}")
        self.key, self.time, self.partition = key, time, partition
        self.window = window
        self._idle = idle_timeout is not None
        self._engine = _core.WindowEngine(
            aggregations=specs,
            key_column=key,
            time_column=time,
            out_of_orderness=to_millis(out_of_orderness, "out_of_orderness"),
            allowed_lateness=to_millis(allowed_lateness, "allowed_lateness"),
            early=early_fire,
            partitions=partitions,
            idle_timeout=None if idle_timeout is None else to_millis(idle_timeout, "idle_timeout"),
            final_rows=bool(final_rows),
            max_keys=max_keys,
            **kwargs,
        )
        self.value_columns: list[str] = list(self._engine.value_columns)
        self._flushed = False

    def _now(self, now_ms: int | None) -> int | None:
        if now_ms is not None or not self._idle:
            return now_ms
        return _time.monotonic_ns() // 1_000_000

    def process(
        self,
        columns: Mapping[str, Any] | Any,
        *,
        now_ms: int | None = None,
        drop: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None,
    ) -> WindowOutput:
        """Processes a batch given as a mapping of columns, a pyarrow RecordBatch/Table or a
        pandas DataFrame. The batch is validated whole first: bad input raises
        :class:`~fraudstream.errors.InvalidBatchError` (or ``TypeError`` for a wrong dtype)
        naming the column and first bad row, and leaves the state unchanged.

        ``drop=(rows, keys)``: the state of ``keys[i]`` is dropped without a row before row
        ``rows[i]`` (rows ascending), its later events starting afresh: a cap that the caller
        keeps over several pieces of state (the fraud detector's ``max_cards``). Not counted
        in ``evicted`` (the caller counts its own).
        """
        if self._flushed:
            raise FlushedError(
                "process() after flush(): the input has ended and every window is closed; build a "
                "new aggregation, or restore() a snapshot, to process more"
            )
        keys = int_column(get_column(columns, self.key), self.key)
        times = int_column(get_column(columns, self.time), self.time)
        values = [value_column(get_column(columns, c), c) for c in self.value_columns]
        parts = None
        if self.partition is not None:
            parts = int_column(get_column(columns, self.partition), self.partition)
        if drop is None:
            return _wrap(self._engine.process(keys, times, values, parts, self._now(now_ms)))
        rows, dropped = (np.ascontiguousarray(d, dtype=np.int64) for d in drop)
        return _wrap(self._engine.process(keys, times, values, parts, self._now(now_ms), rows, dropped))

    def push(
        self, key: int, time: int, *, partition: int = 0, now_ms: int | None = None, **values: float
    ) -> WindowOutput:
        """Processes one event (convenience; :meth:`process` is the fast path)."""
        columns: dict[str, Any] = {self.key: [key], self.time: [time]}
        for name in self.value_columns:
            if name not in values:
                raise ConfigError(f"push() needs a value for column {name!r}")
            columns[name] = [values[name]]
        if self.partition is not None:
            columns[self.partition] = [partition]
        return self.process(columns, now_ms=now_ms)

    def advance_to(self, time: int) -> WindowOutput:
        """Raises the watermark to at least ``time`` (e.g. wall clock when traffic stops)."""
        return _wrap(self._engine.advance_to(int(time)))

    def tick(self, now_ms: int | None = None) -> WindowOutput:
        """Checks partition idleness at processing time ``now_ms`` (default: monotonic clock)."""
        now = self._now(now_ms)
        return _wrap(self._engine.tick(now if now is not None else 0))

    def flush(self) -> WindowOutput:
        """End of input: the watermark jumps to +infinity and every window fires. Later calls of
        :meth:`process` raise :class:`~fraudstream.errors.FlushedError`."""
        self._flushed = True
        return _wrap(self._engine.flush())

    @property
    def watermark(self) -> int | None:
        """The current watermark (ms), or None before the first event."""
        return self._engine.watermark

    @property
    def idle_partitions(self) -> list[int]:
        """Partitions currently treated as idle."""
        return list(self._engine.idle_partitions)

    def state_size(self) -> dict[str, int]:
        """Keys with open windows, open panes/sessions, timers, approximate bytes."""
        return dict(self._engine.state_size())

    def counters(self) -> dict[str, int]:
        """Events accepted, late events and rows emitted since creation (with
        ``final_rows=False``, the final and update rows not built count as emitted), and keys
        evicted by ``max_keys`` (all four are state: a restore brings them back)."""
        return dict(self._engine.counters())

    def snapshot(self) -> bytes:
        """The whole state as versioned bytes (for checkpoints and changelogs)."""
        return bytes(self._engine.snapshot())

    def snapshot_pieces(self) -> Pieces:
        """:meth:`snapshot`'s bytes as the core wrote them (a uint8 array), not copied."""
        return [self._engine.snapshot_array()]

    def restore(self, data: bytes) -> None:
        """Replaces the state with a snapshot from an aggregation of the same configuration
        (corrupt bytes raise :class:`~fraudstream.errors.SnapshotError` and change nothing)."""
        self._engine.restore(data)
        self._flushed = False

    def track_changes(self, on: bool = True) -> None:
        """Starts recording which keys change, for :meth:`changes` (changelogs)."""
        self._engine.track_changes(on)

    def changes(self) -> bytes:
        """The state changes since the previous call (only the keys that changed), as versioned
        bytes. A snapshot followed by its changes, applied in order, rebuilds the state exactly."""
        return bytes(self._engine.take_changes())

    def apply_changes(self, data: bytes) -> None:
        """Applies :meth:`changes` bytes of an aggregation of the same configuration."""
        self._engine.apply_changes(data)
