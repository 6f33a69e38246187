"""Restore time of a table from Kafka: ``--rows`` profiles read from a compacted topic.

Writes ``--rows`` profile records (``fraudstream produce --profiles``' encoding: card key,
home country, account opening, average amount, version time) into a fresh topic of
``--partitions`` partitions on the broker of ``FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS``, then
times what an instance does at start for a global table (``KafkaTable.load``: end offsets,
then every record decoded and applied until the table reached them), twice (a restart reads
the topic again). Beside it, in the same run: a bare confluent-kafka consume loop over the same
records (no decoding), the ceiling of the read.

    python benches/table_restore.py [--rows 1000000] [--partitions 6]

Prints figures; the last line is JSON. The topic is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import uuid

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream import _core
from fraudstream.config import Config, KafkaSection, TableSection
from fraudstream.kafka.produce import encode_profiles, send_record
from fraudstream.kafka.table_source import GLOBAL, KafkaTable

COLUMNS = ["home_country", "account_opened", "avg_amount"]


def write(bootstrap: str, topic: str, rows: int, partitions: int) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    compacted = {"cleanup.policy": "compact"}
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=compacted)
    admin.create_topics([new])[topic].result(30)
    rng = np.random.default_rng(3)
    now = int(time.time() * 1000)
    profiles = {
        "card_id": np.arange(rows, dtype=np.int64),
        "home_country": np.full(rows, _core.pack_code("FR"), np.int64),
        "account_opened": now - rng.integers(30, 5_000, rows) * 86_400_000,
        "avg_amount": np.round(rng.lognormal(3.5, 0.7, rows), 2),
    }
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    began = time.perf_counter()
    for key, value in encode_profiles(profiles, now):
        send_record(producer, topic, key, value)
    assert producer.flush(120) == 0
    return time.perf_counter() - began


def bare_read(bootstrap: str, topic: str, partitions: int, rows: int) -> float:
    settings = {"bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False}
    consumer = Consumer(settings)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    began, seen = time.perf_counter(), 0
    while seen < rows:
        seen += sum(1 for m in consumer.consume(50_000, timeout=1.0) if m.error() is None)
    elapsed = time.perf_counter() - began
    consumer.close()
    return elapsed


def restore(config: Config, topic: str, partitions: int) -> tuple[float, int]:
    table = KafkaTable("profiles", TableSection(topic=topic, columns=COLUMNS), config)
    began = time.perf_counter()
    table.load(list(range(partitions)), lambda _p: GLOBAL)
    elapsed = time.perf_counter() - began
    rows = table.rows()
    table.close()
    return elapsed, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()
    bootstrap = os.environ.get("FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topic = f"bench-table-restore-{uuid.uuid4().hex[:8]}"
    config = Config(kafka=KafkaSection(bootstrap_servers=bootstrap, group_id="bench-table"))
    try:
        wrote = write(bootstrap, topic, args.rows, args.partitions)
        bare = bare_read(bootstrap, topic, args.partitions, args.rows)
        runs = [restore(config, topic, args.partitions) for _ in range(2)]
    finally:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
    for _, rows in runs:
        assert rows == args.rows, f"the table holds {rows} rows, expected {args.rows}"
    best = min(s for s, _ in runs)
    figures = {
        "rows": args.rows,
        "partitions": args.partitions,
        "write_s": round(wrote, 2),
        "restore_s": [round(s, 2) for s, _ in runs],
        "restore_rows_per_s": round(args.rows / best),
        "bare_consume_s": round(bare, 2),
        "bare_consume_rows_per_s": round(args.rows / bare),
        "restore_vs_bare": round(bare / best, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"table restore, {args.rows:,} profile rows in {args.partitions} partitions (global placement)")
    print(f"  written in {wrote:.1f} s")
    print(f"  bare consume loop (no decoding)   {bare:6.2f} s  {args.rows / bare:>12,.0f} rows/s")
    for i, (s, _) in enumerate(runs):
        print(f"  KafkaTable.load, run {i + 1}          {s:6.2f} s  {args.rows / s:>12,.0f} rows/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
