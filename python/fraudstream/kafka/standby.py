"""Standby replicas: warm copies of partitions this instance does not own.

With ``kafka.standby_partitions = N`` an instance tails the changelog of up to N input
partitions it does not own with a consumer of its own (``read_committed``, assigned by hand,
never in the group, never committing), and applies each committed frame as it arrives into a
:class:`~fraudstream.kafka.task.PartitionTask` that processes nothing: a snapshot replaces the
copy, a change record is applied to it. When one of those partitions is assigned to the
instance, the task manager takes the copy (:meth:`StandbyReplicas.take`): it reads the
changelog from the copy's position to the end that a full restore would read to, and the
partition is active with only that tail applied.

A copy never produces output nor commits: it is not a task of the pipeline until taken, and the
taken state is the one a full restore builds, because a restore reads the same frames (the
latest snapshot at the changelog's start, the changes after it) and the copy applied every
frame from a snapshot on. A copy that cannot vouch for that (a chunk whose frame began before
the copy did, a corrupt frame) is not taken: that partition is restored in full.

Which partitions (:func:`standby_choice`): with no view of the group's members, each instance
keeps warm the partitions that follow the ones it owns, in partition order, cyclically,
skipping its own. With the cooperative-sticky assignor's contiguous-ish ranges, two instances
with N >= partitions / 2 cover each other's partitions completely. Memory: a copy is a whole
partition's state, as much as an owned partition (docs/operations.md, state bytes per card).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from fraudstream.config import Config
from fraudstream.errors import SnapshotError
from fraudstream.kafka.changelog import (
    SNAPSHOT,
    FrameAssembly,
    PartitionLog,
    _wait_stable,
    _watermarks,
    parse_frame,
)
from fraudstream.kafka.task import PartitionTask

log = logging.getLogger(__name__)

POLL_RECORDS = 500
"""Changelog records applied per call of the poll loop (a snapshot chunk is up to 512 KiB)."""


def standby_choice(owned: set[int], partitions: int, count: int) -> list[int]:
    """The partitions to keep warm: up to ``count`` not in ``owned``, in order from the one
    after the highest owned partition, cyclically (from 0 when nothing is owned)."""
    start = (max(owned) + 1) if owned else 0
    order = [(start + i) % partitions for i in range(partitions)]
    return [p for p in order if p not in owned][:count]


@dataclass
class WarmCopy:
    """The state of one partition as its changelog holds it, up to the copy's position."""

    task: PartitionTask | None = None
    """None until a snapshot was applied (an empty changelog: a fresh task)."""
    log: PartitionLog = field(default_factory=PartitionLog)
    """What a writer taking the partition over must know (seq, bytes since the snapshot)."""
    assembly: FrameAssembly = field(default_factory=FrameAssembly)
    trusted: bool = True
    """False after a chunk whose frame began before the copy saw it, until the next snapshot."""
    next_offset: int = 0
    """The changelog offset after the last record applied."""
    end_seen: int = -1
    """The changelog's end at the last end-of-partition event."""
    records: int = 0
    bytes: int = 0
    """Records and bytes read since :meth:`StandbyReplicas.take` last counted them."""


