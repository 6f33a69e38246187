"""Prints the committed alerts of a topic, as a ``read_committed`` consumer sees them
(``fraudstream alerts`` does the same and more), and reads topics to their end for the checks
of the tests and the chaos benchmark.

python -m fraudstream.kafka.read_alerts [--topic alerts] [--bootstrap HOST:PORT] [--follow]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition


def data_messages(msgs: list[Message], pending: set[int]) -> Iterator[Message]:
    """The messages of a ``consume()`` call that carry data, for a reader with
    ``enable.partition.eof``: an end-of-partition event removes its partition from ``pending``;
    any other error raises."""
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition() or 0)
                continue
            raise KafkaException(err)
        yield m


def read_to_end(
    bootstrap: str, topic: str, partitions: int, committed: bool = True, timeout: float = 120.0
) -> list[Message]:
    """Every record of ``topic`` up to its current end (``read_committed`` unless ``committed``
    is false), in partition then offset order: what the checks of the tests and the chaos
    benchmark compare."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-to-end-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 << 20,
            "error_cb": lambda err: None,  # transient; the deadline reports a failure
        }
    )
    try:
        assignment = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        pending = {tp.partition for tp in assignment}
        out: dict[int, list[Message]] = defaultdict(list)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} did not reach their end")
            for m in data_messages(consumer.consume(2_000, timeout=0.5), pending):
                out[m.partition() or 0].append(m)
        return [m for p in sorted(out) for m in out[p]]
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    """The older spelling of ``fraudstream alerts`` (:mod:`fraudstream.kafka.reader`), kept working."""
    from fraudstream.config import load_config
    from fraudstream.errors import ConfigError, StreamError
    from fraudstream.kafka.connect import KafkaUnreachableError
    from fraudstream.kafka.reader import print_records

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--bootstrap", default=None, help="brokers (default: FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS)"
    )
    ap.add_argument("--topic", default=None, help="topic to read (default: kafka.alerts_topic)")
    ap.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    args = ap.parse_args(argv)
    try:
        config = load_config(
            None, overrides={"kafka": {"bootstrap_servers": args.bootstrap, "alerts_topic": args.topic}}
        )
        print_records(config, "alerts", follow=args.follow, fmt="json")
    except ConfigError as exc:
        print(f"read_alerts: configuration error: {exc}", file=sys.stderr)
        return 2
    except KafkaUnreachableError as exc:
        print(f"read_alerts: Kafka error: {exc}", file=sys.stderr)
        return 3
    except StreamError as exc:
        print(f"read_alerts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
