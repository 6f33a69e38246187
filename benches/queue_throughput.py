"""Queue and in-process pipeline throughput.

1. Items/s through the Rust BoundedQueue with one producer and one consumer thread, putting and
   getting one item at a time and in batches of 1024, against Python's ``queue.Queue`` (one at
   a time: its only mode) in the same run.
2. End-to-end in-process pipeline (array source -> window engine -> null sink, on threads) on the
   window benchmark's workload, against the bare engine on the same data in the same run.

    python benches/queue_throughput.py [--items 2000000] [--events 5000000]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from collections.abc import Callable

from fraudstream import WindowedAggregation, hopping
from fraudstream._core import BoundedQueue
from fraudstream.generator import card_transactions
from fraudstream.pipeline import ArraySource, NullSink, Pipeline


def timed(producer: Callable[[], None], consumer: Callable[[], None]) -> float:
    t = threading.Thread(target=consumer)
    began = time.perf_counter()
    t.start()
    producer()
    t.join()
    return time.perf_counter() - began


def rust_queue(n: int, batch: int) -> float:
    q = BoundedQueue(8_192)
    items = list(range(batch))

    def produce() -> None:
        if batch == 1:
            for i in range(n):
                q.put(i)
        else:
            for _ in range(n // batch):
                q.put_batch(items)
        q.close()

    def consume() -> None:
        while q.get_batch(batch) is not None:
            pass

    return n / timed(produce, consume)


def python_queue(n: int) -> float:
    q: queue.Queue[int | None] = queue.Queue(8_192)

    def produce() -> None:
        for i in range(n):
            q.put(i)
        q.put(None)

    def consume() -> None:
        while q.get() is not None:
            pass

    return n / timed(produce, consume)


def make_agg() -> WindowedAggregation:
    return WindowedAggregation(
        key="card",
        time="ts",
        window=hopping("5m", "1m"),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness="5s",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2_000_000)
    ap.add_argument("--events", type=int, default=5_000_000)
    args = ap.parse_args()

    py = python_queue(args.items // 4)
    b1 = rust_queue(args.items // 4, 1)
    b1024 = rust_queue(args.items, 1024)
    print(f"queue.Queue (1 item)      : {py:>14,.0f} items/s")
    print(f"BoundedQueue (1 item)     : {b1:>14,.0f} items/s  ({b1 / py:.1f}x queue.Queue)")
    print(f"BoundedQueue (1024/batch) : {b1024:>14,.0f} items/s  ({b1024 / py:.1f}x queue.Queue)")

    data = card_transactions(args.events, cards=100_000, seed=42)
    agg = make_agg()
    began = time.perf_counter()
    for lo in range(0, args.events, 65_536):
        agg.process({k: v[lo : lo + 65_536] for k, v in data.items()})
    agg.flush()
    engine = args.events / (time.perf_counter() - began)
    sink = NullSink()
    began = time.perf_counter()
    Pipeline(ArraySource(data, 65_536), make_agg(), sink, capacity=8).run()
    pipeline = args.events / (time.perf_counter() - began)
    print(f"bare engine               : {engine:>14,.0f} events/s")
    print(f"in-process pipeline       : {pipeline:>14,.0f} events/s  ({engine / pipeline:.2f}x slower)")
    print(
        json.dumps(
            {
                "queue_items_per_s_batch1": round(b1),
                "queue_items_per_s_batch1024": round(b1024),
                "pyqueue_items_per_s": round(py),
                "pipeline_events_per_s": round(pipeline),
                "engine_events_per_s": round(engine),
            }
        )
    )


if __name__ == "__main__":
    main()