class StandbyReplicas:
    """The warm copies of one instance (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        client: dict[str, object],
        make_task: Callable[[int], PartitionTask],
    ) -> None:
        self.config = config
        self.count = config.kafka.standby_partitions
        self.topic = config.kafka.changelog_topic
        self.client = client
        self.make_task = make_task
        self.copies: dict[int, WarmCopy] = {}
        self._partitions = 0
        self.consumer = Consumer(
            {
                **client,
                "group.id": f"{config.kafka.group_id}-standby",  # never joined, never committed
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # deleted records (the owner truncates before its latest snapshot): from the start,
                # which is a snapshot
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 << 20,
                # the end of a partition is known from the fetch after the last record (its last
                # offset is a commit marker, never delivered): a short wait makes a take that
                # finds the copy current last milliseconds instead of the default 500 ms
                "fetch.wait.max.ms": 50,
            }
        )

    # -- which partitions -----------------------------------------------------------------------

    def keep_warm(self, owned: set[int]) -> None:
        """Starts and stops copies so that those of :func:`standby_choice` are kept."""
        if not self._partitions:
            meta = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
            self._partitions = len(meta.partitions)
        wanted = set(standby_choice(owned, self._partitions, self.count))
        stop = sorted(set(self.copies) - wanted)
        start = sorted(wanted - set(self.copies))
        if stop:
            self.consumer.incremental_unassign([TopicPartition(self.topic, p) for p in stop])
            for p in stop:
                del self.copies[p]
        if start:
            for p in start:
                self.copies[p] = WarmCopy()
            self.consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in start])
        if stop or start:
            log.info("standby replicas of partitions %s (owned %s)", sorted(self.copies), sorted(owned))

    # -- tailing ----------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> int:
        """Applies the committed changelog records that arrived (at most :data:`POLL_RECORDS`);
        returns how many records it read."""
        if not self.copies:
            return 0
        msgs = self.consumer.consume(num_messages=POLL_RECORDS, timeout=timeout)
        changed: set[int] = set()
        for m in msgs:
            p = m.partition()
            copy = self.copies.get(p if p is not None else -1)
            if copy is None:  # fetched before the partition left the standby set
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if copy.end_seen < 0:
                        log.info("standby copy of partition %s caught up with its changelog", p)
                    copy.end_seen = max(copy.end_seen, m.offset() or 0)
                else:
                    log.warning("standby changelog reader: %s", err)
                continue
            self._apply(p or 0, copy, m.value(), m.offset() or 0)
            changed.add(p or 0)
        for p in changed:
            task = self.copies[p].task
            if task is not None:
                task.changes()  # applied, not changed by this instance: nothing to write back
        return len(msgs)

    def _apply(self, p: int, copy: WarmCopy, value: bytes | None, offset: int) -> None:
        copy.next_offset = offset + 1
        copy.records += 1
        copy.bytes += len(value or b"")
        where = f"standby changelog {self.topic}[{p}] offset {offset}"
        try:
            frame = parse_frame(value, where)
            if frame.index == 0:
                copy.assembly.partial.clear()  # a frame cut by a jump to the changelog's new start
            elif (frame.kind, frame.seq) not in copy.assembly.partial:
                copy.trusted = False  # its first chunks are before the copy began
                return
            payload = copy.assembly.add(frame, where)
        except SnapshotError as exc:
            log.warning("%s; the partition will be restored in full if assigned", exc)
            copy.trusted, copy.task = False, None
            copy.assembly.partial.clear()
            return
        if payload is None:
            return
        if frame.kind == SNAPSHOT:
            task = self.make_task(p)
            task.restore(payload, [])
            copy.task, copy.trusted = task, True
            copy.log = PartitionLog(seq=frame.seq, snapshot_bytes=len(payload), has_snapshot=True)
        elif copy.task is not None:
            copy.task.apply_changes(payload)
            copy.log.changes_bytes += len(payload)
        copy.log.seq = max(copy.log.seq, frame.seq)

    # -- failover -------------------------------------------------------------------------------

    def take(self, partitions: list[int], timeout: float) -> dict[int, WarmCopy]:
        """The copies of ``partitions`` caught up with the changelog's committed end, ready to
        become active; they stop being standbys. A partition without a trusted copy, or whose
        tail does not arrive within ``timeout``, is left out (the caller restores it in full)."""
        wanted = [p for p in partitions if p in self.copies]
        if not wanted:
            return {}
        for p in wanted:
            self.copies[p].records = self.copies[p].bytes = 0  # from here: the tail
        # the previous owner's last transaction resolved, so the end below includes its frames
        _wait_stable(self.client, self.consumer, self.topic, wanted, timeout)
        bounds = {p: _watermarks(self.consumer, TopicPartition(self.topic, p), timeout) for p in wanted}
        deadline = time.monotonic() + timeout

        def behind() -> list[int]:
            return [
                p
                for p in wanted
                if bounds[p][1] > max(bounds[p][0], self.copies[p].next_offset, self.copies[p].end_seen)
            ]

        while behind() and time.monotonic() < deadline:
            if self.poll(0.05):
                deadline = time.monotonic() + timeout  # a stall, not a size limit
        late = behind()
        if late:
            log.warning("standby copies of %s did not catch up in %.0f s: restored in full", late, timeout)
        taken = {p: self.copies[p] for p in wanted if p not in late and self.copies[p].trusted}
        self.consumer.incremental_unassign([TopicPartition(self.topic, p) for p in wanted])
        for p in wanted:
            del self.copies[p]
        for copy in taken.values():
            if copy.task is not None:
                copy.task.changes()  # the tail applied is already in the changelog
                copy.task.last_input_ms = copy.task.clock()  # idle from now, not from the copy's start
        return taken

    def close(self) -> None:
        self.consumer.close()


__all__ = ["POLL_RECORDS", "StandbyReplicas", "WarmCopy", "standby_choice"]
