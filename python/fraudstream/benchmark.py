"""The window engine benchmark: fraudstream against a plain-Python dict implementation of the
same windows, in the same run, on the same generated data (DESIGN.md's workload).

HOP(5 min, 1 min) count + sum(amount) + count_distinct(country) per card, 100k skewed cards, 30
countries, 5 s bounded disorder, watermark = max event time - 5 s. fraudstream processes numpy
batches of 64k; the Python baseline runs per event on a prefix, and both must emit the same
windows there. Used by ``benches/window_throughput.py`` and ``fraudstream bench``.
"""

from __future__ import annotations

import math
import resource
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from fraudstream.generator import card_transactions
from fraudstream.windows import WindowedAggregation, hopping

SIZE, SLIDE, DISORDER = 300_000, 60_000, 5_000
BATCH = 65_536


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_fraudstream(
    data: dict[str, np.ndarray[Any, Any]], n: int, max_keys: int | None = None
) -> tuple[float, int, dict[str, Any]]:
    agg = WindowedAggregation(
        key="card",
        time="ts",
        window=hopping(SIZE, SLIDE),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness=DISORDER,
        max_keys=max_keys,
    )
    cols = {k: v[:n] for k, v in data.items()}
    rows = 0
    peak_state = 0
    began = time.perf_counter()
    for lo in range(0, n, BATCH):
        out = agg.process({k: v[lo : lo + BATCH] for k, v in cols.items()})
        rows += len(out)
        if lo % (BATCH * 16) == 0:
            peak_state = max(peak_state, agg.state_size()["bytes"])
    evicted = agg.counters()["evicted"]
    rows += len(agg.flush())
    elapsed = time.perf_counter() - began
    return elapsed, rows, {"peak_state_mb": peak_state / 2**20, "evicted": evicted}


def python_windows(data: dict[str, np.ndarray[Any, Any]], n: int) -> tuple[float, list[tuple[Any, ...]]]:
    """The obvious per-event Python implementation: a dict of open windows per window end."""
    cards, times = data["card"][:n].tolist(), data["ts"][:n].tolist()
    amounts, countries = data["amount"][:n].tolist(), data["country"][:n].tolist()
    open_windows: dict[int, dict[int, list[Any]]] = defaultdict(dict)
    out: list[tuple[Any, ...]] = []
    max_t = -(2**63)
    next_due = None
    began = time.perf_counter()
    for card, t, amount, country in zip(cards, times, amounts, countries, strict=True):
        first_start = (t - SIZE) // SLIDE * SLIDE + SLIDE
        for start in range(first_start, t + 1, SLIDE):
            acc = open_windows[start + SIZE].get(card)
            if acc is None:
                open_windows[start + SIZE][card] = [1, amount, {country}]
            else:
                acc[0] += 1
                acc[1] += amount
                acc[2].add(country)
        if t > max_t:
            max_t = t
            wm = t - DISORDER
            if next_due is None or wm >= next_due:
                for end in sorted(e for e in open_windows if e - 1 <= wm):
                    for c, (cnt, total, cset) in open_windows.pop(end).items():
                        out.append((c, end - SIZE, end, cnt, total, len(cset)))
                next_due = min(open_windows, default=None)
                next_due = None if next_due is None else next_due - 1
    for end in sorted(open_windows):
        for c, (cnt, total, cset) in open_windows[end].items():
            out.append((c, end - SIZE, end, cnt, total, len(cset)))
    return time.perf_counter() - began, out


def fraudstream_rows(data: dict[str, np.ndarray[Any, Any]], n: int) -> list[tuple[Any, ...]]:
    agg = WindowedAggregation(
        key="card",
        time="ts",
        window=hopping(SIZE, SLIDE),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness=DISORDER,
    )
    outs = [agg.process({k: v[:n] for k, v in data.items()}), agg.flush()]
    return [
        (r["key"], r["window_start"], r["window_end"], r["n"], r["total"], r["countries"])
        for o in outs
        for r in o.rows()
    ]


def agree(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> int:
    """Number of windows that differ (sums compared to 1e-9 relative)."""
    index = {r[:3]: r for r in a}
    bad = abs(len(a) - len(b))
    for r in b:
        o = index.get(r[:3])
        if o is None or o[3] != r[3] or o[5] != r[5] or not math.isclose(o[4], r[4], rel_tol=1e-9):
            bad += 1
    return bad


def run(
    events: int, python_events: int, repeat: int = 3, report: Any = print, max_keys: Sequence[int] = ()
) -> dict[str, Any]:
    """Runs both and returns the figures (the JSON of ``benches/window_throughput.py``); with
    ``max_keys``, fraudstream again under each cap on live keys, as a ratio of the uncapped run."""
    t0 = time.perf_counter()
    data = card_transactions(events, cards=100_000, countries=30, disorder_ms=DISORDER, seed=42)
    report(
        f"generated {events:,} events in {time.perf_counter() - t0:.1f} s "
        f"(100k skewed cards, 30 countries, {DISORDER} ms disorder)"
    )
    py_n = min(python_events, events)
    py_s, py_rows = python_windows(data, py_n)
    mismatches = agree(py_rows, fraudstream_rows(data, py_n))
    report(
        f"plain Python : {py_n:>12,} events {py_s:8.2f} s {py_n / py_s:>14,.0f} events/s "
        f"({len(py_rows):,} windows; {mismatches} disagree with fraudstream)"
    )
    best = math.inf
    for _ in range(repeat):
        fs_s, fs_rows, info = run_fraudstream(data, events)
        best = min(best, fs_s)
    fs_rate, py_rate = events / best, py_n / py_s
    report(
        f"fraudstream  : {events:>12,} events {best:8.2f} s {fs_rate:>14,.0f} events/s "
        f"({fs_rows:,} windows, batches of {BATCH:,}, peak state {info['peak_state_mb']:.0f} MiB)"
    )
    report(
        f"ratio        : {fs_rate / py_rate:,.1f}x   peak RSS {peak_rss_mb():,.0f} MiB "
        f"(includes the {sum(v.nbytes for v in data.values()) / 2**20:,.0f} MiB of input columns)"
    )
    capped: dict[str, dict[str, float]] = {}
    for cap in max_keys:
        best_cap, evicted = math.inf, 0
        for _ in range(repeat):
            cap_s, _, cap_info = run_fraudstream(data, events, cap)
            best_cap, evicted = min(best_cap, cap_s), cap_info["evicted"]
        capped[str(cap)] = {"events_per_s": round(events / best_cap), "ratio": round(best / best_cap, 3)}
        report(
            f"max_keys {cap:>9,}: {events / best_cap:>14,.0f} events/s = {best / best_cap:.3f}x uncapped "
            f"({evicted:,} keys evicted, peak state {cap_info['peak_state_mb']:.0f} MiB)"
        )
    return {
        "events": events,
        "fraudstream_events_per_s": round(fs_rate),
        "python_events_per_s": round(py_rate),
        "ratio": round(fs_rate / py_rate, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "disagreements": mismatches,
        **({"max_keys": capped} if capped else {}),
    }
