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

    rng = np.random.default_rng(args.seed)
    n = args.events
    start = 1_700_000_000_000
    times = start + np.arange(n, dtype=np.int64) * 10 + rng.integers(0, 5_000, n)
    cards = rng.integers(0, 10_000, n)
    countries = rng.integers(0, 30, n)
    # the story's pattern, compressed: one card, 6 transactions in 4 countries in 4 minutes
    burst_t = start + n * 5 + np.arange(6, dtype=np.int64) * 40_000
    times = np.concatenate([times, burst_t])
    cards = np.concatenate([cards, np.full(6, 424242)])
    countries = np.concatenate([countries, np.array([1, 7, 12, 19, 7, 1])])
    amounts = rng.gamma(2.0, 25.0, len(times)).round(2)
    agg = WindowedAggregation(
        key="card",
        time="ts",
        window=hopping("5m", "1m"),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness="5s",
        early_fire="countries >= 3 and n >= 5",
    )
    order = np.argsort(times, kind="stable")
    columns = {
        "card": cards[order],
        "ts": times[order],
        "amount": amounts[order],
        "country": countries[order],
    }
    began = time.perf_counter()
    outputs = []
    for lo in range(0, len(times), 65_536):
        outputs.append(agg.process({k: v[lo : lo + 65_536] for k, v in columns.items()}))
    outputs.append(agg.flush())
    elapsed = time.perf_counter() - began
    alerts = [r for o in outputs for r in o.rows() if r["kind"] == EmitKind.EARLY]
    windows = sum(len(o) for o in outputs) - len(alerts)
    print(f"fraudstream {__version__}: HOP(5 min, 1 min) count + sum + count_distinct per card")
    print(
        f"  {len(times):,} events in {elapsed * 1000:.1f} ms "
        f"({len(times) / elapsed / 1e6:.1f}M events/s), {windows:,} windows emitted"
    )
    print(f"  {len(alerts)} early alerts where countries >= 3 and n >= 5:")
    for r in alerts[:5]:
        print(
            f"    card {r['key']}: {r['n']} transactions, {r['countries']} countries, "
            f"{r['total']:.2f} in [{r['window_start']}, {r['window_end']})"
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
