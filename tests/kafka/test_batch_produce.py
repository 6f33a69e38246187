"""Records sent in batches (``produce_batch``) through the real broker: all of them, in order,
also when the producer's local queue holds far fewer than a batch; a transaction the broker
failed refuses them as an abort; a failed abort renews the producer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
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


class _FailingAbort:
    """The client of a transactional producer whose abort fails (as on a timeout or a state
    it cannot leave); everything else goes to the real client."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def abort_transaction(self, timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort timed out"))

    def __getattr__(self, name: str) -> object:
        return getattr(self._producer, name)


def test_a_failed_abort_is_recovered_by_a_new_producer_and_a_stuck_begin_is_an_abort(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    """An abort that fails leaves the client's transaction open: its next begin_transaction
    would raise a raw _STATE error. The producer is renewed instead (the new client fences the
    old one and aborts its transaction), and later transactions commit; a begin that fails is
    a CommitAborted (the loop aborts and rewinds), not a raw client exception."""
    topic = kafka_topic_factory(partitions=1)
    config = make_config(kafka_bootstrap, topic)
    txn = TransactionalProducer(config, Watchdog(60, 60, lambda: None))
    txn.init()
    txn.begin()
    txn.send_batch(topic, [(b"k", b"never visible")], partition=0)
    stuck = txn.producer
    txn.producer = _FailingAbort(stuck)  # type: ignore[assignment]
    txn.abort()
    assert txn.producer is not stuck and not isinstance(txn.producer, _FailingAbort), "renewed"
    txn.begin()
    txn.send_batch(topic, [(b"k", b"committed")], partition=0)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic})
    txn.commit([], consumer)
    consumer.close()
    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{topic}-read",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic])
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not seen:
        m = reader.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value() or b"")
    reader.close()
    assert seen == [b"committed"]
    # a client whose transaction is still open cannot begin another: an abort, not a crash
    txn.begin()
    txn.in_txn = False  # (as after an abort that failed without the renewal)
    with pytest.raises(CommitAborted, match="cannot begin"):
        txn.begin()
    txn.abort()
    txn.begin()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic})
    txn.commit([], consumer)
    consumer.close()
