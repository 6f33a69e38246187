"""State memory of the alert rule engine at many distinct keys: bytes per key and per open window.

The engine is the Kafka pipeline's rule (``make_rule_engine``: HOP(5 min, 1 min), count +
count_distinct(country) + sum(amount), early firing on ``countries >= 3 and n >= 5``). Its state
is kept per pane of gcd(size, slide) = 1 min: an open pane is the unit of window state (a hopping
window combines its five panes when it fires). An engine over one partition, as the pipeline
runs them, keeps its panes by pane time (a column of accumulators per pane, indexed by key);
engines over several partitions keep them per key, a few inline in the key's table entry
(``inline_panes``, null for the pane-time layout).

1. ``--keys`` distinct cards, one event each, all in one pane: ``bytes_per_key`` is the engine's
   ``state_size()["bytes"] / keys`` with one open window (pane) per key; the process RSS growth per
   key is shown beside it as a check of that estimate.
2. ``keys / 10`` distinct cards get one more open pane each, up to ``--max-panes`` (the same rule
   with an allowed lateness of one hour, so no pane closes meanwhile); the state is measured
   after every pane. ``bytes_per_open_window`` is the marginal bytes of an open pane; for the
   per-key layout, ``inline_panes`` is the capacity seen (the pane count before the first jump:
   the key's panes move to the heap) and ``bytes_per_open_window_beyond_inline`` the marginal
   bytes per pane beyond it.
3. Then the watermark passes every window: the state must drop to zero keys and the tables
   shrink back (memory follows open windows, never events or keys seen): ``bytes_after_watermark_passes``.

    python benches/memory.py                 # 10M keys
    python benches/memory.py --keys 1000000
    python benches/memory.py --keys 1000000 --final   # the same windows, final rows only

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
from fraudstream.kafka.processors import make_rule_engine
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


def pane_curve(config: Config, keys: int, max_panes: int) -> list[float]:
    """State bytes per key with 1..max_panes open panes per key."""
    config.rule.allowed_lateness = "1h"
    engine = make_rule_engine(config)
    curve = []
    for p in range(max_panes):
        card = np.arange(keys, dtype=np.int64)
        engine.process(
            {
                "card_id": card,
                "event_time": BASE + p * PANE_MS + card % 50_000,
                "amount": (card % 1_000) / 10.0,
                "country": (card + p) % 30,
            }
        )
        size = engine.state_size()
        assert size["keys"] == keys and size["windows"] == keys * (p + 1), size
        curve.append(size["bytes"] / keys)
    del engine
    gc.collect()
    return curve


def measure(keys: int, max_panes: int, final: bool = False) -> dict[str, Any]:
    config = Config()
    if final:
        config.rule.alert_when = None  # type: ignore[assignment]  # final rows only
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

    multi_keys = max(1, keys // 10)
    curve = pane_curve(config, multi_keys, max_panes)
    # The first jump of more than 256 bytes per key (a spill holds at least 2 x 2 panes of 64 B).
    jumps = [p for p in range(1, max_panes) if curve[p] - curve[p - 1] > 256]
    inline = jumps[0] if jumps else None
    top = inline or max_panes
    per_key = one["bytes"] / keys
    per_window = (curve[top - 1] - curve[0]) / (top - 1) if top > 1 else 0.0
    beyond = (curve[-1] - curve[inline - 1]) / (max_panes - inline) if inline and inline < max_panes else None
    return {
        "keys": keys,
        "final_only": final,
        "bytes_per_key": round(per_key, 1),
        "inline_panes": inline,
        "bytes_per_open_window": round(per_window, 1),
        "bytes_per_open_window_beyond_inline": None if beyond is None else round(beyond, 1),
        "state_bytes": one["bytes"],
        "rss_bytes_per_key": round(rss_one / keys, 1),
        "fill_events_per_s": round(keys / seconds),
        "multi_pane": {"keys": multi_keys, "bytes_per_key_by_open_panes": [round(b, 1) for b in curve]},
        "keys_after_watermark_passes": after["keys"],
        "bytes_after_watermark_passes": after["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=10_000_000)
    ap.add_argument("--max-panes", type=int, default=14, help="open panes per key at the end, 2..60")
    ap.add_argument("--final", action="store_true", help="the rule without early firing (final rows only)")
    args = ap.parse_args()
    if not 2 <= args.max_panes <= 60:
        ap.error("--max-panes must be in 2..60 (the allowed lateness of part 2 keeps 60 panes open)")
    r = measure(args.keys, args.max_panes, args.final)
    print(f"{'distinct keys':<34} {r['keys']:>14,}")
    print(f"{'state bytes (state_size)':<34} {r['state_bytes']:>14,}")
    print(f"{'bytes per key (one open window)':<34} {r['bytes_per_key']:>14,.1f}")
    print(f"{'RSS growth per key':<34} {r['rss_bytes_per_key']:>14,.1f}")
    print(f"{'inline panes per key':<34} {r['inline_panes']!s:>14}")
    print(f"{'bytes per open window (inline)':<34} {r['bytes_per_open_window']:>14,.1f}")
    beyond = r["bytes_per_open_window_beyond_inline"]
    print(f"{'bytes per open window beyond':<34} {'-' if beyond is None else f'{beyond:,.1f}':>14}")
    print(f"{'keys once the watermark passes':<34} {r['keys_after_watermark_passes']:>14,}")
    print(f"{'bytes once the watermark passes':<34} {r['bytes_after_watermark_passes']:>14,}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
