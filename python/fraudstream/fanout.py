"""Several processors over the same input, as one processor: :class:`Fanout`.

A pipeline runs one processor per input partition; to run more than one thing (the fraud
detector and a materialized view, say) it runs a Fanout of them. Every child gets every batch,
``advance`` and ``flush``, in order, and their outputs merge into one
:class:`~fraudstream.processor.ProcessorOutput`, so the Kafka pipeline publishes the alerts,
the scores and the view rows of one interval in one transaction.

How the outputs merge:

- ``alerts``: every child's, in the order of their trigger rows (ties: child order);
  ``suppressed`` adds up.
- ``scores``: the first child's that scores (one record per transaction).
- ``rows``: those of the child ``rows_from`` (default: the first child that returns rows).
- ``late_rows``: the rows *every* child found too late. A row one child took is processed: it
  is not a dead letter, and a child that dropped it as late counts it in its own engine's
  ``late`` counter (:meth:`Fanout.counters` adds the children's counters up).
- ``dead_rows``: every row any child refused, with the first child's reason.

State: the children's snapshots (and changes) as the parts of one
:func:`~fraudstream.processor.pack`, checked as a whole before any child restores. The contract
holds when every child keeps it, except one point: a batch that one child refuses by raising
leaves the children before it advanced (the Kafka pipeline rewinds the whole state to its last
commit on any failure, so it does not depend on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fraudstream.pieces import Pieces, join
from fraudstream.processor import Processor, ProcessorOutput, pack, pack_pieces, snapshot_pieces, unpack


class Fanout:
    """Runs ``processors`` side by side over the same input (see the module docstring).

    Args:
        processors: the children, in the order they are called.
        rows_from: the index of the child whose ``rows`` are the Fanout's (a view); None: the
            first child whose output has rows.
    """

    def __init__(self, *processors: Processor, rows_from: int | None = None) -> None:
        if not processors:
            raise ValueError("Fanout needs at least one processor")
        if rows_from is not None and not 0 <= rows_from < len(processors):
            raise ValueError(
                f"rows_from = {rows_from} is not the index of one of {len(processors)} processors"
            )
        self.processors = list(processors)
        self.rows_from = rows_from

    # -- processing ---------------------------------------------------------------------------

    def process(self, columns: Mapping[str, Any]) -> ProcessorOutput:
        return self._merge([p.process(columns) for p in self.processors])

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        return self._merge([p.advance(wall_clock_ms) for p in self.processors])

    def flush(self) -> ProcessorOutput:
        return self._merge([p.flush() for p in self.processors])

    def _merge(self, outs: list[ProcessorOutput]) -> ProcessorOutput:
        alerts = [a for out in outs for a in out.alerts]
        alerts.sort(key=lambda a: a.trigger_row)  # stable: ties stay in child order
        scores = next((o.scores for o in outs if o.scores is not None), None)
        if self.rows_from is not None:
            rows = outs[self.rows_from].rows
        else:
            rows = next((o.rows for o in outs if o.rows is not None), None)
        late = outs[0].late_rows
        for out in outs[1:]:
            late = np.intersect1d(late, out.late_rows)
        reasons: dict[int, str] = {}
        for out in outs:
            for row, reason in zip(out.dead_rows.tolist(), out.dead_reasons, strict=True):
                reasons.setdefault(int(row), reason)
        dead = sorted(reasons)
        return ProcessorOutput(
            alerts=alerts,
            scores=scores,
            rows=rows,
            late_rows=np.setdiff1d(late, np.asarray(dead, np.int64)).astype(np.int64),
            dead_rows=np.asarray(dead, np.int64),
            dead_reasons=[reasons[r] for r in dead],
            suppressed=sum(o.suppressed for o in outs),
        )

    def counters(self) -> dict[str, int]:
        """The children's counters added up by name (``late``, ``evicted``...): a child is
        asked through its ``counters()``, or its window ``engine``'s."""
        total: dict[str, int] = {}
        for p in self.processors:
            counters = getattr(p, "counters", None)
            if not callable(counters):
                counters = getattr(getattr(p, "engine", None), "counters", None)
            if callable(counters):
                for name, value in counters().items():
                    total[name] = total.get(name, 0) + int(value)
        return total

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return join(self.snapshot_pieces())

    def snapshot_pieces(self) -> Pieces:
        return pack_pieces([snapshot_pieces(p) for p in self.processors])

    def changes(self) -> bytes:
        return pack([p.changes() for p in self.processors])

    def restore(self, data: bytes) -> None:
        for p, part in zip(self.processors, unpack(data, len(self.processors)), strict=True):
            p.restore(part)

    def apply_changes(self, data: bytes) -> None:
        for p, part in zip(self.processors, unpack(data, len(self.processors)), strict=True):
            p.apply_changes(part)


__all__ = ["Fanout"]
