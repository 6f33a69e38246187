"""The changelog reader against the real broker: frames, chunking, and open transactions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from fraudstream.kafka.changelog import CHANGES, CHUNK_BYTES, SNAPSHOT, Restored, frames, read_changelog

pytestmark = pytest.mark.kafka


def transactional_producer(bootstrap: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    return producer


def write(producer: Producer, topic: str, partition: int, kind: bytes, seq: int, payload: bytes) -> None:
    for frame in frames(kind, seq, payload):
        producer.produce(topic, value=frame, key=kind, partition=partition)


def test_reads_the_latest_snapshot_and_the_changes_after_it_across_chunks(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(partitions=2)
    producer = transactional_producer(kafka_bootstrap)
    big = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 7)  # three chunks
    producer.begin_transaction()
    write(producer, topic, 0, SNAPSHOT, 1, b"old snapshot")
    write(producer, topic, 0, CHANGES, 2, b"old change")
    write(producer, topic, 0, SNAPSHOT, 3, big)
    write(producer, topic, 0, CHANGES, 4, b"c4")
    producer.commit_transaction(30)
    producer.begin_transaction()  # aborted: never part of the state
    write(producer, topic, 0, CHANGES, 5, b"aborted")
    # delivered first: an abort sent while the record's partition is still being added to the
    # transaction was refused once by a fresh broker (INVALID_TXN_STATE, fatal)
    producer.flush(30)
    producer.abort_transaction(30)
    restored = read_changelog({"bootstrap.servers": kafka_bootstrap}, topic, "g", [0, 1], timeout=30)
    assert restored[0].snapshot == big
    assert restored[0].changes == [b"c4"]
    assert restored[0].last_seq == 4
    assert restored[1] == Restored()


def test_waits_for_a_transaction_open_on_the_changelog_and_reads_what_it_commits(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    """The previous owner's commit can make the input offsets stable before its markers reach
    the changelog: a restore in between must wait for them, not read the state without them."""
    topic = kafka_topic_factory(partitions=1)
    producer = transactional_producer(kafka_bootstrap)
    producer.begin_transaction()
    write(producer, topic, 0, SNAPSHOT, 1, b"state")
    producer.flush(30)  # on the log, transaction still open
    result: list[dict[int, Restored]] = []
    reader = threading.Thread(
        target=lambda: result.append(
            read_changelog({"bootstrap.servers": kafka_bootstrap}, topic, "g", [0], timeout=60)
        )
    )
    reader.start()
    reader.join(2.0)
    assert reader.is_alive(), f"read the changelog past an open transaction: {result}"
    producer.commit_transaction(30)
    reader.join(30)
    assert not reader.is_alive()
    assert result[0][0].snapshot == b"state"
