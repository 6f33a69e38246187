"""Plain Python: the obvious per-event implementation with dicts (what a team writes first).

Reads the CSV with the csv module, one event at a time. Semantics are fraudstream's exactly:
the event is judged against the watermark before it (late for a window when
``end - 1 <= watermark``; still counted in its windows that are not late), then the watermark
``max event time - 5 s`` is updated and every window with ``end - 1 <= watermark`` fires; at the
end of the input every remaining window fires.
"""

from __future__ import annotations

import csv
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DISORDER_MS,
    MIN_COUNT,
    MIN_COUNTRIES,
    SIZE_MS,
    SLIDE_MS,
    Clock,
    parse_args,
    write_alerts,
    write_result,
)


def process(path: str) -> tuple[int, list[tuple[int, int, int, int, int, float]], int]:
    open_windows: dict[int, dict[int, list]] = {}  # window end -> card -> [count, total, countries]
    alerts: list[tuple[int, int, int, int, int, float]] = []
    wm = -(2**63)
    next_due: int | None = None  # smallest open window end - 1
    events = late_events = 0

    def fire(end: int) -> None:
        for card, (cnt, total, cset) in open_windows.pop(end).items():
            if cnt >= MIN_COUNT and len(cset) >= MIN_COUNTRIES:
                alerts.append((card, end - SIZE_MS, end, cnt, len(cset), total))

    with open(path, newline="") as f:
        for card_s, ts_s, amount_s, country_s in csv.reader(f):
            card, t, amount, country = int(card_s), int(ts_s), float(amount_s), int(country_s)
            events += 1
            counted = False
            start = (t - SIZE_MS) // SLIDE_MS * SLIDE_MS + SLIDE_MS  # first window holding t
            while start <= t:
                end = start + SIZE_MS
                if end - 1 > wm:  # not late for this window
                    counted = True
                    windows = open_windows.get(end)
                    if windows is None:
                        windows = open_windows[end] = {}
                        if next_due is None or end - 1 < next_due:
                            next_due = end - 1
                    acc = windows.get(card)
                    if acc is None:
                        windows[card] = [1, amount, {country}]
                    else:
                        acc[0] += 1
                        acc[1] += amount
                        acc[2].add(country)
                start += SLIDE_MS
            if not counted:
                late_events += 1
            if t - DISORDER_MS > wm:
                wm = t - DISORDER_MS
                if next_due is not None and wm >= next_due:
                    for end in sorted(e for e in open_windows if e - 1 <= wm):
                        fire(end)
                    next_due = min(open_windows, default=None)
                    next_due = None if next_due is None else next_due - 1
    for end in sorted(open_windows):
        fire(end)
    return events, alerts, late_events


def main() -> None:
    args = parse_args(__doc__ or "")
    clock = Clock()
    clock.start()
    events, alerts, late = process(args.data)
    n_alerts = write_alerts(args.alerts, alerts)
    elapsed = clock.stop()
    write_result(
        args,
        version=f"CPython {platform.python_version()}",
        events=events,
        processing_started=clock.started_wall,
        processing_s=elapsed,
        alerts=n_alerts,
        late_events=late,
        note="per event: csv.reader, dict of open windows per window end",
    )


if __name__ == "__main__":
    main()
