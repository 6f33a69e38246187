"""Records sent in batches (``produce_batch``) through the real broker: all of them, in order,
also when the producer's local queue holds far fewer than a batch; a transaction the broker
failed refuses them as an abort."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer
from eos_helpers import make_config

from fraudstream.errors import StreamError
from fraudstream.kafka.pipeline import MAX_ABORTS_IN_A_ROW
from fraudstream.kafka.producing import produce_batch_waiting
from fraudstream.kafka.transactions import CommitAborted, TransactionalProducer
from fraudstream.kafka.watchdog import Watchdog


def test_a_batch_larger_than_the_queue_waits_for_room_and_keeps_its_order(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(partitions=2)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 50, "linger.ms": 5}
    )
    records = [(str(i % 7).encode(), f"v{i}".encode()) for i in range(1_000)]
    waited = produce_batch_waiting(producer, topic, records, partition=1)
    assert waited > 0  # 1,000 records through a queue of 50: it had to wait
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"batch-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[int | None, bytes | None, bytes | None]] = []
    for _ in range(200):
        for m in consumer.consume(500, timeout=0.2):
            assert m.error() is None
            got.append((m.partition(), m.key(), m.value()))
        if len(got) >= len(records):
            break
    consumer.close()
    assert got == [(1, k, v) for k, v in records]


def test_a_record_that_can_never_fit_the_queue_raises() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.kbytes": 4, "log_level": 0})
    with pytest.raises(StreamError, match=r"20001 bytes .* can never fit the producer's queue"):
        produce_batch_waiting(producer, "t", [(b"k", b"x" * 20_000)], partition=0)


def test_a_transaction_the_broker_failed_is_a_commit_abort_not_a_crash(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    """A record the broker refuses fails the transaction on its own; every later record is
    refused with _STATE until it is aborted. The loop must abort and rewind, not crash."""
    small = kafka_topic_factory(partitions=1, config={"max.message.bytes": "1000"})
    config = make_config(kafka_bootstrap, small)
    txn = TransactionalProducer(config, Watchdog(60, 60, lambda: None))
    txn.init()
    txn.begin()
    txn.producer.produce(small, value=b"x" * 5_000, partition=0)  # within the client's limit only
    txn.flush(30)
    with pytest.raises(CommitAborted, match="takes no more records"):
        txn.send_batch(small, [(b"k", b"v")], partition=0)
    txn.abort()
    # Later transactions take records again. librdkafka may fail the first commit after such an
    # abort too (OUT_OF_ORDER_SEQUENCE_NUMBER: the refused record's sequence number is missing),
    # as an abort again: the loop retries up to MAX_ABORTS_IN_A_ROW times.
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": small})
    aborts = 0
    while True:
        txn.begin()
        txn.send_batch(small, [(b"k", b"v")], partition=0)
        try:
            txn.commit([], consumer)
            break
        except CommitAborted:
            txn.abort()
            aborts += 1
            assert aborts < MAX_ABORTS_IN_A_ROW
    consumer.close()
