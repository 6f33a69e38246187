"""The transactional producer of a pipeline: begin, send, commit with the consumer offsets,
abort; fencing and stuck calls.

One processing interval is one Kafka transaction: every output record (alerts, scored
transactions, dead letters, changelog frames) and the input offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447). A
``read_committed`` reader sees an interval's output if and only if its input offsets are
committed.

Errors: retriable ones are retried; one that requires an abort is reported to the caller
(:class:`CommitAborted`), which aborts and rewinds; a fenced or fatal producer raises
:class:`~fraudstream.errors.FencedError` (another instance owns the transactional id now). An
abort that fails (the client in a state it cannot leave, a timeout) is recovered by a new
client with the same transactional id, which aborts the transaction on the broker; a
transaction that cannot begin is a :class:`CommitAborted` too (the caller aborts, so renews,
and rewinds), never a raw client exception.
Every blocking client call runs under the watchdog, which ends a process stuck in one.
With ``exactly_once = false`` there are no transactions: outputs are flushed, then the
offsets committed by the consumer (at-least-once).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.config import Config
from fraudstream.errors import FencedError, StreamError
from fraudstream.kafka.producing import produce_batch_waiting, produce_waiting
from fraudstream.kafka.task import DeadLetter, Record
from fraudstream.kafka.topics import client_config, transactional_id
from fraudstream.kafka.watchdog import Watchdog

log = logging.getLogger(__name__)
T = TypeVar("T")
LIBRDKAFKA_BATCH_SIZE = 1_000_000
"""librdkafka's default ``batch.size``."""
TXN_RETRY_BACKOFF_MS = 10
"""The producer's first retry backoff (``retry.backoff.ms``; see :func:`producer_settings`)."""
FENCED_CODES = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
REFUSED_BY_THE_GROUP = (
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
)
"""An offset commit the group coordinator refuses while this member rejoins or after it lost
its membership."""


class CommitAborted(StreamError):
    """The transaction could not commit and must be aborted; the caller rewinds."""


