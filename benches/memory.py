"""State memory of the alert rule engine at many distinct keys: bytes per key and per open window.

The engine is the Kafka pipeline's rule (``make_rule_engine``: HOP(5 min, 1 min), count +
count_distinct(country) + sum(amount), early firing on ``countries >= 3 and n >= 5``). Its state
is kept per pane of gcd(size, slide) = 1 min: an open pane is the unit of window state (a hopping
window combines its five panes when it fires).

1. ``--keys`` distinct cards, one event each, all in one pane: ``bytes_per_key`` is the engine's
   ``state_size()["bytes"] / keys`` with one open window (pane) per key; the process RSS growth per
   key is shown beside it as a check of that estimate.
2. ``keys / panes`` distinct cards with ``--panes`` open panes each: the marginal bytes of one more
   open window (pane) of a key, ``bytes_per_open_window``.
3. Then the watermark passes every window: the state must drop to zero keys (memory follows open
   windows, never events or keys seen).

    python benches/memory.py                 # 10M keys (about 8 GB of RAM)
    python benches/memory.py --keys 1000000

The last line is JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import numpy as np
import psutil

from fraudstream.config import Config
from fraudstream.kafka.pipeline import make_rule_engine
from fraudstream.windows import WindowedAggregation

PANE_MS = 60_000
BASE = 1_700_000_000_000 // 300_000 * 300_000  # aligned to the 5-minute windows
CHUNK = 1 << 20


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def fill(engine: WindowedAggregation, keys: int, panes: int) -> float:
    """``keys`` distinct cards with one event in each of ``panes`` consecutive panes (no window
    fires: the watermark stays inside the last pane). Returns the seconds taken."""
    began = time.perf_counter()
    for p in range(panes):
        for lo in range(0, keys, CHUNK):
            card = np.arange(lo, min(keys, lo + CHUNK), dtype=np.int64)
            engine.process(
                {
                    "card_id": card,
                    "event_time": BASE + p * PANE_MS + card % 50_000,
                    "amount": (card % 1_000) / 10.0,
                    "country": (card + p) % 30,
                }
            )
    return time.perf_counter() - began


def measure(keys: int, panes: int) -> dict[str, Any]:
    config = Config()
    gc.collect()
    rss0 = rss()
    engine = make_rule_engine(config)
    seconds = fill(engine, keys, 1)
    one = engine.state_size()
    rss_one = rss() - rss0
    assert one["keys"] == keys and one["windows"] == keys, one
    # the watermark passes every window: all state is freed
    engine.advance_to(BASE + 10 * PANE_MS)
    after = engine.state_size()
    del engine
    gc.collect()

    multi_keys = max(1, keys // panes)
    engine = make_rule_engine(config)
    fill(engine, multi_keys, panes)
    many = engine.state_size()
    assert many["windows"] == multi_keys * panes, many
    del engine
    gc.collect()

    per_key = one["bytes"] / keys
    per_window = (many["bytes"] / multi_keys - per_key) / (panes - 1)
    return {
        "keys": keys,
        "bytes_per_key": round(per_key, 1),
        "bytes_per_open_window": round(per_window, 1),
        "state_bytes": one["bytes"],
        "rss_bytes_per_key": round(rss_one / keys, 1),
        "fill_events_per_s": round(keys / seconds),
        "multi_pane": {"keys": multi_keys, "panes_per_key": panes, "state_bytes": many["bytes"]},
        "keys_after_watermark_passes": after["keys"],
        "bytes_after_watermark_passes": after["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=10_000_000)
    ap.add_argument("--panes", type=int, default=5, help="open panes per key in part 2 (2..5)")
    args = ap.parse_args()
    if not 2 <= args.panes <= 5:
        ap.error("--panes must be in 2..5 (a sixth pane would close the first window)")
    r = measure(args.keys, args.panes)
    print(f"{'distinct keys':<34} {r['keys']:>14,}")
    print(f"{'state bytes (state_size)':<34} {r['state_bytes']:>14,}")
    print(f"{'bytes per key (one open window)':<34} {r['bytes_per_key']:>14,.1f}")
    print(f"{'RSS growth per key':<34} {r['rss_bytes_per_key']:>14,.1f}")
    print(f"{'bytes per additional open window':<34} {r['bytes_per_open_window']:>14,.1f}")
    print(f"{'keys once the watermark passes':<34} {r['keys_after_watermark_passes']:>14,}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
