"""A takeover that finds a previous owner's transaction still open fences that owner.

An owner killed (or paused: a zombie) with a transaction open leaves its last records and
offsets pending: the committed offsets of its partitions stay unstable (a ``read_committed``
offset fetch waits) and their changelog stops at the last stable offset, until the broker
aborts the transaction after ``transaction.timeout.ms`` (60 s here by default). The instance
that takes the partitions over cannot start before then: it must resume from the last commit,
and whether that is the open transaction's is decided only when it ends.

It need not wait. A live owner that gives a partition up commits first (the revoke callback),
and its later transactions hold neither that partition's offsets nor its changelog; so a
takeover that still waits after ``kafka.fence_pending_after_ms`` waits for a dead owner or a
zombie. It then fences that owner's transactional id as the protocol fences zombies: a producer
with the same id calls ``init_transactions``, the coordinator bumps the id's epoch and aborts
the open transaction at once, and the owner, should it come back, is refused with a fenced
error. Exactly-once holds as on the broker's own abort: the takeover resumes from the last
commit.

Who the owner is (:func:`pending_writers`): every changelog record names its writer in a
header (:data:`~fraudstream.kafka.changelog.WRITER_HEADER`).

- A changelog partition whose last stable offset is below its end: the record at the last
  stable offset is the first of the earliest open transaction; its header names the holder.
- Offsets pending with no open transaction on the changelog: the owner's transaction holds the
  offsets but none of the partition's changelog records. Each owner's first commit of a
  partition it took writes a changelog record for it, delivered before the offsets are sent
  (:class:`~fraudstream.kafka.tasks.TaskManager`), so the holder has committed before and the
  partition's last committed changelog record names it.

Only ids of the group's own instances (``<group_id>-``) are fenced, never this instance's.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from fraudstream.config import Config
from fraudstream.kafka.changelog import WRITER_HEADER, _watermarks
from fraudstream.kafka.stats import RunStats
from fraudstream.kafka.topics import client_config, transactional_id

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.02


class PreviousOwners:
    """Resolves the pending transactions of newly assigned partitions (see the module
    docstring)."""

    def __init__(self, config: Config, stats: RunStats) -> None:
        self.config = config
        self.stats = stats
        self.client = client_config(config)
        self.topic = config.kafka.changelog_topic
        self.own_id = transactional_id(config)
        self.fenced: list[str] = []
        """The transactional ids fenced so far, in order."""

    def committed(
        self, consumer: Consumer, partitions: list[int], steps: Steps | None = None
    ) -> list[TopicPartition]:
        """The committed input offsets of ``partitions`` (the group consumer's stable fetch),
        once no previous owner's transaction is open on them: waited for up to
        ``kafka.fence_pending_after_ms``, then its owner fenced. ``steps`` is told when each
        step ended."""
        mark = steps.mark if steps is not None else _no_mark
        k = self.config.kafka
        tps = [TopicPartition(k.input_topic, p) for p in partitions]
        bound = k.fence_pending_after_ms / 1000
        if k.exactly_once and bound > 0:
            deadline = time.monotonic() + bound
            offsets = _committed_within(consumer, tps, bound)
            mark("offsets_fetch" if offsets is not None else "offsets_unstable")
            open_logs = self._open_changelogs(partitions, deadline)
            mark("changelog_checked")
            if offsets is None or open_logs:
                unstable = [] if offsets is not None else self._unstable(consumer, partitions, open_logs)
                writers = pending_writers(self.client, self.topic, open_logs, unstable)
                mark("writers_found")
                self._fence(writers)
                mark("fenced")
        committed: list[TopicPartition] = consumer.committed(tps, timeout=k.transaction_timeout_ms / 1000)
        mark("offsets_stable")
        return committed

    def _open_changelogs(self, partitions: list[int], deadline: float) -> dict[int, int]:
        """The changelog partitions with an open transaction at ``deadline`` (checked until
        then), each with its last stable offset."""
        uncommitted = _reader(self.client, "read_uncommitted")
        committed = _reader(self.client, "read_committed")
        try:
            end = {p: _watermarks(uncommitted, TopicPartition(self.topic, p), 30)[1] for p in partitions}
            while True:
                # a read_committed reader's high watermark is the last stable offset
                lso = {p: _watermarks(committed, TopicPartition(self.topic, p), 30)[1] for p in end}
                pending = {p: stable for p, stable in lso.items() if stable < end[p]}
                if not pending or time.monotonic() >= deadline:
                    return pending
                end = {p: end[p] for p in pending}
                time.sleep(CHECK_INTERVAL_S)
        finally:
            uncommitted.close()
            committed.close()

    def _unstable(self, consumer: Consumer, partitions: list[int], open_logs: dict[int, int]) -> list[int]:
        """Of the partitions without an open changelog transaction, those whose offsets are
        still unstable (one short fetch each: a stable one answers at once)."""
        topic = self.config.kafka.input_topic
        rest = [p for p in partitions if p not in open_logs]
        if not rest or _committed_within(consumer, [TopicPartition(topic, p) for p in rest], 0.2):
            return []
        return [p for p in rest if _committed_within(consumer, [TopicPartition(topic, p)], 0.2) is None]

    def _fence(self, writers: dict[str, list[int]]) -> None:
        prefix = f"{self.config.kafka.group_id}-"
        for writer, partitions in sorted(writers.items()):
            if writer == self.own_id or not writer.startswith(prefix):
                log.warning(
                    "partitions %s wait for a transaction of %r, not fenced (not another instance of "
                    "this group): waiting for the transaction timeout",
                    partitions,
                    writer,
                )
                continue
            began = time.monotonic()
            fence(self.config, writer)
            self.fenced.append(writer)
            self.stats.fencings += 1
            log.warning(
                "partitions %s waited %.0f ms for an open transaction of %s (dead or a zombie): fenced "
                "it in %.0f ms, its transaction aborted",
                partitions,
                self.config.kafka.fence_pending_after_ms,
                writer,
                (time.monotonic() - began) * 1000,
            )


class Steps:
    """When each step of a takeover ended, in ms from its start (the log line's
    ``steps: name +ms, ...``; benches/failover.py reads it)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.ended: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        self.ended.append((step, time.monotonic()))

    def __str__(self) -> str:
        return ", ".join(f"{step} +{(at - self.began) * 1000:.0f}" for step, at in self.ended)


def _no_mark(step: str) -> None:
    pass


def fence(config: Config, writer: str) -> None:
    """Fences transactional id ``writer``: its epoch is bumped and its open transaction aborted
    (``init_transactions`` returns once the abort is complete)."""
    producer = Producer(
        {
            **client_config(config),
            "transactional.id": writer,
            "transaction.timeout.ms": config.kafka.transaction_timeout_ms,
        }
    )
    producer.init_transactions(30)
    producer.flush(0)


def pending_writers(
    client: dict[str, object], topic: str, open_logs: dict[int, int], unstable: list[int]
) -> dict[str, list[int]]:
    """Writer id -> partitions it holds: for each changelog partition in ``open_logs``
    (partition -> last stable offset), the writer of the record at its last stable offset; for
    each of ``unstable``, the writer of its last committed changelog record."""
    writers: dict[str, list[int]] = {}
    if open_logs:
        reader = _reader(client, "read_uncommitted")
        try:
            for p, lso in open_logs.items():
                first = _records_from(reader, TopicPartition(topic, p, lso), 1)
                _add_writer(writers, first[:1], p)
        finally:
            reader.close()
    if unstable:
        reader = _reader(client, "read_committed")
        try:
            for p in unstable:
                _add_writer(writers, _last_committed(reader, topic, p), p)
        finally:
            reader.close()
    return writers


def _add_writer(writers: dict[str, list[int]], records: list[Message], partition: int) -> None:
    named = [h[1] for m in records[-1:] for h in (m.headers() or []) if h[0] == WRITER_HEADER and h[1]]
    if named:
        value = named[0]
        writers.setdefault(value.decode() if isinstance(value, bytes) else value, []).append(partition)
    else:
        log.warning("changelog partition %d: no record naming its writer; nothing to fence", partition)


def _last_committed(reader: Consumer, topic: str, partition: int) -> list[Message]:
    """The last committed record of a changelog partition (empty if none), read backwards in
    growing steps: transaction markers and aborted records hold offsets too."""
    low, lso = _watermarks(reader, TopicPartition(topic, partition), 30)
    step = 4
    while lso > low:
        start = max(low, lso - step)
        records = _records_from(reader, TopicPartition(topic, partition, start), None)
        if records or start == low:
            return records[-1:]
        step *= 8
    return []


def _records_from(
    reader: Consumer, tp: TopicPartition, limit: int | None, timeout: float = 30.0
) -> list[Message]:
    """The data records of ``tp`` from its offset to the reader's end (at most ``limit``)."""
    reader.assign([tp])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in reader.consume(num_messages=500, timeout=0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return records
                    raise KafkaException(err)
                records.append(m)
                if limit is not None and len(records) >= limit:
                    return records
        return records
    finally:
        reader.unassign()


def _reader(client: dict[str, object], isolation: str) -> Consumer:
    return Consumer(
        {
            **client,
            "group.id": "fraudstream-fencing",  # never joined, never committed
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )


def _committed_within(
    consumer: Consumer, tps: list[TopicPartition], timeout: float
) -> list[TopicPartition] | None:
    """The committed offsets of ``tps``, or None if some are still unstable after ``timeout``."""
    try:
        offsets: list[TopicPartition] = consumer.committed(tps, timeout=timeout)
        return offsets
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._TIMED_OUT:
            raise
        return None


__all__ = ["PreviousOwners", "Steps", "fence", "pending_writers"]
