"""What one input partition owns: its alert engine and, optionally, its duplicate detector.

Both are :class:`~fraudstream.WindowedAggregation` engines, so their state goes to the changelog
the same way: a partition's snapshot (or changes) is the length-prefixed concatenation of its
engines' snapshots (or changes).

Duplicates: a transaction id seen again within ``dedup_horizon`` of event time is a duplicate.
The detector is a session window per transaction id (gap = the horizon) that emits on every
update, so the row of each event after the first one in a session names a duplicate; the state
lives only as long as the horizon (plus the watermark delay).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from fraudstream.errors import SnapshotError
from fraudstream.windows import EmitKind, WindowedAggregation, session, to_millis

_LEN = struct.Struct("<Q")


def pack(parts: list[bytes]) -> bytes:
    """Length-prefixed concatenation."""
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def unpack(data: bytes, count: int) -> list[bytes]:
    """Inverse of :func:`pack`; checks there are ``count`` parts."""
    parts, at = [], 0
    while at < len(data):
        (n,) = _LEN.unpack_from(data, at)
        parts.append(data[at + _LEN.size : at + _LEN.size + n])
        at += _LEN.size + n
    if len(parts) != count or at != len(data):
        raise SnapshotError(f"partition state holds {len(parts)} engines, expected {count}")
    return parts


def make_dedup_engine(horizon: str, out_of_orderness: str) -> WindowedAggregation:
    """Per transaction id, a session of gap ``horizon`` counting its occurrences."""
    return WindowedAggregation(
        key="txn_id",
        time="event_time",
        window=session(to_millis(horizon, "dedup_horizon")),
        aggregations={"n": "count"},
        out_of_orderness=out_of_orderness,
        early_fire="on_update",
    )


class PartitionState:
    """The engines of one input partition."""

    def __init__(self, rule: WindowedAggregation, dedup: WindowedAggregation | None = None) -> None:
        self.rule, self.dedup = rule, dedup
        self.engines = [rule] if dedup is None else [rule, dedup]

    def track_changes(self) -> None:
        for e in self.engines:
            e.track_changes(True)

    def snapshot(self) -> bytes:
        return pack([e.snapshot() for e in self.engines])

    def changes(self) -> bytes:
        return pack([e.changes() for e in self.engines])

    def restore(self, snapshot: bytes, changes: list[bytes]) -> None:
        """Rebuilds every engine from a partition snapshot and the changes after it."""
        n = len(self.engines)
        for engine, part in zip(self.engines, unpack(snapshot, n), strict=True):
            engine.restore(part)
        for c in changes:
            for engine, part in zip(self.engines, unpack(c, n), strict=True):
                engine.apply_changes(part)
        self.track_changes()  # from the restored state on

    def state_bytes(self) -> int:
        return sum(e.state_size()["bytes"] for e in self.engines)

    def duplicates(self, columns: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """Rows of ``columns`` whose transaction id was already seen within the horizon."""
        if self.dedup is None or not len(columns["txn_id"]):
            return np.empty(0, np.int64)
        out = self.dedup.process({"txn_id": columns["txn_id"], "event_time": columns["event_time"]})
        again = (out["kind"] == EmitKind.EARLY) & (out["n"] >= 2)
        return np.unique(out.trigger_rows[again])
