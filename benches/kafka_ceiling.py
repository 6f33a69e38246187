"""The Kafka ceilings on this machine: what a Python consumer alone can do over a topic's records.

Two loops over the same pre-loaded records, with confluent-kafka and nothing of fraudstream:

- bare consume: ``consume(5000)`` and ``value()`` only, ``read_committed``; the most any
  Python consumer can read;
- bare exactly-once copy: consume, produce each value into a transaction (to the same
  partition of an output topic), and every 100 ms send the offsets and commit (KIP-447), as
  the pipeline does with one output record per input record and no processing at all.

Both are timed from the first record consumed to the last one read (consume) or committed
(copy). ``benches/kafka_e2e.py`` calls :func:`ceilings` over its own input in the same run and
prints its figures as ratios of them.

    python benches/kafka_ceiling.py [--events 500000]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.generator import card_transactions
from fraudstream.kafka.schema import encode_transactions

ROOT = Path(__file__).resolve().parent.parent
CONSUME_BATCH = 5000
COPY_COMMIT_INTERVAL_S = 0.1
DEADLINE_S = 300.0


def broker() -> str:
    """The project's broker (started when none is running); its bootstrap address."""
    out = subprocess.run([str(ROOT / "scripts/kafka"), "up"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def new_topic(bootstrap: str, partitions: int = 6) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result()
    time.sleep(1.0)
    return name


def messages(
    n: int, seed: int, bursts_every: int = 0
) -> tuple[list[bytes], list[bytes], np.ndarray[Any, Any]]:
    """Keys, JSON values and cards of ``n`` generated transactions over 100k cards."""
    data = card_transactions(n, cards=100_000, rate_per_s=10_000.0, seed=seed)
    if bursts_every:  # every k-th event is one of a burst card's 6 transactions in 4 countries
        idx = np.arange(0, n, bursts_every)
        burst = idx // (6 * bursts_every) % 1_000_000 + 5_000_000
        data["card"][idx] = burst
        data["country"][idx] = np.array([1, 5, 9, 14, 5, 1])[(idx // bursts_every) % 6]
    keys = [str(c).encode() for c in data["card"].tolist()]
    return keys, encode_transactions(data), data["card"]


def preload(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    for k, v in zip(keys, values, strict=True):
        while True:
            try:
                p.produce(topic, key=k, value=v)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)


def loaded_topic(bootstrap: str, n: int) -> str:
    """A new 6-partition topic holding ``n`` generated transactions."""
    topic = new_topic(bootstrap)
    keys, values, _ = messages(n, seed=1)
    preload(bootstrap, topic, keys, values)
    return topic


def reader(bootstrap: str, topic: str, role: str) -> Consumer:
    """A read_committed consumer of ``topic`` from the start, in a group of its own, with the
    pipeline's fetch sizes."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-{role}-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "max.partition.fetch.bytes": 8 << 20,
            "fetch.max.bytes": 64 << 20,
        }
    )
    c.subscribe([topic])
    return c


def bare_consume(bootstrap: str, topic: str, n: int) -> float:
    """Events/s of ``consume(5000)`` taking ``value()`` only, first record to last."""
    c = reader(bootstrap, topic, "bare")
    seen, first = 0, None
    deadline = time.monotonic() + DEADLINE_S
    while seen < n and time.monotonic() < deadline:
        msgs = c.consume(CONSUME_BATCH, timeout=0.01)
        if msgs and first is None:
            first = time.monotonic()
        for m in msgs:
            if m.error() is None:
                m.value()
                seen += 1
    last = time.monotonic()
    c.close()
    assert seen == n and first is not None, f"read {seen} of {n}"
    return n / max(last - first, 1e-9)


def bare_eos_copy(bootstrap: str, topic: str, n: int) -> float:
    """Events/s of an exactly-once copy: each value produced to the same partition of a new
    topic inside a transaction, offsets and commit every 100 ms; first record to last commit."""
    out_topic = new_topic(bootstrap)
    c = reader(bootstrap, topic, "copy")
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{out_topic}-copy",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "retry.backoff.ms": 10,  # as the pipeline's producer (benches/txn_round_trips.py)
        }
    )
    p.init_transactions(30)
    positions: dict[int, int] = {}
    seen, first, in_txn = 0, None, False
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal in_txn, last_commit
        offsets = [TopicPartition(topic, part, off) for part, off in sorted(positions.items())]
        p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        in_txn, last_commit = False, time.monotonic()

    deadline = time.monotonic() + DEADLINE_S
    while seen < n and time.monotonic() < deadline:
        msgs = c.consume(CONSUME_BATCH, timeout=0.01)
        if msgs:
            if first is None:
                first = time.monotonic()
            if not in_txn:
                p.begin_transaction()
                in_txn = True
            for m in msgs:
                if m.error() is not None:
                    continue
                part = m.partition()
                while True:
                    try:
                        p.produce(out_topic, value=m.value(), partition=part)
                        break
                    except BufferError:
                        p.poll(0.01)
                positions[part] = m.offset() + 1
                seen += 1
            p.poll(0)
        if in_txn and time.monotonic() - last_commit >= COPY_COMMIT_INTERVAL_S:
            commit()
    if in_txn:
        commit()
    last = time.monotonic()
    c.close()
    assert seen == n and first is not None, f"copied {seen} of {n}"
    return n / max(last - first, 1e-9)


def ceilings(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """Both ceilings over ``topic`` (which holds exactly ``n`` records), events/s."""
    return {
        "bare_consume_per_s": bare_consume(bootstrap, topic, n),
        "bare_eos_copy_per_s": bare_eos_copy(bootstrap, topic, n),
    }


def print_ceilings(figures: dict[str, float]) -> None:
    print(f"bare consume(5000) loop    : {figures['bare_consume_per_s']:>12,.0f} events/s (same records)")
    print(
        f"bare exactly-once copy loop: {figures['bare_eos_copy_per_s']:>12,.0f} events/s "
        f"= {figures['bare_eos_copy_per_s'] / figures['bare_consume_per_s']:.2f}x the bare consume loop"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    args = ap.parse_args()
    bootstrap = broker()
    figures = ceilings(bootstrap, loaded_topic(bootstrap, args.events), args.events)
    print_ceilings(figures)
    print(json.dumps({"events": args.events, **{k: round(v) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
