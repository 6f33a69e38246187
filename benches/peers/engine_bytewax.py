"""Bytewax: its sliding windower (``SlidingWindower`` + ``EventClock`` + ``fold_window``), one worker.

- Source: ``FileSource`` (lines of the CSV), parsed in a ``map`` into ``(card, event)``.
- Clock: ``EventClock`` with ``wait_for_system_duration = 5 s``. Bytewax adds the system time
  elapsed since the max event was seen to the watermark; for a replay of a file that would make
  lateness depend on processing speed, so ``now_getter`` is a constant (watermark = max event
  time - 5 s exactly) and ``to_system_utc`` returns None (no wake-ups on system time).
- Bytewax keeps one clock per key: a card's watermark is that card's max event time - 5 s, and
  a card's window closes when that card's watermark passes ``end`` (or at end of input). Final
  window contents are the same as with one global watermark as long as no event is late.
- Windows: ``SlidingWindower(length=5 min, offset=1 min, align_to=epoch)``; ``fold_window``
  with ``ordered=False`` (the aggregates are order-independent, so the per-key sort buffer of
  ``ordered=True`` is skipped).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DISORDER_MS,
    MIN_COUNT,
    MIN_COUNTRIES,
    SIZE_MS,
    SLIDE_MS,
    Clock,
    parse_args,
    write_result,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def build_flow(data: str, alerts_path: str, counts: dict[str, int]) -> Any:
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, SlidingWindower, fold_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    class AlertPartition(StatelessSinkPartition):
        def __init__(self) -> None:
            self.f = open(alerts_path, "w")  # noqa: SIM115 - closed by close()

        def write_batch(self, items: list[str]) -> None:
            counts["alerts"] += len(items)
            self.f.write("".join(items))

        def close(self) -> None:
            self.f.close()

    class AlertSink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> AlertPartition:
            return AlertPartition()

    def parse(line: str) -> tuple[str, tuple[datetime, int, float, int]]:
        card, ts, amount, country = line.split(",")
        counts["events"] += 1
        t = int(ts)
        return card, (EPOCH + timedelta(milliseconds=t), t, float(amount), int(country))

    fixed_now = datetime.now(UTC)
    clock = EventClock(
        ts_getter=lambda e: e[0],
        wait_for_system_duration=timedelta(milliseconds=DISORDER_MS),
        now_getter=lambda: fixed_now,
        to_system_utc=lambda _t: None,
    )
    windower = SlidingWindower(
        length=timedelta(milliseconds=SIZE_MS), offset=timedelta(milliseconds=SLIDE_MS), align_to=EPOCH
    )

    def folder(acc: list[Any], e: tuple[datetime, int, float, int]) -> list[Any]:
        acc[0] += 1
        acc[1] += e[2]
        acc[2].add(e[3])
        return acc

    def merger(a: list[Any], b: list[Any]) -> list[Any]:
        return [a[0] + b[0], a[1] + b[1], a[2] | b[2]]

    def alert(item: tuple[str, tuple[int, list[Any]]]) -> str | None:
        card, (window_id, (count, total, countries)) = item
        if count >= MIN_COUNT and len(countries) >= MIN_COUNTRIES:
            start = window_id * SLIDE_MS  # window id k opens at align_to + k * offset
            return f"{card},{start},{start + SIZE_MS},{count},{len(countries)},{total!r}\n"
        return None

    def count_late(item: Any) -> None:
        counts["late"] += 1

    flow = Dataflow("fraud_velocity")
    lines = op.input("read", flow, FileSource(data))
    events = op.map("parse", lines, parse)
    windows = fold_window(
        "hop", events, clock, windower, lambda: [0, 0.0, set()], folder, merger, ordered=False
    )
    op.inspect("late", windows.late, lambda _step, item: count_late(item))
    op.output("alerts", op.filter_map("rule", windows.down, alert), AlertSink())
    return flow


def main() -> None:
    args = parse_args(__doc__ or "")
    from bytewax.testing import run_main

    counts = {"events": 0, "alerts": 0, "late": 0}
    flow = build_flow(args.data, args.alerts, counts)
    clock = Clock()
    clock.start()
    run_main(flow)  # one worker, in this thread
    elapsed = clock.stop()
    write_result(
        args,
        version=version("bytewax"),
        events=counts["events"],
        processing_started=clock.started_wall,
        processing_s=elapsed,
        alerts=counts["alerts"],
        late_events=counts["late"],
        note="SlidingWindower + EventClock (per-key clock), fold_window, 1 worker (run_main)",
    )


if __name__ == "__main__":
    main()
