"""The transactional producer of a pipeline: begin, send, commit with the consumer offsets,
abort; fencing and stuck calls.

One processing interval is one Kafka transaction: every output record (alerts, scored
transactions, dead letters, changelog frames) and the input offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447). A
``read_committed`` reader sees an interval's output if and only if its input offsets are
committed.

Errors: retriable ones are retried; one that requires an abort is reported to the caller
(:class:`CommitAborted`), which aborts and rewinds; a fenced or fatal producer raises
:class:`~fraudstream.errors.FencedError` (another instance owns the transactional id now).
Every blocking client call runs under the watchdog, which ends a process stuck in one.
With ``exactly_once = false`` there are no transactions: outputs are flushed, then the
offsets committed by the consumer (at-least-once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.config import Config
from fraudstream.errors import FencedError, StreamError
from fraudstream.kafka.producing import produce_waiting
from fraudstream.kafka.topics import client_config
from fraudstream.kafka.watchdog import Watchdog

log = logging.getLogger(__name__)
T = TypeVar("T")
FENCED_CODES = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


class CommitAborted(StreamError):
    """The transaction could not commit and must be aborted; the caller rewinds."""


class TransactionalProducer:
    """The producer half of an instance (see the module docstring)."""

    def __init__(self, config: Config, watchdog: Watchdog) -> None:
        self.config = config
        self.watchdog = watchdog
        self.exactly_once = config.kafka.exactly_once
        self.in_txn = False
        self.producer = self._make()
        self.on_renew: list[Callable[[Producer], None]] = []
        """Called with the new client after :meth:`renew` (the changelog writer sends with it)."""

    def _make(self) -> Producer:
        k = self.config.kafka
        transactional = (
            {
                "transactional.id": f"{k.group_id}-{k.instance_id}",
                "transaction.timeout.ms": k.transaction_timeout_ms,
            }
            if k.exactly_once
            else {}
        )
        return Producer(
            {
                **client_config(self.config),
                **transactional,
                "enable.idempotence": True,
                "acks": "all",  # explicit: what min.insync.replicas of the output topics relies on
                "linger.ms": 2,
                "message.max.bytes": max(2 * self.config.decode.max_record_bytes, 1 << 20),
            }
        )

    def init(self) -> None:
        """Registers the transactional id (fencing any older instance with it)."""
        if self.exactly_once:
            with self.watchdog.call("init_transactions"):
                self.producer.init_transactions(30)

    def renew(self) -> None:
        """Replaces the client by a new one with the same transactional id (which fences the
        old one). After a broker outage, librdkafka's producer can keep a stale group
        coordinator and block in ``send_offsets_to_transaction`` (librdkafka issue 5511); a new
        client looks the coordinator up afresh."""
        old = self.producer
        self.producer = self._make()
        self.in_txn = False
        for callback in self.on_renew:
            callback(self.producer)
        self.init()
        old.flush(0)  # its transaction is aborted (fenced); nothing of it is kept

    def begin(self) -> None:
        if not self.in_txn and self.exactly_once:
            self.producer.begin_transaction()
            self.in_txn = True

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int) -> float:
        """Sends one record in the open transaction; returns seconds spent waiting for room
        in the local queue (a slow broker holds the input back)."""
        return produce_waiting(self.producer, topic, key=key, value=value, partition=partition)

    def poll(self) -> None:
        self.producer.poll(0)

    def commit(self, offsets: list[TopicPartition], consumer: Consumer) -> None:
        """Commits the open transaction with ``offsets``. Raises :class:`CommitAborted` when it
        must be aborted, :class:`FencedError` when this instance is fenced."""
        if not self.exactly_once:  # at-least-once: outputs durable first, then the offsets
            if self.producer.flush(30) > 0:
                raise StreamError("outputs were not delivered within 30 s; offsets not committed")
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
            return
        self.begin()  # an interval with nothing to send still commits its offsets
        try:
            if offsets:
                with self.watchdog.call("send_offsets_to_transaction"):
                    self.producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            with self.watchdog.call("commit_transaction"):
                _retrying(lambda: self.producer.commit_transaction(30))
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal() or err.code() in FENCED_CODES:
                raise FencedError(str(err)) from exc
            if err.txn_requires_abort():
                raise CommitAborted(str(err)) from exc
            raise
        self.in_txn = False

    def abort(self) -> None:
        """Aborts the open transaction (nothing of it becomes visible)."""
        if not self.in_txn:
            return
        try:
            with self.watchdog.call("abort_transaction"):
                self.producer.abort_transaction(30)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise FencedError(str(exc.args[0])) from exc
            log.warning("abort failed: %s", exc)
        self.in_txn = False

    def flush(self, timeout: float) -> int:
        return int(self.producer.flush(timeout))

    def __len__(self) -> int:
        return len(self.producer)


def _retrying(call: Callable[[], T], attempts: int = 10) -> T:
    """Calls ``call``, retrying Kafka errors the client marks retriable (or leaderless)."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            leaderless = err.code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
            if not (err.retriable() or leaderless) or attempt == attempts - 1:
                raise
            log.warning("retrying after retriable error: %s", err)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


__all__ = ["CommitAborted", "TransactionalProducer"]
