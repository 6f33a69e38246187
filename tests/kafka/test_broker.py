"""Smoke tests of the real broker's exactly-once machinery, through confluent-kafka.

These check the broker that `scripts/kafka up` starts, not fraudstream code: transactions
commit and abort, `read_committed` hides aborted data, and consumed offsets commit
atomically with the produced output (consume-transform-produce).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

pytestmark = pytest.mark.kafka

TXN_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 15.0


def _raise_error(err: KafkaError) -> None:
    if err.fatal():
        raise KafkaException(err)


def _transactional_producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"fs-test-txn-{uuid.uuid4().hex}",
            "enable.idempotence": True,
            "transaction.timeout.ms": 30_000,
            "linger.ms": 5,
            "error_cb": _raise_error,
        }
    )


def _consumer(bootstrap: str, group: str, isolation: str, **extra: object) -> Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "session.timeout.ms": 6000,
        "error_cb": _raise_error,
    }
    config.update(extra)
    return Consumer(config)


def _value(msg: Message) -> bytes:
    value = msg.value()
    assert value is not None, f"record without a value at offset {msg.offset()}"
    return value


def _drain(consumer: Consumer, timeout: float = DRAIN_TIMEOUT_S) -> list[Message]:
    """Consume the assigned partition until end-of-partition; return the data records."""
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is None:
            records.append(msg)
        elif err.code() == KafkaError._PARTITION_EOF:
            return records
        else:
            raise KafkaException(err)
    raise TimeoutError(f"no end of partition after {timeout}s ({len(records)} records read)")


def _read_all(bootstrap: str, topic: str, isolation: str) -> list[str]:
    consumer = _consumer(bootstrap, f"fs-test-reader-{uuid.uuid4().hex}", isolation)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return [_value(m).decode() for m in _drain(consumer)]
    finally:
        consumer.close()


def test_read_committed_hides_aborted_transaction(kafka_bootstrap: str, kafka_topic: str) -> None:
    n_committed, n_aborted = 7, 5
    producer = _transactional_producer(kafka_bootstrap)
    producer.init_transactions(TXN_TIMEOUT_S)

    producer.begin_transaction()
    for i in range(n_committed):
        producer.produce(kafka_topic, key=b"card-1", value=f"committed-{i}".encode())
    producer.commit_transaction(TXN_TIMEOUT_S)

    producer.begin_transaction()
    for i in range(n_aborted):
        producer.produce(kafka_topic, key=b"card-1", value=f"aborted-{i}".encode())
    # Flush so the aborted records really reach the log before the abort marker.
    assert producer.flush(TXN_TIMEOUT_S) == 0
    producer.abort_transaction(TXN_TIMEOUT_S)

    committed = [f"committed-{i}" for i in range(n_committed)]
    aborted = [f"aborted-{i}" for i in range(n_aborted)]
    assert _read_all(kafka_bootstrap, kafka_topic, "read_committed") == committed
    assert _read_all(kafka_bootstrap, kafka_topic, "read_uncommitted") == committed + aborted


def test_consume_transform_produce_commits_offsets_atomically(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    source, sink = kafka_topic_factory(), kafka_topic_factory()
    n_events = 20
    group = f"fs-test-ctp-{uuid.uuid4().hex}"

    plain = Producer({"bootstrap.servers": kafka_bootstrap, "error_cb": _raise_error})
    for i in range(n_events):
        plain.produce(source, key=f"card-{i % 3}".encode(), value=f"event-{i}".encode())
    assert plain.flush(TXN_TIMEOUT_S) == 0

    consumer = _consumer(kafka_bootstrap, group, "read_committed", **{"enable.partition.eof": False})
    producer = _transactional_producer(kafka_bootstrap)
    try:
        consumer.subscribe([source])
        producer.init_transactions(TXN_TIMEOUT_S)
        producer.begin_transaction()
        consumed = 0
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while consumed < n_events:
            assert time.monotonic() < deadline, f"consumed {consumed}/{n_events} in time"
            for msg in consumer.consume(num_messages=n_events, timeout=0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                producer.produce(sink, key=msg.key(), value=_value(msg).upper())
                consumed += 1
        assert consumed == n_events

        positions = consumer.position(consumer.assignment())
        assert [(tp.topic, tp.partition, tp.offset) for tp in positions] == [(source, 0, n_events)]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
        producer.commit_transaction(TXN_TIMEOUT_S)
    finally:
        consumer.close()

    checker = _consumer(kafka_bootstrap, group, "read_committed")
    try:
        committed = checker.committed([TopicPartition(source, 0)], timeout=TXN_TIMEOUT_S)
    finally:
        checker.close()
    assert [(tp.topic, tp.partition, tp.offset) for tp in committed] == [(source, 0, n_events)]

    output = _read_all(kafka_bootstrap, sink, "read_committed")
    assert output == [f"EVENT-{i}" for i in range(n_events)]
