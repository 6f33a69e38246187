"""The ``fraudstream`` command.

Subcommands:
  demo      fraud detection on a generated card stream with injected fraud (no Kafka needed)
  run       the exactly-once Kafka pipeline (``--config fraudstream.toml``)
  produce   load generator: seeded transactions into a Kafka topic at a given rate
  alerts    the committed alerts (scored transactions, dead letters) as a reader sees them
  view      a view topic's latest row per window (``kafka.view_topic``), as a reader sees it
  simulate  the handbook's transaction simulator, to a parquet file
  bench     the window engine against a plain-Python loop on the same data

The brokers: ``--bootstrap``, else ``FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS``, else the
configuration file's ``kafka.bootstrap_servers``, else 127.0.0.1:9092.

Exit codes: 0 success, 2 configuration error, 3 Kafka connection error, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fraudstream import __version__

if TYPE_CHECKING:
    from fraudstream.config import Config

EPILOG = """examples:
  fraudstream demo                  # catch injected fraud in 200k generated transactions
  fraudstream demo --events 1000000 --rate 50000 --out /tmp/demo
  export FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS=$(scripts/kafka up)
  fraudstream produce --config examples/fraudstream.toml --events 100000 --rate 20000
  fraudstream run --config examples/fraudstream.toml --idle-exit 10
  fraudstream alerts --config examples/fraudstream.toml
  fraudstream simulate --handbook --out handbook.parquet
  fraudstream --version

the brokers (produce, run, alerts): --bootstrap HOST:PORT, else FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS,
else kafka.bootstrap_servers of the --config file, else 127.0.0.1:9092
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
    from fraudstream.kafka.connect import check_brokers
    from fraudstream.kafka.pipeline import KafkaPipeline
    from fraudstream.kafka.status import StatusReporter
    from fraudstream.kafka.topics import client_config

    config = load_config(args.config, overrides=_kafka_overrides(args))
    if args.metrics_port is not None:
        config.metrics.port = args.metrics_port
    # the configuration's own errors first (exit 2: a bad rule, a metrics port in use), whether
    # or not a broker answers; building the pipeline connects to nothing yet
    pipeline = KafkaPipeline(config)
    check_brokers(client_config(config))  # an unreachable address: one line, exit 3, in seconds
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
        logger.info("metrics on http://%s:%d/metrics", config.metrics.host, pipeline.metrics.port)

    # SIGTERM/SIGINT finish the open transaction; a stuck client or shutdown ends the process
    pipeline.watchdog.handle_signals()
    pipeline.watchdog.start()
    show_status = sys.stderr.isatty() if args.status is None else args.status
    status = StatusReporter(pipeline, args.status_interval).start() if show_status else None
    try:
        stats = pipeline.run(idle_exit_s=args.idle_exit, max_seconds=args.max_seconds)
    finally:
        if status is not None:
            status.close()
        pipeline.watchdog.close()
    tables = {"tables": pipeline.tables.stats()} if pipeline.tables.tables else {}  # rows, restore ms
    print(json.dumps({**stats.as_dict(), **tables}))
    return 0


def _kafka_overrides(args: argparse.Namespace, **kafka: object) -> dict[str, dict[str, object]]:
    """Command-line settings that win over the environment and the file (``--bootstrap``...)."""
    return {"kafka": {"bootstrap_servers": getattr(args, "bootstrap", None), **kafka}}


def _produce(args: argparse.Namespace) -> int:
    from fraudstream.config import load_config
    from fraudstream.kafka.produce import ProduceOptions, produce

    config = load_config(args.config, overrides=_kafka_overrides(args, input_topic=args.topic))
    options = ProduceOptions(
        events=args.events,
        cards=args.cards,
        fraud_share=args.fraud_share,
        days=args.days,
        labels=args.labels,
        rate=args.rate,
        partitions=args.partitions,
        seed=args.seed,
        start_id=args.start_id,
        start_time=str(args.start_ms) if args.start_ms is not None else args.start_time,
        profiles_topic=_profiles_topic(config, args.profiles),
    )
    produce(config, options)
    return 0


