"""The status line of ``fraudstream run``: what the pipeline is doing, every few seconds.

On a terminal (or with ``--status``), a thread prints one line per interval to stderr::

    fraudstream run: 1,204,311 consumed (20,110/s), 412 alerts, lag 1,902, commit p99 14 ms,
    watermark 02:41:07 UTC (3 s behind), 6 partitions

(one line; wrapped here).

It only reads: the run's counters (:class:`~fraudstream.kafka.stats.RunStats`) and the gauges
the poll loop sets each second (:class:`~fraudstream.metrics.PipelineMetrics`), never a Kafka
client, so it cannot disturb the loop.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np

DEFAULT_INTERVAL_S = 5.0


def status_line(
    samples: dict[str, Any],
    consumed: int,
    alerts: int,
    rate: float,
    commit_ms: list[float],
    partitions: int,
    now_ms: float,
) -> str:
    """One line from the metrics' ``samples`` (:meth:`PipelineMetrics.snapshot`) and counters."""
    lag = sum(v for k, v in samples.items() if k.startswith("fraudstream_consumer_lag{"))
    marks = [v for k, v in samples.items() if k.startswith("fraudstream_watermark_ms{")]
    parts = [f"{consumed:,} consumed ({rate:,.0f}/s)", f"{alerts:,} alerts", f"lag {int(lag):,}"]
    parts.append(f"commit p99 {np.percentile(commit_ms, 99):.0f} ms" if commit_ms else "no commit yet")
    if marks:
        wm = min(marks)
        clock = datetime.fromtimestamp(wm / 1000, UTC).strftime("%H:%M:%S")
        parts.append(f"watermark {clock} UTC ({_behind((now_ms - wm) / 1000)} behind)")
    else:
        parts.append("no watermark yet")
    parts.append(f"{partitions} partition{'s' if partitions != 1 else ''}")
    return "fraudstream run: " + ", ".join(parts)


def _behind(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class StatusReporter:
    """Prints :func:`status_line` of ``pipeline`` every ``interval_s`` until :meth:`close`."""

    def __init__(self, pipeline: Any, interval_s: float = DEFAULT_INTERVAL_S, stream: TextIO | None = None):
        self.pipeline = pipeline
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fraudstream-status", daemon=True)
        self._last = (time.monotonic(), 0, 0)  # time, consumed, commits

    def start(self) -> StatusReporter:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def line(self) -> str:
        p = self.pipeline
        stats = p.stats
        now = time.monotonic()
        at, consumed_before, commits_before = self._last
        consumed, commits = stats.consumed, stats.commits
        self._last = (now, consumed, commits)
        recent = stats.commit_ms[-max(1, commits - commits_before) :] if commits else []
        return status_line(
            p.metrics.snapshot(),
            consumed,
            stats.alerts,
            max(0, consumed - consumed_before) / max(now - at, 1e-3),
            list(recent),
            len(p.tasks.tasks),
            time.time() * 1000,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                print(self.line(), file=self.stream, flush=True)
            except Exception:  # a status line must never end the run
                continue


__all__ = ["DEFAULT_INTERVAL_S", "StatusReporter", "status_line"]
