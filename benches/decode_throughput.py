"""JSON transaction decoding: the Rust decoder against msgspec, in the same run.

Both turn a batch of Kafka message values into the columns the engine takes (with validation:
types, ranges, country codes). msgspec decodes each message into a typed Struct; the columns
are then built with numpy.

    python benches/decode_throughput.py [--messages 1000000]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import msgspec
import numpy as np

from fraudstream.generator import card_transactions
from fraudstream.kafka.schema import decode_batch, encode_transactions


class Txn(msgspec.Struct):
    txn_id: int
    card_id: int
    customer_id: int
    terminal_id: int
    amount: float
    currency: str
    country: str
    merchant: str
    event_time: int


def with_msgspec(values: list[bytes]) -> dict[str, np.ndarray]:
    decoder = msgspec.json.Decoder(Txn)
    rows, bad = [], []
    for i, v in enumerate(values):
        try:
            t = decoder.decode(v)
        except msgspec.DecodeError as exc:
            bad.append((i, str(exc)))
            continue
        if t.amount < 0 or len(t.country) != 2 or not t.country.isalpha():
            bad.append((i, "out of range"))
            continue
        rows.append(t)
    return {
        "txn_id": np.fromiter((t.txn_id for t in rows), np.int64, len(rows)),
        "card_id": np.fromiter((t.card_id for t in rows), np.int64, len(rows)),
        "amount": np.fromiter((t.amount for t in rows), np.float64, len(rows)),
        "country": np.fromiter(
            (ord(t.country[0]) << 8 | ord(t.country[1]) for t in rows), np.int64, len(rows)
        ),
        "event_time": np.fromiter((t.event_time for t in rows), np.int64, len(rows)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    args = ap.parse_args()
    values = encode_transactions(card_transactions(args.messages, seed=3))
    batches = [values[i : i + args.batch] for i in range(0, len(values), args.batch)]
    results = {}
    for name, fn in (("rust", lambda b: decode_batch(b)), ("msgspec", with_msgspec)):
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for b in batches:
                fn(b)
            best = min(best, time.perf_counter() - began)
        results[name] = args.messages / best
        print(f"{name:8}: {results[name]:>12,.0f} messages/s")
    print(f"rust / msgspec: {results['rust'] / results['msgspec']:.2f}x")
    print(
        json.dumps(
            {
                "rust_messages_per_s": round(results["rust"]),
                "msgspec_messages_per_s": round(results["msgspec"]),
                "ratio": round(results["rust"] / results["msgspec"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
