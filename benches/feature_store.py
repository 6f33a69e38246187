"""Feature-store lookups against the project's real Redis server (``scripts/redis up``).

Workload: ``--cards`` cards, each with a Redis hash of three features; ``--events``
transactions from the generator (skewed cards: a few are far busier than most, as in real
traffic), cut into batches of each ``--batch-sizes`` size. Per batch size, in this process:

- pipelined, no cache: :class:`fraudstream.store.FeatureStore` with ``cache_size=0``, one round
  trip per batch (an HMGET per distinct card of the batch);
- pipelined + cache: the same with the local cache (TTL 60 s), with its hit ratio;
- one call per transaction: an HMGET round trip per row (the naive client), over at most
  ``--naive-events`` transactions;
- the detector alone, and the detector behind the store enrichment (pipelined + cache), over
  the same batches: the store's cost relative to the detector in the same run.

    python benches/feature_store.py [--events 200000] [--cards 100000] [--batch-sizes 10,100,1000,5000]

The server's URL: ``FRAUDSTREAM_REDIS_URL`` (what ``scripts/redis up`` prints). Prints figures;
the last line is JSON. The machine (and the server's core) may be shared: compare ratios within
one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from fraudstream.fraud.detector import FraudDetector
from fraudstream.generator import card_transactions
from fraudstream.store import DEFAULT_FEATURES, FeatureStore, StoreEnrichment

PREFIX = "bench:card:"
HEADERS = ("batch", "pipelined tx/s", "+cache tx/s", "hit ratio", "per-call tx/s", "detector tx/s",
           "det+store tx/s", "time vs detector")  # fmt: skip
WIDTHS = (6, 15, 12, 9, 14, 14, 14, 16)


def seed(client: redis.Redis, cards: int) -> None:
    rng = np.random.default_rng(3)
    avg, count, cb = rng.gamma(2.0, 30.0, cards), rng.integers(0, 400, cards), rng.integers(0, 3, cards)
    pipe = client.pipeline(transaction=False)
    for card in range(cards):
        pipe.hset(
            f"{PREFIX}{card}",
            mapping={"avg_amount_90d": float(avg[card]), "txn_count_90d": int(count[card]),
                     "chargebacks_1y": int(cb[card])},
        )  # fmt: skip
        if card % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def transactions(events: int, cards: int) -> dict[str, np.ndarray[Any, Any]]:
    data = card_transactions(events, cards=cards, rate_per_s=2_000.0, seed=5)
    return {
        "txn_id": np.arange(events, dtype=np.int64),
        "card_id": data["card"],
        "terminal_id": data["card"] % 5_000,
        "amount": data["amount"],
        "country": data["country"],
        "event_time": data["ts"],
    }


def batches(cols: dict[str, np.ndarray[Any, Any]], size: int) -> list[dict[str, np.ndarray[Any, Any]]]:
    n = len(cols["txn_id"])
    return [{k: v[i : i + size] for k, v in cols.items()} for i in range(0, n, size)]


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def store(url: str, cache: bool) -> FeatureStore:
    return FeatureStore(
        url, DEFAULT_FEATURES, key_prefix=PREFIX, cache_size=100_000 if cache else 0, timeout_ms=1_000
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--cards", type=int, default=100_000)
    ap.add_argument("--batch-sizes", default="10,100,1000,5000")
    ap.add_argument("--naive-events", type=int, default=20_000)
    args = ap.parse_args()
    url = os.environ.get("FRAUDSTREAM_REDIS_URL", "redis://127.0.0.1:16379/0")
    client = redis.Redis.from_url(url)
    seed(client, args.cards)
    cols = transactions(args.events, args.cards)
    n = args.events
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print(f"feature store at {url}: {n:,} transactions over {args.cards:,} cards (skewed), 3 features")
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(HEADERS, WIDTHS, strict=True)))
    figures: dict[str, Any] = {"events": n, "cards": args.cards, "by_batch": {}}
    naive_rows = cols["card_id"][: args.naive_events].tolist()

    def naive() -> None:
        for card in naive_rows:
            client.hmget(f"{PREFIX}{card}", list(DEFAULT_FEATURES))

    naive_rate = len(naive_rows) / timed(naive)  # independent of the batch size
    for size in sizes:
        cut = batches(cols, size)
        plain = store(url, cache=False)
        plain.lookup(np.array([0]))  # connect
        t_plain = timed(lambda: [plain.lookup(b["card_id"]) for b in cut])  # noqa: B023
        cached = store(url, cache=True)
        cached.lookup(np.array([0]))
        cached.clear_cache()
        t_cached = timed(lambda: [cached.lookup(b["card_id"]) for b in cut])  # noqa: B023
        c = cached.counters
        hit_ratio = c.cache_hits / max(1, c.keys - 1)
        detector = FraudDetector(wall_clock_time=False)
        t_detector = timed(lambda: [detector.process(b) for b in cut])  # noqa: B023
        enriched_store = store(url, cache=True)
        enriched_store.lookup(np.array([0]))
        enriched_store.clear_cache()
        enriched = StoreEnrichment(FraudDetector(wall_clock_time=False), enriched_store)
        t_enriched = timed(lambda: [enriched.process(b) for b in cut])  # noqa: B023
        row = {
            "pipelined_tx_per_s": round(n / t_plain),
            "round_trips": plain.counters.round_trips - 1,
            "cached_tx_per_s": round(n / t_cached),
            "cache_hit_ratio": round(hit_ratio, 3),
            "per_call_tx_per_s": round(naive_rate),
            "detector_tx_per_s": round(n / t_detector),
            "detector_with_store_tx_per_s": round(n / t_enriched),
            "store_cost_vs_detector": round(t_enriched / t_detector, 2),
        }
        figures["by_batch"][size] = row
        rates = [row[k] for k in ("pipelined_tx_per_s", "cached_tx_per_s")]
        more = [row[k] for k in ("per_call_tx_per_s", "detector_tx_per_s", "detector_with_store_tx_per_s")]
        cells = [f"{size:,}", *(f"{r:,}" for r in rates), f"{row['cache_hit_ratio']:.3f}",
                 *(f"{r:,}" for r in more), f"{row['store_cost_vs_detector']:.2f}x"]  # fmt: skip
        print("  " + " ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)))
    keys = list(client.scan_iter(f"{PREFIX}*", count=10_000))
    for i in range(0, len(keys), 10_000):
        client.delete(*keys[i : i + 10_000])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
