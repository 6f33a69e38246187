"""A transaction's round trips with librdkafka's default retry backoff and with the pipeline's.

Each transaction is what one pipeline commit does, with no processing: begin, produce 100
records to each of 6 partitions, ``send_offsets_to_transaction`` with a consumer's group
metadata, ``commit_transaction``, then the next one at once. Its first requests often find the
previous commit's markers still being written: the coordinator answers
CONCURRENT_TRANSACTIONS and the client retries after ``retry.backoff.ms``. The two producers
(librdkafka's default 100 ms, the pipeline's :func:`~fraudstream.kafka.transactions.producer_settings`)
alternate in rounds over the same broker, and the figures are per call, in ms.

    python benches/txn_round_trips.py [--transactions 400] [--rounds 2]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_ceiling import broker, new_topic

from fraudstream.config import Config
from fraudstream.kafka.transactions import producer_settings

PARTITIONS = 6
RECORDS_PER_PARTITION = 100
CALLS = ("send_offsets", "commit")


def member(bootstrap: str, topic: str) -> Consumer:
    """A consumer in a group of its own, assigned ``topic``: its metadata for the offsets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-group", "enable.auto.commit": False})
    c.subscribe([topic])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    return c


def run(producer: Producer, consumer: Consumer, topic: str, n: int) -> dict[str, np.ndarray[Any, Any]]:
    times: dict[str, list[float]] = {call: [] for call in CALLS}
    value = b"x" * 100
    for i in range(n):
        producer.begin_transaction()
        for partition in range(PARTITIONS):
            for _ in range(RECORDS_PER_PARTITION):
                producer.produce(topic, value, partition=partition)
        producer.poll(0)
        offsets = [TopicPartition(topic, p, i) for p in range(PARTITIONS)]
        t0 = time.perf_counter()
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        t1 = time.perf_counter()
        producer.commit_transaction(30)
        t2 = time.perf_counter()
        times["send_offsets"].append(t1 - t0)
        times["commit"].append(t2 - t1)
    return {call: np.array(v) * 1000 for call, v in times.items()}


def figures(ms: np.ndarray[Any, Any]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p95": round(float(np.percentile(ms, 95)), 1),
        "p99": round(float(np.percentile(ms, 99)), 1),
        "max": round(float(ms.max()), 1),
        "over_50ms": int((ms > 50).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=400, help="per producer and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bootstrap = broker()
    topic = new_topic(bootstrap, PARTITIONS)
    consumer = member(bootstrap, topic)
    config = Config()
    config.kafka.bootstrap_servers = bootstrap
    pipeline = {k: v for k, v in producer_settings(config).items() if k != "transactional.id"}
    variants = {"librdkafka_default": {**pipeline, "retry.backoff.ms": 100}, "pipeline": pipeline}
    results: dict[str, dict[str, list[np.ndarray[Any, Any]]]] = {v: {c: [] for c in CALLS} for v in variants}
    seconds = dict.fromkeys(variants, 0.0)
    for r in range(args.rounds):
        for name, settings in variants.items():
            producer = Producer({**settings, "transactional.id": f"{topic}-{name}-{r}"})
            producer.init_transactions(30)
            began = time.perf_counter()
            for call, ms in run(producer, consumer, topic, args.transactions).items():
                results[name][call].append(ms)
            seconds[name] += time.perf_counter() - began
            producer.flush(10)
    consumer.close()
    out: dict[str, Any] = {"transactions": args.transactions * args.rounds}
    for name in variants:
        per_s = args.transactions * args.rounds / seconds[name]
        out[name] = {
            "retry_backoff_ms": variants[name]["retry.backoff.ms"],
            "transactions_per_s": round(per_s, 1),
            **{call: figures(np.concatenate(results[name][call])) for call in CALLS},
        }
        parts = "; ".join(
            f"{call} p50 {f['p50']} p95 {f['p95']} p99 {f['p99']} max {f['max']} ms "
            f"({f['over_50ms']} over 50 ms)"
            for call in CALLS
            for f in [out[name][call]]
        )
        backoff = variants[name]["retry.backoff.ms"]
        print(f"{name:<19} (retry.backoff.ms {backoff}): {per_s:6.1f} transactions/s; {parts}")
    ratio = out["pipeline"]["transactions_per_s"] / out["librdkafka_default"]["transactions_per_s"]
    out["transactions_per_s_ratio"] = round(ratio, 2)
    print(f"transactions/s, the pipeline's settings / librdkafka's default: {ratio:.2f}x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