class TransactionalProducer:
    """The producer half of an instance (see the module docstring)."""

    def __init__(self, config: Config, watchdog: Watchdog) -> None:
        self.config = config
        self.watchdog = watchdog
        self.exactly_once = config.kafka.exactly_once
        self.in_txn = False
        self.batch_bytes: int | None = None
        """``batch.size`` when set by :meth:`fit_batches` (librdkafka's default otherwise)."""
        self.producer = self._make()
        self.on_renew: list[Callable[[Producer], None]] = []
        """Called with the new client after :meth:`renew` (the changelog writer sends with it)."""

    def _make(self) -> Producer:
        return Producer(producer_settings(self.config, self.batch_bytes))

    def fit_batches(self, max_bytes: int) -> None:
        """Keeps every record batch within ``max_bytes`` (a topic's ``max.message.bytes``, less
        framing): the broker refuses a batch above its topic's limit, and librdkafka packs
        several records in one up to ``batch.size`` (default 1,000,000). A record larger than
        ``batch.size`` still goes alone. Call before :meth:`init`."""
        if max_bytes >= LIBRDKAFKA_BATCH_SIZE or self.batch_bytes == max_bytes:
            return
        self.batch_bytes = max(1, max_bytes)
        self.producer = self._make()
        for callback in self.on_renew:
            callback(self.producer)

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
        with contextlib.suppress(KafkaException):  # (a fenced client raises its fatal error here)
            old.flush(0)  # its transaction is aborted (fenced); nothing of it is kept

    def begin(self) -> None:
        if not self.in_txn and self.exactly_once:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal() or err.code() in FENCED_CODES:
                    raise FencedError(str(err)) from exc
                self.in_txn = True  # (so that the caller's abort renews the client)
                raise CommitAborted(f"a transaction cannot begin ({err})") from exc
            self.in_txn = True

    def send_batch(self, topic: str, records: list[Record], partition: int) -> float:
        """Sends records (key, value) in the open transaction, in order, in one call; returns
        seconds spent waiting for room in the local queue (a slow broker holds the input back)."""
        with self.refusal_aborts():
            return produce_batch_waiting(self.producer, topic, records, partition)

    def send_dead_letter(self, topic: str, letter: DeadLetter, partition: int) -> float:
        """Sends a dead letter (its headers included). The task sized it to fit the topic; if
        the client still refuses it as too large, its headers alone go instead (flagged as
        truncated): a dead letter never fails the transaction."""
        with self.refusal_aborts():
            return self._send_dead_letter(topic, letter, partition)

    def _send_dead_letter(self, topic: str, letter: DeadLetter, partition: int) -> float:
        try:
            return produce_waiting(
                self.producer, topic, key=letter.key, value=letter.value, headers=letter.headers,
                partition=partition,
            )  # fmt: skip
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            log.warning(
                "a dead letter of partition %d is too large even so: sending its headers only", partition
            )
            bare = letter.emptied()
            return produce_waiting(
                self.producer, topic, key=None, value=None, headers=bare.headers, partition=partition
            )

    @contextmanager
    def refusal_aborts(self) -> Iterator[None]:
        """A transaction that failed on its own (a produce or offset request refused by the
        broker) refuses every further record with ``_STATE`` until it is aborted: that is a
        :class:`CommitAborted` for the loop to abort and rewind, not a crash."""
        try:
            yield
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal() or err.code() in FENCED_CODES:  # e.g. adding a partition once fenced
                raise FencedError(str(err)) from exc
            if self.exactly_once and err.code() == KafkaError._STATE:
                raise CommitAborted(f"the transaction takes no more records ({err})") from exc
            raise

    def poll(self) -> None:
        """Serves the client's callbacks. A fatal error can surface here (the producer was
        fenced while records waited to be added to the transaction): a :class:`FencedError`,
        as from any other call, never a raw client error."""
        with self.refusal_aborts():
            self.producer.poll(0)

    def commit(self, offsets: list[TopicPartition], consumer: Consumer) -> None:
        """Commits the open transaction with ``offsets``. Raises :class:`CommitAborted` when it
        must be aborted, :class:`FencedError` when this instance is fenced."""
        if not self.exactly_once:  # at-least-once: outputs durable first, then the offsets
            self.deliver()
            self.commit_offsets(offsets, consumer)
            return
        self.commit_with(offsets, consumer.consumer_group_metadata() if offsets else None)

    def deliver(self) -> None:
        """At-least-once: waits until every record sent so far is delivered (it may run on
        another thread while the caller sends nothing: the pipeline's overlapped commit)."""
        if self.producer.flush(30) > 0:
            raise StreamError("outputs were not delivered within 30 s; offsets not committed")

    def commit_offsets(self, offsets: list[TopicPartition], consumer: Consumer) -> None:
        """At-least-once: commits the consumer's ``offsets``, once the records before them are
        delivered (:meth:`deliver`). An offset commit the group refuses (a rebalance under way)
        leaves the offsets where they were: whoever owns those partitions next processes the
        records after them again, which at-least-once allows; it is logged, not raised."""
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal() or err.code() not in REFUSED_BY_THE_GROUP:
                raise
            log.warning("offsets not committed (%s): the records after the last committed offsets "
                        "will be processed again by their next owner", err)  # fmt: skip

    def commit_with(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """The exactly-once :meth:`commit`, with the consumer's group metadata taken already:
        it may run on another thread, while the caller neither sends nor begins (the pipeline's
        overlapped commit)."""
        self.begin()  # an interval with nothing to send still commits its offsets
        try:
            if offsets:
                with self.watchdog.call("send_offsets_to_transaction"):
                    self.producer.send_offsets_to_transaction(offsets, group_metadata, 30)
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
            if exc.args[0].fatal() or exc.args[0].code() in FENCED_CODES:  # never renew a fenced client
                raise FencedError(str(exc.args[0])) from exc
            # the client's transaction state is unknown: a new client with the same id fences
            # the old one and aborts its transaction on the broker
            log.warning("abort failed (%s): a new producer takes over the transactional id", exc)
            self.in_txn = False
            self._renew_after_failed_abort()
        self.in_txn = False

    def _renew_after_failed_abort(self) -> None:
        try:
            self.renew()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal() or err.code() in FENCED_CODES:
                raise FencedError(str(err)) from exc
            raise StreamError(
                f"an abort failed and a new transactional producer could not start ({err}); "
                "the instance stops, and a restart resumes from the last commit"
            ) from exc

    def flush(self, timeout: float) -> int:
        return int(self.producer.flush(timeout))

    def __len__(self) -> int:
        return len(self.producer)


def producer_settings(config: Config, batch_bytes: int | None = None) -> dict[str, Any]:
    """The pipeline producer's librdkafka settings (``batch_bytes``: its ``batch.size``, else
    librdkafka's default)."""
    k = config.kafka
    transactional = (
        {"transactional.id": transactional_id(config), "transaction.timeout.ms": k.transaction_timeout_ms}
        if k.exactly_once
        else {}
    )
    return {
        # A transaction's first AddPartitionsToTxn / AddOffsetsToTxn often meets the previous
        # commit's markers still being written (CONCURRENT_TRANSACTIONS) and is retried after
        # this backoff: librdkafka's 100 ms default held a quarter of the commits ~115 ms
        # (benches/txn_round_trips.py). Java's producer retries a transaction's first
        # AddPartitionsToTxn after 20 ms in that case (KAFKA-5482). The backoff still grows
        # exponentially to retry.backoff.max.ms (1 s) for a broker that is down. A
        # [kafka.client] setting overrides it.
        "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
        **client_config(config),
        **transactional,
        "enable.idempotence": True,
        "acks": "all",  # explicit: what min.insync.replicas of the output topics relies on
        "linger.ms": 2,
        "message.max.bytes": producer_max_message_bytes(config),
        **({} if batch_bytes is None else {"batch.size": batch_bytes}),
    }


def producer_max_message_bytes(config: Config) -> int:
    """The producer's ``message.max.bytes``: room for two input records (a dead letter is one)."""
    return max(2 * config.decode.max_record_bytes, 1 << 20)


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


__all__ = ["CommitAborted", "TransactionalProducer", "producer_max_message_bytes", "producer_settings"]
