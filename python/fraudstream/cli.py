"""The ``fraudstream`` command.

Subcommands:
  demo      fraud detection on a generated card stream with injected fraud (no Kafka needed)
  run       the exactly-once Kafka pipeline (``--config fraudstream.toml``)
  produce   load generator: seeded transactions into a Kafka topic at a given rate
  bench     the window engine against a plain-Python loop on the same data

Exit codes: 0 success, 2 configuration error, 3 Kafka connection error, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from fraudstream import __version__

EPILOG = """examples:
  fraudstream demo                  # catch injected fraud in 200k generated transactions
  fraudstream demo --events 1000000 --rate 50000 --out /tmp/demo
  fraudstream produce --topic transactions --events 100000 --rate 20000
  fraudstream run --config fraudstream.toml
  fraudstream --version
"""


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fraudstream.demo import DemoOptions, run_demo
    from fraudstream.errors import ConfigError

    if args.events < 1_000:
        raise ConfigError(f"--events must be at least 1000, got {args.events}")
    if args.rate is not None and args.rate <= 0:
        raise ConfigError(f"--rate must be > 0, got {args.rate}")
    options = DemoOptions(
        events=args.events,
        seed=args.seed,
        rate=args.rate,
        out=Path(args.out),
        progress=not args.no_progress,
        model=None if args.model is None else Path(args.model),
    )
    try:
        result = run_demo(options)
    except KeyboardInterrupt:
        print("fraudstream demo: interrupted", file=sys.stderr)
        return 130
    return 0 if result.summary["incident_detected"] else 1


def _run(args: argparse.Namespace) -> int:
    from fraudstream.config import load_config
    from fraudstream.kafka.pipeline import KafkaPipeline

    config = load_config(args.config)
    if args.metrics_port is not None:
        config.metrics.port = args.metrics_port
    pipeline = KafkaPipeline(config)
    k = config.kafka
    logger = logging.getLogger("fraudstream")
    logger.info(
        "running %s on %s at %s: alerts -> %s, scored transactions -> %s, dead letters -> %s "
        "(blocks until SIGTERM/Ctrl-C%s)",
        config.detector.kind,
        k.input_topic,
        k.bootstrap_servers,
        k.alerts_topic,
        k.scores_topic or "off",
        k.dead_letter_topic,
        "" if args.idle_exit is None else f", or {args.idle_exit:g} s without input",
    )
    if pipeline.metrics.port:
        logger.info("metrics on http://127.0.0.1:%d/metrics", pipeline.metrics.port)

    # SIGTERM/SIGINT finish the open transaction; a stuck client or shutdown ends the process
    pipeline.watchdog.handle_signals()
    pipeline.watchdog.start()
    try:
        stats = pipeline.run(idle_exit_s=args.idle_exit, max_seconds=args.max_seconds)
    finally:
        pipeline.watchdog.close()
    print(json.dumps(stats.as_dict()))
    return 0


def _produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from fraudstream.errors import ConfigError
    from fraudstream.generator import labelled_transactions
    from fraudstream.kafka.schema import encode_transactions

    if args.events < 1 or args.cards < 1:
        raise ConfigError(f"--events and --cards must be >= 1, got {args.events} and {args.cards}")
    if not 0.0 <= args.fraud_share < 0.5:
        raise ConfigError(f"--fraud-share must be in [0, 0.5), got {args.fraud_share}")
    if args.days is not None and args.days * 24 < 1:
        raise ConfigError(f"--days must span at least an hour, got {args.days}")
    try:
        traffic = labelled_transactions(
            args.events, cards=args.cards, days=args.days, compromised=args.fraud_share, seed=args.seed
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    stats = traffic.statistics()
    times = traffic.columns["event_time"]
    # event times end now (or start at --start-ms): a pipeline's wall-clock idle ticks and
    # watermark-lag metrics then read this traffic as live
    shift = (
        args.start_ms - int(times.min())
        if args.start_ms is not None
        else int(time.time() * 1000) - int(times.max())
    )
    traffic.columns["event_time"] = times + shift
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.topic not in admin.list_topics(timeout=10).topics:
        futures = admin.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)]
        )
        for future in futures.values():
            future.result()
    data = traffic.columns if args.labels else {k: v for k, v in traffic.columns.items() if k != "fraud"}
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    began = time.perf_counter()
    chunk = 10_000
    for lo in range(0, args.events, chunk):
        cols = {k: v[lo : lo + chunk] for k, v in data.items()}
        for key, value in zip(cols["card_id"].tolist(), encode_transactions(cols), strict=True):
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
        f"({args.events / elapsed:,.0f}/s): {stats['days']:.1f} days of event time on {args.cards:,} cards, "
        f"{stats['compromised_cards']} compromised ({stats['compromised_share']:.2%}), "
        f"{stats['fraudulent_transactions']:,} fraudulent transactions"
        + ("" if args.labels else " (labels not sent)")
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from fraudstream.benchmark import run

    print(json.dumps(run(args.events, args.python_events, args.repeat)))
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
    ex = sub.add_parser(
        "demo",
        help="fraud detection on a generated stream, in process (no Kafka)",
        description="Generates a seeded card-transaction stream with injected fraud (the story's "
        "incident, fast bursts, spend sprees), runs it through the pipeline (features, rules, model) "
        "and prints what was caught, how fast, and precision/recall; writes alerts.jsonl, summary.json "
        "and demo.png (with the plot extra) to --out.",
    )
    ex.add_argument("--events", type=int, default=200_000, help="transactions to generate (default 200000)")
    ex.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ex.add_argument(
        "--rate",
        type=float,
        default=None,
        help="pace the stream at this many events/s (default: as fast as possible)",
    )
    ex.add_argument(
        "--out", default="fraudstream-demo-out", help="output directory (default ./fraudstream-demo-out)"
    )
    ex.add_argument("--no-progress", action="store_true", help="no progress line or log lines while running")
    ex.add_argument("--model", default=None, help="a JSON model file (default: train one at start)")
    ex.set_defaults(run=_demo)

    run = sub.add_parser(
        "run",
        help="the exactly-once Kafka pipeline",
        description="Consumes JSON transactions, runs the [detector] section's processor (by default "
        "the fraud detector: rules, streaming features and the shipped model) on each input partition, "
        "and commits the alerts, one scored record per transaction, the dead letters, the state "
        "changelog and the input offsets in one Kafka transaction per interval. Blocks until "
        "SIGTERM/Ctrl-C (which commit the open interval first), --idle-exit or --max-seconds.",
    )
    run.add_argument("--config", help="TOML configuration file (environment: FRAUDSTREAM_<SECTION>_<KEY>)")
    run.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many seconds without input"
    )
    run.add_argument("--max-seconds", type=float, default=None, help="exit after this many seconds")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    run.set_defaults(run=_run)

    prod = sub.add_parser(
        "produce",
        help="labelled card traffic into a Kafka topic",
        description="Sends seeded, realistic card transactions (fraudstream.generator."
        "labelled_transactions) keyed by card: normal cards with home countries, travel and "
        "heavy-tailed activity, and --fraud-share of the cards compromised (bursts across countries, "
        'slow spreads, card testing, sprees, cash-outs). Each message carries its label as "fraud": 0|1 '
        "(ignored by the decoder) for evaluating alerts against.",
    )
    prod.add_argument("--bootstrap", default="127.0.0.1:9092")
    prod.add_argument("--topic", default="transactions")
    prod.add_argument("--events", type=int, default=100_000)
    prod.add_argument("--cards", type=int, default=10_000)
    prod.add_argument(
        "--fraud-share", type=float, default=0.003, help="share of the cards compromised (default 0.003)"
    )
    prod.add_argument(
        "--days",
        type=float,
        default=None,
        help="days of event time (default: events / (cards * 3), three transactions per card a day)",
    )
    prod.add_argument(
        "--no-labels", dest="labels", action="store_false", help='leave the "fraud" label out of the messages'
    )
    prod.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    prod.add_argument("--partitions", type=int, default=6, help="partitions when the topic is created")
    prod.add_argument("--seed", type=int, default=0)
    prod.add_argument(
        "--start-ms",
        type=int,
        default=None,
        help="event time of the first transaction, epoch ms (default: the traffic ends now)",
    )
    prod.set_defaults(run=_produce)

    bench = sub.add_parser("bench", help="the window engine against a plain-Python loop, in this run")
    bench.add_argument("--events", type=int, default=2_000_000)
    bench.add_argument("--python-events", type=int, default=300_000)
    bench.add_argument("--repeat", type=int, default=3)
    bench.set_defaults(run=_bench)
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
