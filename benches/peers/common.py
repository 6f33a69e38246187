"""What every engine adapter shares (standard library only: adapters run in the peers' venv).

The workload (DESIGN.md, issue 7): per card, HOP windows of 5 min sliding 1 min aligned to the
epoch; COUNT(*), COUNT(DISTINCT country), SUM(amount); an alert is a FINAL window result with
distinct countries >= 3 and count >= 5. Watermark = max event time - 5 s.

Input file: headerless CSV, one event a line: ``card,ts,amount,country`` (int64 card id, int64
epoch milliseconds, float amount, int country number 0..29). Alerts file: headerless CSV
``card,window_start,window_end,count,countries,total``.

Every adapter is a script run in its own process::

    python engine_x.py --data FILE --alerts OUT.csv --result OUT.json --t0 <parent time.time()>

and writes ``result`` as JSON: version, events, startup_s (process launch, imports, engine set-up
until the first event is read), processing_s (first read of the file to the last alert written),
alerts, and optional ``extra`` fields.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from typing import Any

SIZE_MS = 300_000  # HOP size: 5 minutes
SLIDE_MS = 60_000  # HOP slide: 1 minute
DISORDER_MS = 5_000  # watermark = max event time - 5 s
MIN_COUNTRIES = 3
MIN_COUNT = 5


def is_alert(count: int, countries: int) -> bool:
    return countries >= MIN_COUNTRIES and count >= MIN_COUNT


def parse_args(description: str, extra: Iterable[tuple[str, dict[str, Any]]] = ()) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", required=True, help="input CSV (card,ts,amount,country; no header)")
    ap.add_argument("--alerts", required=True, help="where to write the alerts (CSV)")
    ap.add_argument("--result", required=True, help="where to write the result (JSON)")
    ap.add_argument("--t0", type=float, default=None, help="time.time() when the parent launched us")
    for name, kw in extra:
        ap.add_argument(name, **kw)
    return ap.parse_args()


def write_alerts(path: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """Writes (card, window_start, window_end, count, countries, total) rows; returns how many."""
    n = 0
    with open(path, "w") as f:
        for card, start, end, count, countries, total in rows:
            f.write(f"{int(card)},{int(start)},{int(end)},{int(count)},{int(countries)},{float(total)!r}\n")
            n += 1
    return n


def write_result(
    args: argparse.Namespace,
    *,
    version: str,
    events: int,
    processing_started: float,
    processing_s: float,
    alerts: int,
    **extra: Any,
) -> None:
    """``processing_started`` is the time.time() at which processing began."""
    startup_s = None if args.t0 is None else max(0.0, processing_started - args.t0)
    result = {
        "version": version,
        "events": events,
        "startup_s": startup_s,
        "processing_s": processing_s,
        "alerts": alerts,
        "extra": extra,
    }
    with open(args.result, "w") as f:
        json.dump(result, f)


class Clock:
    """Wall time of the processing phase: ``start()`` then ``stop()``."""

    def __init__(self) -> None:
        self.started_wall = 0.0
        self._t = 0.0
        self.elapsed = 0.0

    def start(self) -> None:
        self.started_wall = time.time()
        self._t = time.perf_counter()

    def stop(self) -> float:
        self.elapsed = time.perf_counter() - self._t
        return self.elapsed
