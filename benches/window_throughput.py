"""Window engine throughput: fraudstream against a plain-Python dict implementation.

Workload (DESIGN.md): HOP(5 min, 1 min) count + sum(amount) + count_distinct(country) per card,
100k skewed cards, 30 countries, 5 s bounded disorder, watermark = max event time - 5 s.
fraudstream processes numpy batches of 64k; the Python baseline runs per event on a prefix.
Both run in this process, on the same data, and must emit the same windows on the prefix.
The code is in ``fraudstream.benchmark`` (also behind ``fraudstream bench``).

    python benches/window_throughput.py [--events 10000000] [--python-events 1000000] [--max-keys N ...]

``--max-keys N`` (repeatable) runs fraudstream again under a cap of N live keys (``max_keys``) and
reports its rate as a ratio of the uncapped run.

Prints figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json

from fraudstream.benchmark import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--python-events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="fraudstream runs; the best is reported")
    ap.add_argument(
        "--max-keys", type=int, action="append", default=[], help="also run under this cap on live keys"
    )
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.python_events, args.repeat, max_keys=args.max_keys)))


if __name__ == "__main__":
    main()
