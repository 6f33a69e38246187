"""Where an alert's event-to-committed-alert latency goes: the pipeline run with a trace.

``python benches/kafka_trace.py OUT.json`` runs what ``fraudstream run --idle-exit 8`` runs
(configuration from the ``FRAUDSTREAM_*`` environment), timing each processed batch, each
commit and each full (generation 2) garbage collection by the wall clock, and writes them to
``OUT.json``. :func:`decompose` then splits each alert's latency, measured by the reader of
``benches/kafka_e2e.py``, into:

- ``delivery``: sent by the load producer -> the pipeline's consume call returned it (producer
  linger, broker, fetch, the consume call's own wait);
- ``process``: -> the batch that holds it processed (decode, detector, outputs sent);
- ``to_commit``: -> the commit of its transaction begins (the rest of the interval: the cadence
  and the other batches processed meanwhile);
- ``commit``: the commit's duration (changelog records, offsets, the commit round trips; with
  overlapped commits the loop processes the next records meanwhile);
- ``visible``: commit done -> the reader of the alerts topic has it.

The trace only wraps ``_process`` and ``_committed`` of :class:`KafkaPipeline` (a commit's
beginning and the moment it landed, also when it ran on the commit thread); what runs is the
pipeline unchanged.
"""

from __future__ import annotations

import bisect
import gc
import json
import sys
import time
from typing import Any

import numpy as np

from fraudstream.config import load_config
from fraudstream.kafka.pipeline import KafkaPipeline

SEGMENTS = ("delivery", "process", "to_commit", "commit", "visible")


class TracedPipeline(KafkaPipeline):
    """The pipeline, with the wall-clock times of its batches, commits and full collections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[float, float, dict[int, int]]] = []
        """Per processed batch: consume returned, processed, positions after it."""
        self.commits: list[tuple[float, float]] = []
        self.gcs: list[tuple[float, float, int]] = []
        self._gc_began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.time()
        elif info["generation"] == 2:
            self.gcs.append((self._gc_began, time.time(), info["collected"]))

    def _process(self, msgs: list[Any]) -> None:
        began = time.time()
        super()._process(msgs)
        self.batches.append((began, time.time(), dict(self.tasks.positions)))

    def _committed(self, began: float, landed: float, counts: dict[str, int]) -> None:
        # (a commit lands on the commit thread when overlapped: its own times, not this call's)
        to_wall = time.time() - time.monotonic()
        self.commits.append((began + to_wall, landed + to_wall))
        super()._committed(began, landed, counts)

    def trace(self) -> dict[str, Any]:
        return {
            "batches": [(a, b, {str(p): o for p, o in pos.items()}) for a, b, pos in self.batches],
            "commits": self.commits,
            "gcs": self.gcs,
            "stats": self.stats.as_dict(),
        }


def decompose(trace: dict[str, Any], seen: list[tuple[float, float, int, int]]) -> dict[str, Any]:
    """Per alert (``seen``: sent, reader got it, trigger partition, trigger offset), its latency
    in the five segments; returns each segment's p50 / p99 / mean and the same over the slowest
    1% of alerts (what makes the p99), in ms."""
    batches = trace["batches"]
    commit_began = [c[0] for c in trace["commits"]]
    rows = []
    for sent, got, partition, offset in seen:
        batch = next((b for b in batches if b[2].get(str(partition), -1) > offset), None)
        if batch is None:
            continue
        consumed, processed, _ = batch
        i = bisect.bisect_left(commit_began, processed)
        if i == len(commit_began):
            continue
        c0, c1 = trace["commits"][i]
        rows.append((got - sent, consumed - sent, processed - consumed, c0 - processed, c1 - c0, got - c1))
    if not rows:
        return {}
    a = np.array(rows) * 1000
    slow = a[a[:, 0] >= np.percentile(a[:, 0], 99)]
    out: dict[str, Any] = {"alerts": len(a)}
    for j, name in enumerate(SEGMENTS, start=1):
        out[name] = {
            "p50": round(float(np.percentile(a[:, j], 50)), 1),
            "p99": round(float(np.percentile(a[:, j], 99)), 1),
            "mean": round(float(a[:, j].mean()), 1),
            "mean_of_slowest_1pct": round(float(slow[:, j].mean()), 1),
        }
    commit_ms = np.array([(c1 - c0) * 1000 for c0, c1 in trace["commits"]])
    gc_ms = np.array([(g1 - g0) * 1000 for g0, g1, _ in trace["gcs"]] or [0.0])
    out["commits"] = {
        "n": len(commit_ms),
        "p50": round(float(np.percentile(commit_ms, 50)), 1),
        "p99": round(float(np.percentile(commit_ms, 99)), 1),
        "max": round(float(commit_ms.max()), 1),
    }
    out["full_gcs"] = {"n": len(trace["gcs"]), "max_ms": round(float(gc_ms.max()), 1)}
    return out


def main() -> None:
    pipeline = TracedPipeline(load_config())
    pipeline.run(idle_exit_s=8.0)
    with open(sys.argv[1], "w") as f:
        json.dump(pipeline.trace(), f)


if __name__ == "__main__":
    main()
