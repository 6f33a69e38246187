"""Which pending writers a takeover fences at once: the group's members decide, through the real
broker (:class:`~fraudstream.kafka.fencing.PreviousOwners`).

A writer's transaction is left open on partition 0 (a changelog record naming the writer, and the
input offsets): the writer's process is as good as dead, its producer never called again until
the end. The instance taking over is a member of the group; the writer is one too or not.

- Not a member (its session expired: dead or a zombie): fenced at once, although the bound
  ``kafka.fence_pending_after_ms`` is two minutes; the takeover resumes from the last commit, and
  the writer's commit is refused.
- A member (a live owner whose commit is completing): waited for up to the bound first (here
  300 ms), only then fenced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from eos_helpers import WAIT_S, as_instance, make_config

from fraudstream.config import Config
from fraudstream.kafka.changelog import WRITER_HEADER
from fraudstream.kafka.fencing import PreviousOwners
from fraudstream.kafka.stats import RunStats
from fraudstream.kafka.topics import client_config, ensure_topics, group_member_config, transactional_id

COMMITTED = 5
"""The input offset of partition 0 committed before the writer's open transaction."""
PENDING = 9
"""The offset the open transaction holds."""


def _transaction(config: Config, offset: int, group_meta: object) -> Producer:
    """A producer of ``config``'s transactional id whose transaction holds a changelog record
    of partition 0 naming it and ``offset`` for input partition 0 (not committed)."""
    producer = Producer({**client_config(config), "transactional.id": transactional_id(config)})
    producer.init_transactions(30)
    producer.begin_transaction()
    header = [(WRITER_HEADER, transactional_id(config).encode())]
    producer.produce(config.kafka.changelog_topic, b"frame", partition=0, headers=header)
    tp = TopicPartition(config.kafka.input_topic, 0, offset)
    producer.send_offsets_to_transaction([tp], group_meta, 30)
    assert producer.flush(30) == 0
    return producer


@contextmanager
def _members(configs: list[Config], topic: str) -> Iterator[list[Consumer]]:
    """Consumers of ``configs``' instances, members of the group (each assigned) once this
    yields; polled together, since a join waits for every member to rejoin."""
    consumers = [Consumer(group_member_config(c)) for c in configs]
    joined: set[int] = set()
    for i, consumer in enumerate(consumers):
        consumer.subscribe([topic], on_assign=lambda c, ps, i=i: joined.add(i))
    try:
        deadline = time.monotonic() + WAIT_S
        while len(joined) < len(consumers) and time.monotonic() < deadline:
            for consumer in consumers:
                consumer.poll(0.05)
        assert len(joined) == len(consumers), "every member joined the group"
        yield consumers
    finally:
        for consumer in consumers:
            consumer.close()


@pytest.mark.parametrize("writer_is_member", [False, True], ids=["gone", "member"])
def test_a_pending_writer_is_fenced_at_once_only_when_it_is_not_a_member(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], writer_is_member: bool
) -> None:
    topic = kafka_topic_factory(1)
    bound_ms = 300 if writer_is_member else 120_000
    base = make_config(
        kafka_bootstrap, topic, fence_pending_after_ms=bound_ms, transaction_timeout_ms=300_000
    )
    writer, taker = as_instance(base, "a"), as_instance(base, "b")
    ensure_topics(base)
    with _members([taker, writer] if writer_is_member else [taker], topic) as consumers:
        consumer = consumers[0]
        # the last commit, then the writer's transaction left open
        _transaction(writer, COMMITTED, consumer.consumer_group_metadata()).commit_transaction(30)
        pending = _transaction(writer, PENDING, consumer.consumer_group_metadata())
        owners = PreviousOwners(taker, RunStats())
        try:
            offsets = owners.committed(consumer, [0])
        finally:
            owners.close()
        assert [tp.offset for tp in offsets] == [COMMITTED], "the takeover resumes from the last commit"
        assert owners.fenced == [transactional_id(writer)]
        assert owners.at_once == (0 if writer_is_member else 1)
        with pytest.raises(KafkaException):  # fenced: its transaction was aborted
            pending.commit_transaction(30)