def _profiles_topic(config: Config, given: str | None) -> str | None:
    """``--profiles [TOPIC]``: the topic named, else the topic of ``detector.profiles_table``,
    else ``profiles``; None without the option."""
    if given is None or given:
        return given
    table = config.tables.get(config.detector.profiles_table)
    return table.topic if table is not None else "profiles"


def _alerts(args: argparse.Namespace) -> int:
    from fraudstream.config import load_config
    from fraudstream.kafka.reader import print_records

    kind = "scores" if args.scores else "dead-letters" if args.dead_letters else "alerts"
    topic_key = {"alerts": "alerts_topic", "scores": "scores_topic", "dead-letters": "dead_letter_topic"}
    overrides = _kafka_overrides(args, **{topic_key[kind]: args.topic})
    config = load_config(args.config, overrides=overrides)
    print_records(config, kind, follow=args.follow, fmt=args.format, limit=args.max)
    return 0


def _view(args: argparse.Namespace) -> int:
    from fraudstream.config import load_config
    from fraudstream.kafka.view_reader import print_view

    config = load_config(args.config, overrides=_kafka_overrides(args, view_topic=args.topic))
    print_view(config, combined=args.combine, fmt=args.format)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from fraudstream.errors import ConfigError
    from fraudstream.fraud.handbook_simulator import SimulatorOptions, simulate_to_parquet

    if not args.handbook:
        raise ConfigError("choose a simulator: --handbook (the only one so far)")
    options = SimulatorOptions(
        customers=args.customers, terminals=args.terminals, days=args.days, start_date=args.start_date
    )
    simulate_to_parquet(options, args.out)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from fraudstream.benchmark import run

    print(json.dumps(run(args.events, args.python_events, args.repeat)))
    return 0


