"""Enrich then process: a processor that adds columns to each batch before another one.

Reference data reaches the detector this way, whatever holds it: a table read from Kafka
(:class:`~fraudstream.fraud.profiles.ProfileEnrichment`) or an online feature store
(:class:`~fraudstream.store.StoreEnrichment`). A subclass implements :meth:`Enrichment.enrich`:
the feature columns for a batch, and per-row flag columns (such as ``degraded``) that the
scores output carries beside each transaction's score. Everything else of the processor
contract is the inner processor's.

Invariants: an enrichment keeps no state of its own (snapshot, changes and restore are the
inner processor's); the inner processor must log the added columns it reads in its changes
(the detector's replay log carries its ``extra_features``), so a restore rebuilds exactly what
the scores were computed from even when the source has changed since. A batch missing a
column the enrichment needs raises before the inner processor sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudstream.processor import Columns, Processor, ProcessorOutput


def _no_columns() -> Columns:
    return {}


@dataclass
class Enriched:
    """What :meth:`Enrichment.enrich` returns for a batch of ``n`` rows: ``features``, columns
    of ``n`` values added to the batch; ``flags``, columns of ``n`` values added to the scores
    (indexed by the scores' ``row``)."""

    features: Columns
    flags: Columns = field(default_factory=_no_columns)


class Enrichment:
    """Base of the enrichment processors (see the module docstring).

    Args:
        inner: the processor that reads the added columns (the detector).
    """

    def __init__(self, inner: Processor) -> None:
        self.inner = inner

    def enrich(self, columns: Mapping[str, Any]) -> Enriched:
        """The columns to add to this batch (subclasses)."""
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """The inner processor's counters and the enrichment's own (subclasses extend)."""
        inner = getattr(self.inner, "counters", None)
        return dict(inner()) if callable(inner) else {}

    # -- the processor contract -----------------------------------------------------------

    def process(self, columns: Mapping[str, Any]) -> ProcessorOutput:
        added = self.enrich(columns)
        out = self.inner.process({**columns, **added.features})
        if added.flags and out.scores is not None:
            rows = out.scores["row"]
            for name, flag in added.flags.items():
                out.scores[name] = np.asarray(flag)[rows]
        return out

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        return self.inner.advance(wall_clock_ms)

    def flush(self) -> ProcessorOutput:
        return self.inner.flush()

    def snapshot(self) -> bytes:
        return self.inner.snapshot()

    def changes(self) -> bytes:
        return self.inner.changes()

    def restore(self, data: bytes) -> None:
        self.inner.restore(data)

    def apply_changes(self, data: bytes) -> None:
        self.inner.apply_changes(data)

    @property
    def watermark(self) -> int | None:
        wm = getattr(self.inner, "watermark", None)
        return None if wm is None else int(wm)

    def state_size(self) -> dict[str, int]:
        size = getattr(self.inner, "state_size", None)
        return dict(size()) if callable(size) else {"keys": 0, "windows": 0, "bytes": 0}

    def metrics(self) -> dict[str, Any]:
        inner = getattr(self.inner, "metrics", None)
        return {**(dict(inner()) if callable(inner) else {}), **self.counters()}


__all__ = ["Enriched", "Enrichment"]
