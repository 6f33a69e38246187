"""The processor contract: what turns transaction columns into outputs, on every path.

Everything between the input and the outputs is a *processor*: the window engine (through
:class:`WindowProcessor`), the rule set, the fraud detector, or a user's own composition of
them. The in-process :class:`~fraudstream.pipeline.Pipeline`, the demo, the benchmarks and the
exactly-once Kafka pipeline run any object with these methods (see ``docs/processors.md``)::

    process(columns) -> ProcessorOutput   columnar in (a mapping of equal-length arrays)
    advance(wall_clock_ms) -> ProcessorOutput   idle time: close what the clock says is over
    flush() -> ProcessorOutput            end of input: close everything
    snapshot() -> bytes                   the whole state, versioned bytes (never a pickle)
    (optional) snapshot_pieces() -> list of buffers   the same bytes in pieces, not joined
    changes() -> bytes                    what changed since the last changes() (or restore)
    restore(snapshot) / apply_changes(changes)

Invariants a processor keeps, and the Kafka pipeline relies on for exactly-once:

- Deterministic: the same calls with the same arguments give the same outputs. Outputs must
  not depend on how the input is cut into batches (a batch gives what its rows pushed one by
  one give), because a restarted instance consumes the same records in other batches.
- ``restore(s)`` then ``apply_changes(c1)``, ``apply_changes(c2)``... rebuilds exactly the state
  the processor had when it returned ``c2`` (where ``s`` is a snapshot taken before ``c1``).
- ``process`` validates the whole batch before changing state: a bad batch raises and changes
  nothing.

:class:`InputLog` gives a deterministic processor whose state has no cheap delta its changes
for free: the inputs themselves (a replay log), replayed by ``apply_changes``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fraudstream.alerts import Alert
from fraudstream.errors import SnapshotError
from fraudstream.pieces import Buffer, Pieces, crc32, join, size
from fraudstream.windows import EmitKind, WindowedAggregation, WindowOutput

Columns = dict[str, np.ndarray[Any, Any]]
IntArray = npt.NDArray[np.int64]


def _no_rows() -> IntArray:
    return np.empty(0, np.int64)


@dataclass
class ProcessorOutput:
    """What one call of a processor returns.

    - ``alerts``: the alerts kept (one per card per incident), in the order of their triggers.
    - ``scores``: per processed transaction, columns ``row`` (into the call's input), ``txn_id``,
      ``card_id``, ``score`` (float64) and ``decision`` (``DECISIONS`` index); None when the
      processor does not score.
    - ``rows``: rows a window engine emitted (a view), or None.
    - ``late_rows``: input rows too late for every window (the late side output).
    - ``dead_rows`` / ``dead_reasons``: input rows the processor refused, with their reasons.
    - ``suppressed``: candidate alerts dropped by the cool-down in this call.
    """

    alerts: list[Alert] = field(default_factory=list)
    scores: Columns | None = None
    rows: WindowOutput | None = None
    late_rows: IntArray = field(default_factory=_no_rows)
    dead_rows: IntArray = field(default_factory=_no_rows)
    dead_reasons: list[str] = field(default_factory=list)
    suppressed: int = 0

    def __len__(self) -> int:
        return len(self.alerts)


DECISIONS = ("pass", "alert", "flagged")
"""Decision codes of the ``decision`` score column: ``pass``; ``alert`` (this transaction
raised an alert); ``flagged`` (a rule or the model fired, but the card's incident was already
alerted: suppressed by the cool-down)."""
PASS, ALERT, FLAGGED = 0, 1, 2


@runtime_checkable
class Processor(Protocol):
    """The contract every processor implements (see the module docstring)."""

    def process(self, columns: Mapping[str, Any]) -> ProcessorOutput: ...

    def advance(self, wall_clock_ms: int) -> ProcessorOutput: ...

    def flush(self) -> ProcessorOutput: ...

    def snapshot(self) -> bytes: ...

    def changes(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...

    def apply_changes(self, data: bytes) -> None: ...


# ---------------------------------------------------------------------------------------------
# Versioned bytes of several parts, and of columns


_LEN = struct.Struct("<Q")
_TRAILER = struct.Struct("<4sI")
_CHECKED = b"FSPK"


def pack(parts: list[bytes]) -> bytes:
    """Length-prefixed concatenation (the state of a processor made of several), followed by
    ``b"FSPK"`` and the CRC-32 of what precedes it: a corrupt state is refused by :func:`unpack`
    before any part of it is restored. (A trailer, not a header: readers find the first part at
    offset 8.)"""
    return join(pack_pieces(parts))


def pack_pieces(parts: Sequence[Buffer | Pieces]) -> Pieces:
    """:func:`pack`'s bytes in pieces (:mod:`fraudstream.pieces`): the parts are not copied, only
    checksummed where they lie. A part given as a list is itself in pieces (a nested pack)."""
    pieces: Pieces = []
    crc = 0
    for part in parts:
        part_pieces = part if isinstance(part, list) else [part]
        head = _LEN.pack(size(part_pieces))
        crc = crc32(head, crc)
        for p in part_pieces:
            crc = crc32(p, crc)
        pieces += (head, *part_pieces)
    pieces.append(_TRAILER.pack(_CHECKED, crc))
    return pieces


def snapshot_pieces(state: Any) -> Pieces:
    """``state.snapshot()`` in pieces: its ``snapshot_pieces()`` when it has one (an optional
    method of the contract, for a state of many megabytes), else the one bytes object."""
    pieces = getattr(state, "snapshot_pieces", None)
    return list(pieces()) if callable(pieces) else [state.snapshot()]


def _concat(parts: list[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def unpack(data: bytes, count: int) -> list[bytes]:
    """Inverse of :func:`pack`; checks the checksum (bytes of :func:`pack` before it had one
    are read without) and that there are exactly ``count`` parts."""
    end = len(data)
    if end >= _TRAILER.size and data[-_TRAILER.size : -4] == _CHECKED:
        (crc,) = struct.unpack_from("<I", data, end - 4)
        end -= _TRAILER.size
        if crc32(data, 0, 0, end) != crc:
            raise SnapshotError(f"state checksum mismatch: the {len(data)} bytes are corrupt")
    parts, at = [], 0
    while at < end:
        if at + _LEN.size > end:
            raise SnapshotError(f"state is truncated: a part's length at byte {at} of {end}")
        (n,) = _LEN.unpack_from(data, at)
        if at + _LEN.size + n > end:
            raise SnapshotError("state part runs past the end of the data")
        parts.append(data[at + _LEN.size : at + _LEN.size + n])
        at += _LEN.size + n
    if len(parts) != count:
        raise SnapshotError(f"state holds {len(parts)} parts, expected {count}")
    return parts


_DTYPES = {b"i": np.dtype(np.int64), b"f": np.dtype(np.float64)}
_CODES = {v: k for k, v in _DTYPES.items()}


def encode_columns(columns: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """int64/float64 columns as bytes: count, rows, then per column name, type and data."""
    n = len(next(iter(columns.values()))) if columns else 0
    out = [struct.pack("<II", len(columns), n)]
    for name, col in columns.items():
        arr = np.ascontiguousarray(col)
        code = _CODES.get(arr.dtype)
        if code is None:
            raise TypeError(f"column {name!r}: {arr.dtype} cannot be logged (int64 or float64 only)")
        raw = name.encode()
        out.append(struct.pack("<H", len(raw)) + raw + code)
        out.append(arr.tobytes())
    return b"".join(out)


def decode_columns(data: bytes) -> Columns:
    """Inverse of :func:`encode_columns` (the arrays are copies, safe to keep)."""
    try:
        count, n = struct.unpack_from("<II", data, 0)
        at, cols = 8, {}
        for _ in range(count):
            (size,) = struct.unpack_from("<H", data, at)
            name = data[at + 2 : at + 2 + size].decode()
            dtype = _DTYPES[data[at + 2 + size : at + 3 + size]]
            at += 3 + size
            cols[name] = np.frombuffer(data, dtype, n, at).copy()
            at += 8 * n
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"malformed column record: {exc!r}") from None
    if at != len(data):
        raise SnapshotError("column record has trailing bytes")
    return cols


# ---------------------------------------------------------------------------------------------
# A replay log: changes as the inputs that caused them

_BATCH, _ADVANCE = b"B", b"A"


class InputLog:
    """The inputs of a deterministic processor since the last :meth:`take`, as change bytes.

    For state that changes a lot per input (rolling 30-day features per card), the input is
    the smallest exact delta: replaying it through the same processor from the previous state
    rebuilds the new state bit for bit. The Kafka changelog bounds replay work by writing a
    snapshot once the changes outgrow it.
    """

    def __init__(self) -> None:
        self._records: list[bytes] = []

    def batch(self, columns: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Logs a processed batch (only the columns the state depends on)."""
        self._records.append(_BATCH + encode_columns(columns))

    def advance(self, wall_clock_ms: int) -> None:
        """Logs an ``advance`` call."""
        self._records.append(_ADVANCE + struct.pack("<q", wall_clock_ms))

    def take(self) -> bytes:
        """The records since the last call, as one changes payload; clears the log."""
        data = _concat(self._records)  # a replay log: each record length-prefixed, no trailer
        self._records = []
        return data

    def clear(self) -> None:
        self._records = []

    @staticmethod
    def replay(
        data: bytes, on_batch: Callable[[Columns], object], on_advance: Callable[[int], object]
    ) -> None:
        """Calls ``on_batch``/``on_advance`` for each logged record of a changes payload."""
        at, records = 0, []
        while at < len(data):
            try:
                (n,) = _LEN.unpack_from(data, at)
            except struct.error as exc:
                raise SnapshotError(f"changes record is truncated: {exc}") from None
            records.append(data[at + _LEN.size : at + _LEN.size + n])
            at += _LEN.size + n
        if at != len(data):
            raise SnapshotError("changes payload runs past its end")
        for record in records:
            kind, body = record[:1], record[1:]
            if kind == _BATCH:
                on_batch(decode_columns(body))
            elif kind == _ADVANCE and len(body) == 8:
                on_advance(struct.unpack("<q", body)[0])
            else:
                raise SnapshotError(f"unknown changes record kind {kind!r}")


# ---------------------------------------------------------------------------------------------
# The window engine as a processor


class WindowProcessor:
    """A :class:`~fraudstream.WindowedAggregation` under the processor contract.

    Every emitted row is returned as ``rows`` (a view). With ``alert_rule`` set (a name), the
    engine's ``EARLY`` rows become alerts (its ``early_fire`` predicate is the rule), one per
    card per incident by the cool-down; the window engine keeps its own state deltas as
    changes. ``idle_lag_ms``: ``advance(now)`` moves the watermark to ``now - idle_lag_ms``.
    """

    def __init__(
        self,
        engine: WindowedAggregation,
        *,
        alert_rule: str | None = None,
        reason: str = "{rule}: {figures}",
        cooldown_ms: int = 0,
        idle_lag_ms: int | None = None,
        txn_id: str | None = None,
    ) -> None:
        from fraudstream.alerts import Cooldown

        self.engine = engine
        self.alert_rule = alert_rule
        self.reason = reason
        self.cooldown = Cooldown(cooldown_ms)
        self.idle_lag_ms = idle_lag_ms
        self.txn_id = txn_id
        self.engine.track_changes(True)

    def process(self, columns: Mapping[str, Any]) -> ProcessorOutput:
        out = self.engine.process(columns)
        alerts: list[Alert] = []
        suppressed_before = self.cooldown.suppressed
        if self.alert_rule is not None:
            early = out.select(out["kind"] == EmitKind.EARLY)
            if len(early):
                alerts = self._alerts(early, columns)
        return ProcessorOutput(
            alerts=alerts,
            rows=out,
            late_rows=out.late_rows,
            suppressed=self.cooldown.suppressed - suppressed_before,
        )

    def _alerts(self, early: WindowOutput, columns: Mapping[str, Any]) -> list[Alert]:
        times = np.asarray(columns[self.engine_time])[early.trigger_rows]
        keep = self.cooldown.decide(early["key"].astype(np.int64, copy=False), times.astype(np.int64))
        ids = np.asarray(columns[self.txn_id]) if self.txn_id is not None else None
        names = [c for c in early.columns if c not in ("key", "window_start", "window_end", "kind")]
        alerts = []
        for i in np.flatnonzero(keep).tolist():
            row = int(early.trigger_rows[i])
            figures = {n: early[n][i].item() for n in names}
            text = ", ".join(f"{n} = {_fmt(v)}" for n, v in figures.items())
            alerts.append(
                Alert(
                    card_id=int(early["key"][i]),
                    rule=str(self.alert_rule),
                    reasons=(self.reason.format(rule=self.alert_rule, figures=text, **figures),),
                    event_time=int(times[i]),
                    trigger_txn_id=int(ids[row]) if ids is not None else row,
                    trigger_row=row,
                    figures=figures,
                    window=(int(early["window_start"][i]), int(early["window_end"][i])),
                )
            )
        return alerts

    @property
    def engine_time(self) -> str:
        return self.engine.time

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        if self.idle_lag_ms is None:
            return ProcessorOutput()
        out = self.engine.advance_to(wall_clock_ms - self.idle_lag_ms)
        return ProcessorOutput(rows=out)

    def flush(self) -> ProcessorOutput:
        return ProcessorOutput(rows=self.engine.flush())

    def snapshot(self) -> bytes:
        return pack([self.engine.snapshot(), self.cooldown.snapshot()])

    def changes(self) -> bytes:
        # the cool-down is small (cards alerted within two periods): it travels whole
        return pack([self.engine.changes(), self.cooldown.snapshot()])

    def restore(self, data: bytes) -> None:
        engine, cooldown = unpack(data, 2)
        self.engine.restore(engine)
        self.cooldown.restore(cooldown)
        self.engine.track_changes(True)

    def apply_changes(self, data: bytes) -> None:
        engine, cooldown = unpack(data, 2)
        self.engine.apply_changes(engine)
        self.cooldown.restore(cooldown)


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


__all__ = [
    "ALERT",
    "DECISIONS",
    "FLAGGED",
    "PASS",
    "InputLog",
    "Processor",
    "ProcessorOutput",
    "WindowProcessor",
    "decode_columns",
    "encode_columns",
    "pack",
    "unpack",
]