def _bootstrap_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT[,...]",
        help="the brokers (default: FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS, else the config file, "
        "else 127.0.0.1:9092)",
    )


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
        "SIGTERM/Ctrl-C (which commit the open interval first), --idle-exit or --max-seconds; on a terminal "
        "it prints a status line every few seconds (consumed/s, alerts, lag, commit p99, watermark), and "
        "its last line is the run's counters as JSON. A broker that does not answer within 8 s: one line "
        "naming its address, exit status 3.",
    )
    run.add_argument("--config", help="TOML configuration file (environment: FRAUDSTREAM_<SECTION>_<KEY>)")
    _bootstrap_arg(run)
    run.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many seconds without input"
    )
    run.add_argument("--max-seconds", type=float, default=None, help="exit after this many seconds")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    run.add_argument(
        "--status",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a status line every few seconds on stderr (default: when stderr is a terminal)",
    )
    run.add_argument(
        "--status-interval", type=float, default=5.0, help="seconds between status lines (default 5)"
    )
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
    prod.add_argument("--config", help="TOML configuration file: the brokers, the input topic, replication")
    _bootstrap_arg(prod)
    prod.add_argument(
        "--topic", default=None, help="topic to send to (default: kafka.input_topic, transactions)"
    )
    prod.add_argument("--events", type=int, default=100_000, help="transactions to send (default 100000)")
    prod.add_argument("--cards", type=int, default=10_000, help="cards (default 10000)")
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
    prod.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="records per second of wall clock, paced smoothly (0: as fast as possible)",
    )
    prod.add_argument(
        "--partitions", type=int, default=6, help="partitions when the topic is created (default 6)"
    )
    prod.add_argument("--seed", type=int, default=0, help="random seed of the traffic (default 0)")
    prod.add_argument(
        "--start-id",
        type=int,
        default=None,
        help="first transaction id (default: after the highest id at the end of the topic, so runs continue)",
    )
    prod.add_argument(
        "--start-time",
        default=None,
        help="first event time: 'now', ISO 8601 (UTC unless it says) or epoch ms "
        "(default: the traffic ends now)",
    )
    prod.add_argument("--start-ms", type=int, default=None, help=argparse.SUPPRESS)  # older spelling
    prod.add_argument(
        "--profiles",
        nargs="?",
        const="",
        default=None,
        metavar="TOPIC",
        help="also send the cards' profiles (home country, account opening, average amount) to a compacted "
        "topic, before the transactions (default topic: that of detector.profiles_table, else 'profiles')",
    )
    prod.set_defaults(run=_produce)

    al = sub.add_parser(
        "alerts",
        help="the committed alerts (or scored transactions, dead letters)",
        description="Prints the records the pipeline committed to its alerts topic (--scores: the scored "
        "transactions, --dead-letters: the dead letters), read with isolation.level=read_committed from the "
        "beginning of every partition: what any downstream consumer sees. Stops at the end of the topic "
        "and says how many it read, or with --follow keeps printing new ones until Ctrl-C. Joins no "
        "consumer group and commits nothing.",
    )
    al.add_argument("--config", help="TOML configuration file: the brokers and the topic names")
    _bootstrap_arg(al)
    which = al.add_mutually_exclusive_group()
    which.add_argument("--scores", action="store_true", help="the scored transactions (kafka.scores_topic)")
    which.add_argument(
        "--dead-letters", action="store_true", help="the dead letters (kafka.dead_letter_topic)"
    )
    al.add_argument("--topic", default=None, help="read this topic instead of the configured one")
    al.add_argument("--follow", "-f", action="store_true", help="keep printing newly committed records")
    al.add_argument(
        "--format",
        choices=("json", "table"),
        default=None,
        help="JSON lines or a readable table (default: a table on a terminal, JSON lines otherwise)",
    )
    al.add_argument("--max", type=int, default=None, help="stop after this many records")
    al.set_defaults(run=_alerts)

    vw = sub.add_parser(
        "view",
        help="the latest committed row per window of a view topic",
        description="Reads a view topic (kafka.view_topic: the window results the pipeline publishes, "
        "see [view]) with isolation.level=read_committed from the beginning of every partition, and "
        "prints the latest row per key: what the compacted topic keeps, a FINAL row or the UPDATE that "
        "corrected it. Each row is the part of one input partition; --combine adds the parts up per key "
        "and window (count, sum, min, max). Joins no consumer group and commits nothing.",
    )
    vw.add_argument("--config", help="TOML configuration file: the brokers, the topic, the [view] section")
    _bootstrap_arg(vw)
    vw.add_argument("--topic", default=None, help="read this topic instead of kafka.view_topic")
    vw.add_argument("--combine", action="store_true", help="add up the input partitions' parts per window")
    vw.add_argument(
        "--format",
        choices=("json", "table"),
        default=None,
        help="JSON lines or a readable table (default: a table on a terminal, JSON lines otherwise)",
    )
    vw.set_defaults(run=_view)

    sim = sub.add_parser(
        "simulate",
        help="the handbook's transaction simulator, to a parquet file",
        description="Runs the transaction data simulator of 'Reproducible Machine Learning for Credit Card "
        "Fraud Detection - Practical Handbook' (chapter 3.2): customer and terminal profiles on a 100x100 "
        "grid, transactions of each customer at terminals within radius 5, and its three fraud scenarios "
        "(amounts above 220; two compromised terminals a day for 28 days; three compromised customers a "
        "day for 14 days, a third of their transactions at 5x the amount). With the defaults it draws "
        "the same random numbers as the handbook's code, so it reproduces the published dataset; the "
        "file is in the format fraudstream evaluate/train/features read (--data).",
    )
    sim.add_argument("--handbook", action="store_true", help="the handbook's simulator (required)")
    sim.add_argument("--out", required=True, help="parquet file to write")
    sim.add_argument("--customers", type=int, default=5_000, help="customers (default 5000)")
    sim.add_argument("--terminals", type=int, default=10_000, help="terminals (default 10000)")
    sim.add_argument("--days", type=int, default=183, help="days (default 183)")
    sim.add_argument("--start-date", default="2018-04-01", help="first day (default 2018-04-01)")
    sim.set_defaults(run=_simulate)

    bench = sub.add_parser("bench", help="the window engine against a plain-Python loop, in this run")
    bench.add_argument("--events", type=int, default=2_000_000)
    bench.add_argument("--python-events", type=int, default=300_000)
    bench.add_argument("--repeat", type=int, default=3)
    bench.set_defaults(run=_bench)
    from fraudstream.fraud.cli import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fraudstream.errors import ConfigError, StreamError

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
        if isinstance(exc, StreamError):  # said in one line, as the others
            print(f"fraudstream: error: {exc}", file=sys.stderr)
            return 1
        raise
    return result


if __name__ == "__main__":
    sys.exit(main())
