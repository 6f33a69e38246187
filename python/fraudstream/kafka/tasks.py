"""The task manager: which input partitions this instance owns, and their state.

As Kafka Streams' TaskManager: on assignment a partition's task is built and its state
restored from the changelog (the latest committed snapshot, then the changes after it) before
any of its records is processed; on revocation the task is dropped (the loop commits first);
on loss, or after an aborted transaction, every task still owned is put back to the last
commit: its offset (seek) and its state (changelog).

Invariants: a record is processed by a task only at or past the task's position (records a
consume call fetched before a rebalance are skipped, and processed once by their owner); the
positions are what the next commit sends as offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from fraudstream.config import Config
from fraudstream.kafka.changelog import ChangelogWriter, PartitionLog, Restored, read_changelog
from fraudstream.kafka.fencing import PreviousOwners, Steps
from fraudstream.kafka.standby import StandbyReplicas
from fraudstream.kafka.stats import RunStats
from fraudstream.kafka.task import DLQ_MAX_RECORD_BYTES, PartitionTask
from fraudstream.kafka.topics import client_config, transactional_id
from fraudstream.processor import Processor

log = logging.getLogger(__name__)


class TaskManager:
    """The tasks of the partitions this instance owns (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        consumer: Consumer,
        changelog: ChangelogWriter,
        processor_factory: Callable[[], Processor],
        stats: RunStats,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.changelog = changelog
        self.processor_factory = processor_factory
        self.stats = stats
        self.tasks: dict[int, PartitionTask] = {}
        self.positions: dict[int, int] = {}
        """Per owned partition, the offset after the last record processed."""
        self.dirty: set[int] = set()
        """Partitions whose state changed since the last commit."""
        self.dlq_max_bytes = DLQ_MAX_RECORD_BYTES
        """Room for one dead letter (the pipeline sets the dead-letter topic's limit)."""
        self.standby = (
            StandbyReplicas(config, client_config(config), self._new_task)
            if config.kafka.standby_partitions
            else None
        )
        """Warm copies of partitions not owned (``kafka.standby_partitions``), or None."""
        self.evicted = 0
        """Keys evicted by the tasks' caps in the transactions this instance committed: each
        eviction counted once. A task's count is part of its state, so a restored task reports
        the evictions of whoever committed them before (not counted again here), and those of
        an aborted transaction are done again after the rewind (counted when they commit)."""
        self._evicted_at_commit: dict[int, int] = {}
        """Per owned partition, its task's eviction count at the last commit (or restore)."""
        self.previous_owners = PreviousOwners(config, stats)
        """Fences a previous owner whose open transaction holds a takeover up (:mod:`.fencing`)."""
        changelog.name_writer(transactional_id(config))
        self._unannounced: set[int] = set()
        """Partitions taken (or rewound) whose changelog has no committed record of this writer
        yet: the next commit writes one for each, delivered before the offsets are sent, so that
        a transaction of this instance holding a partition's offsets is always named by the
        partition's changelog (its last committed record, or a record of that transaction)."""
        self._announcing: set[int] = set()
        self._evicted_written: dict[int, int] = {}
        """Per partition written by the last :meth:`write_changelog`: its task's evictions then."""
        """Of those, the partitions the open transaction wrote."""

    def accepted(self, partition: int, offsets: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Which of a partition's consumed records (by offset) are this instance's to process
        now: those of a partition it owns, at or past its position."""
        if partition not in self.tasks:
            return np.zeros(len(offsets), dtype=bool)
        return np.asarray(offsets >= self.positions.get(partition, 0))

    def processed(self, partition: int, next_offset: int | None) -> None:
        if next_offset is not None:
            self.positions[partition] = next_offset
        self.dirty.add(partition)

    def offsets(self) -> list[TopicPartition]:
        topic = self.config.kafka.input_topic
        return [TopicPartition(topic, p, off) for p, off in sorted(self.positions.items())]

    def write_changelog(self) -> None:
        """Writes the changed partitions' state (changes or a snapshot) into the transaction,
        and a record for each partition not announced yet, delivered before the caller sends the
        offsets. What it wrote is what :meth:`committed` then counts: partitions processed while
        the commit runs are dirty again for the next one."""
        for partition in sorted(self.dirty | self._unannounced):
            task = self.tasks.get(partition)
            if task is not None:
                self.changelog.write(partition, task.snapshot_pieces, task.changes)
        self._evicted_written = {p: self.tasks[p].evicted() for p in self.dirty if p in self.tasks}
        self.dirty = set()
        self._announcing = self._unannounced & set(self.tasks)
        if self._announcing:
            self.changelog.producer.flush(30)

    def committed(self) -> None:
        """The transaction holding the last :meth:`write_changelog` committed."""
        if self._announcing:
            log.info("partitions %s: first commit since taken", sorted(self._announcing))
        for partition, now in self._evicted_written.items():
            self.evicted += max(0, now - self._evicted_at_commit.get(partition, now))
            self._evicted_at_commit[partition] = now
        self._evicted_written = {}
        self._unannounced -= self._announcing
        self._announcing = set()

    # -- ownership --------------------------------------------------------------------------

    def assign(self, partitions: list[int]) -> None:
        """New partitions: tasks built and restored before any record is processed. A partition
        already owned keeps its task (its state is ahead of the changelog's last commit)."""
        self._restore([p for p in partitions if p not in self.tasks])
        # The restore can hold the loop for up to the transaction timeout (a killed owner's open
        # transaction must time out first). That is not idle time of the partitions already
        # owned: their records kept arriving meanwhile, and an idle tick before they are taken
        # would advance the watermark past them (every rule window closed, the records late).
        now_ms = time.time() * 1000
        for task in self.tasks.values():
            task.last_input_ms = max(task.last_input_ms, now_ms)
        self.keep_warm()

    def revoke(self, partitions: list[int]) -> None:
        """Partitions given up after a commit: their tasks and positions are dropped."""
        for p in partitions:
            self._drop(p)
        self.keep_warm()

    def rewind(self, lost: frozenset[int] = frozenset()) -> None:
        """After an abort: ``lost`` partitions are dropped, the others go back to the last
        commit (offset and state)."""
        for p in lost:
            self._drop(p)
        kept = sorted(self.tasks)
        if kept:
            topic = self.config.kafka.input_topic
            for tp in self.consumer.committed([TopicPartition(topic, p) for p in kept], timeout=30):
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        self._restore(kept)
        self.dirty.clear()
        self._evicted_written = {}  # (an aborted transaction's evictions count when done again)
        if lost:
            self.keep_warm()

    def keep_warm(self) -> None:
        """Moves the standby copies to the partitions the owned ones now call for (their thread
        applies the changelog from then on, beside the poll loop)."""
        if self.standby is not None:
            self.standby.keep_warm(set(self.tasks))
            self.standby.start()

    def _new_task(self, partition: int) -> PartitionTask:
        factory, dlq = self.processor_factory, self.dlq_max_bytes
        return PartitionTask(partition, factory(), self.config, dlq_max_bytes=dlq)

    def _drop(self, partition: int) -> None:
        self._evicted_at_commit.pop(partition, None)
        self.tasks.pop(partition, None)
        self.positions.pop(partition, None)
        self.dirty.discard(partition)
        self._unannounced.discard(partition)
        self._announcing.discard(partition)
        self.changelog.forget(partition)

    def _restore(self, partitions: list[int]) -> None:
        """Rebuilds the tasks of ``partitions`` from their changelog."""
        if not partitions:
            return
        steps = Steps()
        began = steps.began
        k = self.config.kafka
        # Offsets first: this waits for a previous owner's pending transaction (a zombie resuming
        # mid-commit), whose changelog records must then be part of what is read next.
        # Past kafka.fence_pending_after_ms, a pending transaction's owner is fenced (.fencing).
        committed = self.previous_owners.committed(self.consumer, partitions, steps)
        waited = (time.monotonic() - began) * 1000
        # an open transaction on the changelog resolves within the transaction timeout
        timeout = max(60.0, k.transaction_timeout_ms / 1000 + 10)
        warm = {} if self.standby is None else self.standby.take(partitions, timeout, steps.mark)
        if warm:
            steps.mark("standby_taken")
        cold = [p for p in partitions if p not in warm]
        restored = (
            read_changelog(
                client_config(self.config), k.changelog_topic, f"{k.group_id}-restore", cold, timeout
            )
            if cold
            else {}
        )
        if cold:
            steps.mark("changelog_read")
        for tp in committed:  # where processing resumes: records before it are done
            self.positions[tp.partition] = max(tp.offset, 0)
        for p in cold:
            self._install(p, *_restored_task(self._new_task(p), restored[p]))
        for p, copy in warm.items():
            self._install(p, copy.task or self._new_task(p), copy.log)
        records = sum(r.records_read for r in restored.values()) + sum(c.records for c in warm.values())
        read = sum(r.bytes_read for r in restored.values()) + sum(c.bytes for c in warm.values())
        steps.mark("installed")
        elapsed = (time.monotonic() - began) * 1000
        self.stats.restores += 1
        self.stats.restore_ms += elapsed
        self.stats.restore_bytes += read
        self.stats.restore_records += records
        self.stats.standby_takeovers += len(warm)
        log.info(
            "restored partitions %s in %.0f ms (%.0f ms waiting for the committed offsets; %d changelog "
            "records, %d bytes; %s from standby copies; steps: %s)",
            partitions,
            elapsed,
            waited,
            records,
            read,
            sorted(warm) or "none",
            steps,
        )

    def _install(self, partition: int, task: PartitionTask, plog: PartitionLog) -> None:
        self.tasks[partition] = task
        self._evicted_at_commit[partition] = task.evicted()  # counted by whoever committed them
        self._unannounced.add(partition)
        self.changelog.logs[partition] = plog

    def close(self) -> None:
        self.previous_owners.close()
        if self.standby is not None:
            self.standby.close()


def _restored_task(task: PartitionTask, r: Restored) -> tuple[PartitionTask, PartitionLog]:
    """``task`` with the state read back from the changelog, and what its writer must know."""
    if r.snapshot is not None:
        task.restore(r.snapshot, r.changes)
    plog = PartitionLog(
        seq=max(r.last_seq, 0),
        changes_bytes=sum(len(c) for c in r.changes),
        snapshot_bytes=len(r.snapshot or b""),
        has_snapshot=r.snapshot is not None,
    )
    return task, plog


__all__ = ["TaskManager"]
