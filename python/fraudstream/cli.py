"""The ``fraudstream`` command.

Subcommands:
  demo      a short windowed aggregation over a generated card stream (no Kafka needed)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from fraudstream import __version__

EPILOG = """examples:
  fraudstream demo                  # windowed aggregation over 200k generated events
  fraudstream demo --events 1000000
  fraudstream --version
"""


def _demo(args: argparse.Namespace) -> int:
    from fraudstream import EmitKind, WindowedAggregation, hopping
    from fraudstream.generator import card_transactions

    data = card_transactions(args.events, cards=20_000, rate_per_s=2_000.0, seed=args.seed)
    # the story's pattern, compressed: one card, 6 transactions in 4 countries within 4 minutes
    incident_card = 10**9
    t_mid = int(np.median(data["ts"]))
    burst = {
        "card": np.full(6, incident_card),
        "ts": t_mid + np.arange(6, dtype=np.int64) * 40_000,
        "amount": np.array([4.99, 12.0, 8.5, 19.9, 3.2, 7.7]),
        "country": np.array([1, 7, 12, 19, 7, 1]),
    }
    order = np.argsort(np.concatenate([data["ts"], burst["ts"]]), kind="stable")
    columns = {k: np.concatenate([data[k], burst[k]])[order] for k in data}
    agg = WindowedAggregation(
        key="card",
        time="ts",
        window=hopping("5m", "1m"),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness="5s",
        early_fire="countries >= 3 and n >= 5",
    )
    n = len(columns["ts"])
    began = time.perf_counter()
    outputs = [
        agg.process({k: v[lo : lo + 65_536] for k, v in columns.items()}) for lo in range(0, n, 65_536)
    ]
    outputs.append(agg.flush())
    elapsed = time.perf_counter() - began
    alerts = [r for o in outputs for r in o.rows() if r["kind"] == EmitKind.EARLY]
    alerted_cards = sorted({r["key"] for r in alerts})
    windows = sum(len(o) for o in outputs) - len(alerts)
    print(f"fraudstream {__version__}: HOP(5 min, 1 min) count + sum + count_distinct per card")
    print(
        f"  {n:,} events in {elapsed * 1000:.1f} ms ({n / elapsed / 1e6:.1f}M events/s), "
        f"{windows:,} windows emitted"
    )
    print(f"  early alerts where countries >= 3 and n >= 5: {len(alerts)} on {len(alerted_cards)} cards")
    for r in [a for a in alerts if a["key"] == incident_card][:1]:
        print(
            f"  injected incident caught: card {r['key']}, {r['n']} transactions in {r['countries']} "
            f"countries, {r['total']:.2f} total, window [{r['window_start']}, {r['window_end']})"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudstream",
        description="Rust-accelerated stream processing for real-time fraud detection.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fraudstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ex = sub.add_parser("demo", help="windowed aggregation over a generated stream")
    ex.add_argument("--events", type=int, default=200_000, help="events to generate")
    ex.add_argument("--seed", type=int, default=7, help="random seed")
    ex.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
