"""Hostile input through the real broker (issue 15): over a hundred bad records among good
traffic, and records too large for the dead-letter topic. Each bad record is dead-lettered with
its reason, its key and value bytes unchanged (or a flagged truncated copy), the pipeline never
stops, and nothing good is lost: every good transaction is scored once and the alerts equal the
in-process reference over the good records alone."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from eos_helpers import committed_alerts, make_config, read_all, reference_alerts, stream_with_bursts
from hostile import Hostile, hostile_records

from fraudstream.config import Config, DecodeSection
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.task import (
    H_KEY_SIZE,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    H_VALUE_SIZE,
    DeadLetter,
    PartitionTask,
    read_dead_letter,
)

pytestmark = pytest.mark.kafka
PARTITIONS = 3
Placed = tuple[int, int]  # partition, offset


def produce_tracked(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> list[Placed]:
    """Produces ``records`` in order (keyed; a None key goes to partition 0) and returns where
    each landed."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.max.bytes": 2_000_000,
        }
    )
    placed: list[Placed | None] = [None] * len(records)

    def delivered(i: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            assert err is None, err
            placed[i] = (msg.partition() or 0, msg.offset() or 0)

        return report

    for i, (key, value) in enumerate(records):
        extra: dict[str, Any] = {} if key is not None else {"partition": 0}
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered(i), **extra)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(p is not None for p in placed)
    return [p for p in placed if p is not None]


def dead_letters(config: Config) -> dict[Placed, DeadLetter]:
    k = config.kafka
    out: dict[Placed, DeadLetter] = {}
    for m in read_all(k.bootstrap_servers, k.dead_letter_topic, PARTITIONS):
        d = read_dead_letter(m)
        where = (int(d.header(H_PARTITION) or -1), int(d.header(H_OFFSET) or -1))
        assert where not in out, f"{where} dead-lettered twice"
        assert m.partition() == where[0], "a dead letter stays in its input partition's number"
        out[where] = d
    return out


