"""Temporal join throughput: fraudstream's core against a plain-Python dict join and pandas.

Workload: a profiles table of ``--keys`` customers, each with ``--versions`` versions (two
float64 columns: avg_amount, account_age_days) at random times over one day; ``--events``
transactions over the same day, keys uniform, times in order with up to 5 s of jitter. Every
transaction takes the profile version valid at its event time (FOR SYSTEM_TIME AS OF).

- fraudstream: ``TemporalJoinProcessor`` fed in time order, chunk by chunk: the table updates
  up to the chunk's end (plus the disorder bound), then the chunk's transactions as one numpy
  batch of ``--batch`` rows (table disorder 0, probe disorder 5 s), then ``flush()``.
- Python: a dict of key -> sorted version times and values, ``bisect`` per transaction
  (the obvious per-event loop; it sees the whole table at once, so it does no waiting).
- pandas: ``merge_asof(by="key", direction="backward")`` over the whole frames, sorting
  included (a batch tool: it needs all the data before the first row comes out).

All three run in this process on the same data and must give the same matched values.

    python benches/temporal_join.py [--events 2000000] [--keys 100000] [--versions 5]

Prints figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import bisect
import json
import resource
import time
from typing import Any

import numpy as np

from fraudstream.tables import TemporalJoinProcessor

DAY = 86_400_000


def make_data(events: int, keys: int, versions: int, seed: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000
    n_up = keys * versions
    up_keys = np.repeat(np.arange(keys, dtype=np.int64), versions)
    up_times = t0 + rng.integers(0, DAY, n_up)
    # each key's first version at the start, so most transactions match
    up_times[::versions] = t0
    order = np.argsort(up_times, kind="stable")
    table = {
        "key": up_keys[order],
        "time": up_times[order].astype(np.int64),
        "avg_amount": rng.gamma(2.0, 30.0, n_up)[order],
        "account_age_days": rng.integers(0, 3650, n_up).astype(np.float64)[order],
    }
    base = t0 + np.sort(rng.integers(0, DAY, events))
    probes = {
        "card_id": rng.integers(0, keys, events).astype(np.int64),
        "event_time": (base + rng.integers(0, 5_000, events)).astype(np.int64),
        "txn_id": np.arange(events, dtype=np.int64),
    }
    return {"table": table, "probes": probes}


def run_fraudstream(data: dict[str, Any], batch: int) -> tuple[float, np.ndarray[Any, Any]]:
    table, probes = data["table"], data["probes"]
    n = len(probes["txn_id"])
    join = TemporalJoinProcessor(
        ["avg_amount", "account_age_days"], table_disorder_ms=0, probe_disorder_ms=5_000
    )
    result = np.full(n, np.nan)
    start = time.perf_counter()
    up_at = 0
    for lo in range(0, n, batch):
        chunk = {k: v[lo : lo + batch] for k, v in probes.items()}
        horizon = int(chunk["event_time"].max()) + 1
        up_end = int(np.searchsorted(table["time"], horizon, side="right"))
        if up_end > up_at:
            out = join.update_table({k: v[up_at:up_end] for k, v in table.items()})
            result[out.joined["id"]] = out.joined["avg_amount"]
            up_at = up_end
        out = join.process(chunk)
        result[out.joined["id"]] = out.joined["avg_amount"]
    out = join.flush()
    result[out.joined["id"]] = out.joined["avg_amount"]
    return time.perf_counter() - start, result


def run_python(data: dict[str, Any], events: int) -> tuple[float, np.ndarray[Any, Any]]:
    table, probes = data["table"], data["probes"]
    start = time.perf_counter()
    times: dict[int, list[int]] = {}
    values: dict[int, list[tuple[float, float]]] = {}
    for k, t, a, b in zip(
        table["key"].tolist(),
        table["time"].tolist(),
        table["avg_amount"].tolist(),
        table["account_age_days"].tolist(),
        strict=True,
    ):
        ts, vs = times.setdefault(k, []), values.setdefault(k, [])
        i = bisect.bisect_right(ts, t)
        if i and ts[i - 1] == t:
            vs[i - 1] = (a, b)
        else:
            ts.insert(i, t)
            vs.insert(i, (a, b))
    out = []
    for k, t in zip(probes["card_id"][:events].tolist(), probes["event_time"][:events].tolist(), strict=True):
        ts = times.get(k)
        i = bisect.bisect_right(ts, t) if ts else 0
        out.append(values[k][i - 1][0] if i else float("nan"))
    return time.perf_counter() - start, np.array(out)


def run_pandas(data: dict[str, Any]) -> tuple[float, np.ndarray[Any, Any]] | None:
    try:
        import pandas as pd
    except ImportError:
        return None
    start = time.perf_counter()
    left = pd.DataFrame(data["probes"]).rename(columns={"card_id": "key", "event_time": "time"})
    right = pd.DataFrame(data["table"])
    left = left.sort_values("time", kind="stable")
    merged = pd.merge_asof(left, right, on="time", by="key", direction="backward")
    result = np.full(len(left), np.nan)
    result[merged["txn_id"].to_numpy()] = merged["avg_amount"].to_numpy()
    return time.perf_counter() - start, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--python-events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--batch", type=int, default=65_536)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    args = ap.parse_args()

    data = make_data(args.events, args.keys, args.versions)
    n, n_py = args.events, min(args.python_events, args.events)
    updates = args.keys * args.versions
    fs = min((run_fraudstream(data, args.batch) for _ in range(args.repeat)), key=lambda r: r[0])
    py = min((run_python(data, n_py) for _ in range(args.repeat)), key=lambda r: r[0])
    pdr = [run_pandas(data) for _ in range(args.repeat)]
    pdb = min((r for r in pdr if r is not None), key=lambda r: r[0], default=None)

    np.testing.assert_array_equal(fs[1][:n_py], py[1], err_msg="fraudstream and Python differ")
    if pdb is not None:
        np.testing.assert_array_equal(fs[1], pdb[1], err_msg="fraudstream and pandas differ")

    figures: dict[str, Any] = {
        "events": n,
        "table_updates": updates,
        "keys": args.keys,
        "matched": int(np.count_nonzero(~np.isnan(fs[1]))),
        "fraudstream_events_per_s": round(n / fs[0]),
        "python_events_per_s": round(n_py / py[0]),
        "pandas_merge_asof_events_per_s": round(n / pdb[0]) if pdb else None,
        "ratio_vs_python": round((n / fs[0]) / (n_py / py[0]), 1),
        "ratio_vs_pandas": round((n / fs[0]) / (n / pdb[0]), 2) if pdb else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"temporal join, {n:,} transactions against {updates:,} versions of {args.keys:,} keys")
    lines = [
        (f"fraudstream (streaming, batches of {args.batch:,})", figures["fraudstream_events_per_s"]),
        (f"plain Python dict + bisect ({n_py:,} events)", figures["python_events_per_s"]),
        ("pandas merge_asof (whole frames, sorted)", figures["pandas_merge_asof_events_per_s"]),
    ]
    for label, rate in lines:
        if rate is not None:
            print(f"  {label:<48} {rate:>12,} events/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
