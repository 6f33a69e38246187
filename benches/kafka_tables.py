"""The exactly-once Kafka pipeline with a global profiles table, beside the detector alone.

``--events`` generated transactions over 100k cards are pre-loaded into a 6-partition topic
(``kafka_ceiling.loaded_topic``) and every card's profile into a compacted 6-partition topic
(its home country the one the generator gives the card, 90% of its transactions there).
Then, alternately (``--repeat`` times each), one instance of the pipeline processes them all:

- the detector alone (the shipped default model);
- the detector behind a global profiles table (``detector.profiles_table``, the shipped profiles
  model): the table is loaded before the first transaction, and each batch's cards are looked up.

Events/s count from the first record consumed to the last commit (the table's load comes
before, and is printed on its own). Each run has its own group and output topics.

    python benches/kafka_tables.py [--events 300000] [--repeat 2]

The machine may be shared: compare the ratio within one run. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_ceiling import broker, loaded_topic, messages

from fraudstream import _core
from fraudstream.config import Config, DetectorSection, KafkaSection, TableSection
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.produce import encode_profiles, send_record
from fraudstream.kafka.schema import COUNTRIES

PROFILE_COLUMNS = ["home_country", "account_opened", "avg_amount"]


def profiles_topic(bootstrap: str, events: int) -> tuple[str, int]:
    """A compacted topic with a profile for every card of the pre-loaded transactions."""
    topic = f"bench-profiles-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=6, replication_factor=1, config={"cleanup.policy": "compact"})
    admin.create_topics([new])[topic].result(30)
    _keys, _values, cards = messages(events, seed=1)  # the cards of loaded_topic's transactions
    unique = np.unique(cards).astype(np.int64)
    rng = np.random.default_rng(5)
    codes = np.array([_core.pack_code(c) for c in COUNTRIES], np.int64)
    start = 1_700_000_000_000
    profiles = {
        "card_id": unique,
        # the home country card_transactions gives each card (90% of its transactions there)
        "home_country": codes[(unique * 2_654_435_761) % len(COUNTRIES)],
        "account_opened": start - rng.integers(30, 5_000, len(unique)) * 86_400_000,
        "avg_amount": np.round(rng.lognormal(3.5, 0.7, len(unique)), 2),
    }
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in encode_profiles(profiles, start):
        send_record(producer, topic, key, value)
    assert producer.flush(120) == 0
    return topic, len(unique)


def run(bootstrap: str, topic: str, n: int, table: str | None) -> dict[str, Any]:
    name = f"{topic}-{'table' if table else 'alone'}-{uuid.uuid4().hex[:4]}"
    section = KafkaSection.for_topic(
        bootstrap, topic, consume_batch=10_000, commit_max_records=200_000, replication_factor=1,
        min_insync_replicas=1, idle_timeout_ms=0,
    )  # fmt: skip
    k = section
    k.group_id, k.alerts_topic, k.scores_topic, k.dead_letter_topic, k.changelog_topic = (
        f"{name}-{s}" for s in ("group", "alerts", "scored", "dlq", "changelog")
    )
    config = Config(kafka=section, detector=DetectorSection(profiles_table="profiles" if table else ""))
    if table:
        config.tables = {"profiles": TableSection(topic=table, columns=PROFILE_COLUMNS)}
    pipeline = KafkaPipeline(config.validate())
    stats = pipeline.run(idle_exit_s=2.0)
    assert stats.consumed == n, stats.as_dict()
    loaded = pipeline.tables.stats().get("profiles", {})
    return {
        "events_per_s": n / stats.processing_seconds,
        "alerts": stats.alerts,
        "table_load_ms": loaded.get("load_ms"),
        "table_rows": loaded.get("loaded"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    bootstrap = broker()
    topic = loaded_topic(bootstrap, args.events)
    table, rows = profiles_topic(bootstrap, args.events)
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "table": []}
    try:
        for _ in range(args.repeat):  # alternated: the machine's load moves during the run
            runs["alone"].append(run(bootstrap, topic, args.events, None))
            runs["table"].append(run(bootstrap, topic, args.events, table))
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        existing = admin.list_topics(timeout=30).topics
        admin.delete_topics([t for t in existing if t.startswith((topic, table))])
    alone = statistics.median(r["events_per_s"] for r in runs["alone"])
    with_table = statistics.median(r["events_per_s"] for r in runs["table"])
    load_ms = statistics.median(r["table_load_ms"] for r in runs["table"])
    print(f"exactly-once pipeline, {args.events:,} transactions, 6 partitions, one instance")
    print(f"  detector alone                   {alone:>10,.0f} events/s")
    print(f"  detector + global profiles table {with_table:>10,.0f} events/s  ({with_table / alone:.2f}x)")
    print(f"  table of {rows:,} profiles loaded before processing in {load_ms:,.0f} ms (median)")
    print(
        json.dumps(
            {
                "events": args.events,
                "profiles": rows,
                "alone_events_per_s": round(alone),
                "table_events_per_s": round(with_table),
                "table_vs_alone": round(with_table / alone, 3),
                "table_load_ms": round(load_ms),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
