"""The ``fraudstream`` command.

Subcommands:
  demo      a short windowed aggregation over a generated card stream (no Kafka needed)
  run       the exactly-once Kafka pipeline (``--config fraudstream.toml``)
  produce   load generator: seeded transactions into a Kafka topic at a given rate

Exit codes: 0 success, 2 configuration error, 3 Kafka connection error, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from fraudstream import __version__

EPILOG = """examples:
  fraudstream demo                  # windowed aggregation over 200k generated events
  fraudstream demo --events 1000000
  fraudstream produce --topic transactions --events 100000 --rate 20000
  fraudstream run --config fraudstream.toml
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


def _run(args: argparse.Namespace) -> int:
    import signal

    from fraudstream.config import load_config
    from fraudstream.kafka.pipeline import KafkaPipeline

    config = load_config(args.config)
    if args.metrics_port is not None:
        config.metrics.port = args.metrics_port
    pipeline = KafkaPipeline(config)
    if pipeline.metrics.port:
        logging.getLogger("fraudstream").info("metrics on http://127.0.0.1:%d/metrics", pipeline.metrics.port)

    def on_signal(signum: int, frame: object) -> None:
        logging.getLogger("fraudstream").info("signal %d: finishing the open transaction", signum)
        pipeline.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = pipeline.run(idle_exit_s=args.idle_exit, max_seconds=args.max_seconds)
    print(json.dumps(stats.as_dict()))
    return 0


def _produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from fraudstream.generator import card_transactions
    from fraudstream.kafka.schema import encode_transactions

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.topic not in admin.list_topics(timeout=10).topics:
        futures = admin.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)]
        )
        for future in futures.values():
            future.result()
    data = card_transactions(args.events, cards=args.cards, rate_per_s=args.rate or 10_000.0, seed=args.seed)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    began = time.perf_counter()
    chunk = 10_000
    for lo in range(0, args.events, chunk):
        cols = {k: v[lo : lo + chunk] for k, v in data.items()}
        for key, value in zip(cols["card"].tolist(), encode_transactions(cols, first_txn_id=lo), strict=True):
            while True:
                try:
                    producer.produce(args.topic, key=str(key).encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        if args.rate:
            ahead = (lo + chunk) / args.rate - (time.perf_counter() - began)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(60)
    elapsed = time.perf_counter() - began
    print(
        f"produced {args.events:,} transactions to {args.topic} in {elapsed:.1f} s "
        f"({args.events / elapsed:,.0f}/s)"
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

    run = sub.add_parser("run", help="the exactly-once Kafka pipeline")
    run.add_argument("--config", help="TOML configuration file (environment: FRAUDSTREAM_<SECTION>_<KEY>)")
    run.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many seconds without input"
    )
    run.add_argument("--max-seconds", type=float, default=None, help="exit after this many seconds")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    run.set_defaults(run=_run)

    prod = sub.add_parser("produce", help="load generator into a Kafka topic")
    prod.add_argument("--bootstrap", default="127.0.0.1:9092")
    prod.add_argument("--topic", default="transactions")
    prod.add_argument("--events", type=int, default=100_000)
    prod.add_argument("--cards", type=int, default=10_000)
    prod.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    prod.add_argument("--partitions", type=int, default=6, help="partitions when the topic is created")
    prod.add_argument("--seed", type=int, default=0)
    prod.set_defaults(run=_produce)
    from fraudstream.fraud.cli import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fraudstream.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        result: int = args.run(args)
    except ConfigError as exc:
        print(f"fraudstream: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__module__.startswith("confluent_kafka") or "Kafka" in type(exc).__name__:
            print(f"fraudstream: Kafka error: {exc}", file=sys.stderr)
            return 3
        raise
    return result


if __name__ == "__main__":
    sys.exit(main())