def alerts_without_position(alerts: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    return sorted(a[:4] for a in alerts)


def test_a_hundred_hostile_records_are_dead_lettered_with_their_reason_and_nothing_good_is_lost(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(PARTITIONS)
    good = [(str(card).encode(), value) for card, value in stream_with_bursts(6_000, seed=21, bursts=8)]
    bad: list[Hostile] = hostile_records(int(time.time() * 1000), max_record_bytes=100_000)
    # exact repeats of good transactions shortly after them (same key: same partition)
    repeats = {
        400 + 500 * i: Hostile(f"duplicate-{i}", *good[400 + 500 * i], "duplicate txn_id") for i in range(5)
    }
    records: list[tuple[bytes | None, bytes | None]] = []
    labels: list[Hostile | None] = []
    hostile_at = {30 + 50 * i: h for i, h in enumerate(bad)}
    for i, rec in enumerate(good):
        records.append(rec)
        labels.append(None)
        for extra in (hostile_at.get(i), repeats.get(i - 3)):
            if extra is not None:
                records.append((extra.key, extra.value))
                labels.append(extra)
    hostile = [h for h in labels if h is not None]
    assert len(hostile) >= 100 and len({h.name for h in hostile}) == len(hostile)
    placed = produce_tracked(kafka_bootstrap, topic, records)

    config = make_config(kafka_bootstrap, topic)
    config.decode = DecodeSection(max_record_bytes=100_000)
    stats = KafkaPipeline(config).run(idle_exit_s=3.0, max_seconds=240)

    assert stats.aborts == 0
    assert stats.consumed == len(records) == stats.processed + stats.dead_lettered
    assert stats.dead_lettered == len(hostile) and stats.processed == len(good)
    assert stats.duplicates == 5 and stats.future == 3
    dlq = dead_letters(config)
    assert len(dlq) == len(hostile)
    wrong = []
    for where, h in zip(placed, labels, strict=True):
        if h is None:
            assert where not in dlq, (
                f"a good record at {where} was dead-lettered: {dlq[where].header(H_REASON)}"
            )
            continue
        d = dlq[where]
        reason = d.header(H_REASON) or ""
        if h.reason not in reason:
            wrong.append((h.name, h.reason, reason[:120]))
        assert (d.key, d.value) == (h.key, h.value), f"{h.name}: the dead letter is not the original bytes"
        assert d.header(H_TOPIC) == topic and not d.truncated
    assert not wrong, wrong

    # nothing good lost: every good transaction scored once
    scored = Counter(
        json.loads(m.value())["txn_id"]
        for m in read_all(kafka_bootstrap, config.kafka.scores_topic, PARTITIONS)
    )
    assert set(scored.values()) == {1} and len(scored) == len(good)
    # the alerts: exactly the reference over the whole input, and the same as over the good alone
    committed = committed_alerts(config, PARTITIONS)
    assert committed == reference_alerts(config, PARTITIONS) and committed
    hostile_places = {where for where, h in zip(placed, labels, strict=True) if h is not None}
    only_good: dict[int, list[Any]] = {}
    for m in read_all(kafka_bootstrap, topic, PARTITIONS):
        if (m.partition(), m.offset()) not in hostile_places:
            only_good.setdefault(m.partition(), []).append(m)
    factory = processor_factory(config)
    good_alerts = []
    for p, msgs in only_good.items():
        out = PartitionTask(p, factory(), config).process(msgs)
        good_alerts += [(a.card_id, a.rule, a.trigger_txn_id, a.event_time) for a in out.alerts]
    assert alerts_without_position(committed) == sorted(good_alerts), (
        "a hostile record changed a good one's fate"
    )


@pytest.mark.parametrize("dlq_max_bytes", [None, 300_000], ids=["default-topic", "small-dead-letter-topic"])
def test_poison_pills_larger_than_the_dead_letter_topic_are_committed_past(
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., str],
    kafka_admin: AdminClient,
    dlq_max_bytes: int | None,
) -> None:
    """The defect: a 1,047,000-byte key with a short non-JSON value fits the input topic; its
    dead-letter copy did not fit the dead-letter topic, so every transaction aborted and the
    pipeline exited with StreamError on every restart, its offsets stuck at 0."""
    topic = kafka_topic_factory(PARTITIONS)
    if dlq_max_bytes is not None:  # a dead-letter topic an operator made smaller
        dlq = f"{topic}-dlq"
        new = NewTopic(dlq, num_partitions=PARTITIONS, replication_factor=1,
                       config={"max.message.bytes": str(dlq_max_bytes)})  # fmt: skip
        kafka_admin.create_topics([new])[dlq].result(30)
    pills: list[tuple[bytes | None, bytes | None]] = [
        (b"K" * 1_047_000, b"not json"),  # the record
        (b"k", b"v" * 1_040_000),
        (b"K" * 520_000, b"v" * 520_000),
        (None, b"{" + b" " * 1_000_000),
    ]
    good = [(str(card).encode(), value) for card, value in stream_with_bursts(3_000, seed=22, bursts=4)]
    records: list[tuple[bytes | None, bytes | None]] = [*good[:1_000], *pills, *good[1_000:]]
    placed = produce_tracked(kafka_bootstrap, topic, records)
    config = make_config(kafka_bootstrap, topic)
    stats = KafkaPipeline(config).run(idle_exit_s=3.0, max_seconds=120)
    assert stats.aborts == 0, "no transaction failed"
    assert stats.consumed == len(records) and stats.dead_lettered == len(pills)
    assert stats.processed == len(good)
    dlq_records = dead_letters(config)
    for (key, value), where in zip(pills, placed[1_000:1_004], strict=True):
        d = dlq_records[where]
        if d.truncated:
            assert d.header(H_KEY_SIZE) == str(-1 if key is None else len(key))
            assert d.header(H_VALUE_SIZE) == str(len(value or b""))
            assert (key or b"").startswith(d.key or b"") and (value or b"").startswith(d.value or b"")
        else:
            assert (d.key, d.value) == (key, value)
    if dlq_max_bytes is not None:
        assert stats.truncated == len(pills) and all(d.truncated for d in dlq_records.values())
    assert committed_alerts(config, PARTITIONS) == reference_alerts(config, PARTITIONS)


def test_a_cap_on_live_keys_bounds_the_state_and_counts_evictions(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    """Duplicate detection holds one entry per transaction id of the horizon: with
    ``decode.dedup_max_keys`` it holds at most that many per partition, forgetting the id seen
    longest ago first, and ``fraudstream_evicted_keys`` counts what it forgot."""
    topic = kafka_topic_factory(PARTITIONS)
    good = [(str(card).encode(), value) for card, value in stream_with_bursts(3_000, seed=23, bursts=3)]
    records: list[tuple[bytes | None, bytes | None]] = []
    for i, rec in enumerate(good):
        records.append(rec)
        if i % 500 == 2 and i > 500:  # a repeat of a recent id: still held, still caught
            records.append(good[i - 2])
    produce_tracked(kafka_bootstrap, topic, records)
    config = make_config(kafka_bootstrap, topic)
    config.decode = DecodeSection(dedup_max_keys=100)
    pipeline = KafkaPipeline(config)
    stats = pipeline.run(idle_exit_s=3.0, max_seconds=120)
    assert stats.duplicates == len(records) - len(good) == 6
    evicted = pipeline.metrics.snapshot()["fraudstream_evicted_keys_total"]
    # about 1,000 ids per partition, at most 100 held: the rest were evicted
    assert len(good) - PARTITIONS * 100 - 50 <= evicted <= len(good), evicted
    # a restart restores the tasks with their eviction counts (state): the new owner counts
    # only what it evicts itself (it used to count the restored evictions again)
    again = KafkaPipeline(config)
    again.run(idle_exit_s=2.0, max_seconds=60)
    assert again.metrics.snapshot()["fraudstream_evicted_keys_total"] == 0


def test_the_detectors_card_cap_is_exact_through_kafka_and_counted_once(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    """``detector.max_cards`` below the cards of each partition: the committed alerts are those
    of the partition task over the same records in one batch (the evictions do not depend on
    the batches), and ``fraudstream_evicted_keys`` counts the detector's evictions once."""
    topic = kafka_topic_factory(PARTITIONS)
    good = [(str(card).encode(), value) for card, value in stream_with_bursts(3_000, seed=29, bursts=3)]
    produce_tracked(kafka_bootstrap, topic, good)
    config = make_config(kafka_bootstrap, topic)
    config.decode = DecodeSection(dedup_max_keys=0)  # only the detector evicts
    config.detector.max_cards = 40
    pipeline = KafkaPipeline(config)
    pipeline.run(idle_exit_s=3.0, max_seconds=120)
    msgs = read_all(kafka_bootstrap, topic, PARTITIONS)
    factory = processor_factory(config)
    want = 0
    for p in range(PARTITIONS):
        task = PartitionTask(p, factory(), config)
        task.process([m for m in msgs if m.partition() == p])
        assert task.processor.state_size()["keys"] <= 40  # type: ignore[attr-defined]
        want += task.evicted()
    assert want > 1_000, want  # about 700 cards a partition, at most 40 live
    assert pipeline.metrics.snapshot()["fraudstream_evicted_keys_total"] == want
    assert committed_alerts(config, PARTITIONS) == reference_alerts(config, PARTITIONS)
