"""Standby replicas: warm copies of partitions this instance does not own.

With ``kafka.standby_partitions = N`` an instance tails the changelog of up to N input
partitions it does not own with a consumer of its own (``read_committed``, assigned by hand,
never in the group, never committing), and applies each committed frame as it arrives into a
:class:`~fraudstream.kafka.task.PartitionTask` that processes nothing: a snapshot replaces the
copy, a change record is applied to it. When one of those partitions is assigned to the
instance, the task manager takes the copy (:meth:`StandbyReplicas.take`): it reads the
changelog from the copy's position to the end that a full restore would read to, and the
partition is active with only that tail applied.

The copies are applied by a thread of their own (:meth:`StandbyReplicas.start`), not by the
poll loop: loading a new snapshot into a copy takes as long as a restore of that partition (the
Rust restore releases the GIL), and the owned partitions keep being processed and committed
meanwhile. One lock covers the standby consumer and the copies: the thread holds it from a
fetch until its records are applied, so :meth:`~StandbyReplicas.keep_warm` and
:meth:`~StandbyReplicas.take` (on the poll loop) see every copy between two fetches, never with
records fetched and not applied.

A copy never produces output nor commits: it is not a task of the pipeline until taken, and the
taken state is the one a full restore builds, because a restore reads the same frames (the
latest snapshot at the changelog's start, the changes after it) and the copy applied every
frame from a snapshot on. A copy that cannot vouch for that (a chunk whose frame began before
the copy did, a corrupt frame) is not taken: that partition is restored in full.

Which partitions (:func:`standby_choice`): with no view of the group's members, each instance
keeps warm the partitions nearest after the ones it owns, cyclically, skipping its own. Two
instances with N >= partitions / 2 cover each other's partitions completely; in larger groups
the assignor spreads each member's partitions, and the partition after each owned one comes
first. Whether the member that takes a partition over holds its copy is the assignor's choice,
which knows nothing of the copies (docs/operations.md, standby replicas). Memory: a copy is a whole
partition's state, as much as an owned partition (docs/operations.md, state bytes per card).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
"""Changelog records applied per fetch (a snapshot chunk is up to 512 KiB)."""
TAIL_WAIT_S = 0.02
"""How long the tailing thread's fetch waits for records (the lock is held meanwhile: a take or
a move of the copies waits at most this long, plus the records being applied; the thread then
lets the poll loop have the lock first)."""


def standby_choice(owned: set[int], partitions: int, count: int) -> list[int]:
    """The partitions to keep warm: up to ``count`` not in ``owned``, nearest first after any
    owned partition (cyclically; ties in partition order; from 0 when nothing is owned).

    Behind each owned run of partitions: with one contiguous range that is the partitions after
    it, in order; with the spread-out assignments of a large group, the partition after each
    owned one first, so that every partition whose predecessor another member owns has a copy
    there once ``count`` reaches that member's share (``benches/group_sim.py`` measures it)."""
    if not owned:
        return list(range(min(count, partitions)))
    start = max(owned)
    gap: dict[int, int] = {}  # a partition not owned -> its distance from the owned one before it
    last = 0
    for i in range(1, partitions + 1):
        q = (start + i) % partitions
        if q in owned:
            last = i
        else:
            gap[q] = i - last
    return sorted(gap, key=lambda q: (gap[q], q))[:count]


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
        self._lock = threading.RLock()
        """Held by whoever uses the consumer or the copies (see the module docstring)."""
        self._loop_waits = threading.Event()
        """Set while the poll loop waits for the lock: the tailing thread, which would take it
        again at once, lets it go first."""
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
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
        with self._locked():
            self._keep_warm(owned)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock, for the poll loop: before the tailing thread's next fetch."""
        self._loop_waits.set()
        try:
            with self._lock:
                self._loop_waits.clear()
                yield
        finally:
            self._loop_waits.clear()

    def _keep_warm(self, owned: set[int]) -> None:
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

    def start(self) -> None:
        """Starts the thread that keeps the copies applied (once; :meth:`close` ends it)."""
        if self._thread is None and self.count:
            self._thread = threading.Thread(target=self._tail, name="fraudstream-standby", daemon=True)
            self._thread.start()

    def _tail(self) -> None:
        while not self._closing.is_set():
            if self._loop_waits.is_set():
                self._closing.wait(0.001)
                continue
            try:
                with self._lock:
                    read = self._poll(TAIL_WAIT_S) if self.copies else 0
            except Exception:  # a copy that failed to apply: restored in full if ever assigned
                log.exception("standby replicas: applying the changelog failed; the copies are dropped")
                with self._lock:
                    for copy in self.copies.values():
                        copy.task, copy.trusted = None, False
                return
            if not read:
                self._closing.wait(TAIL_WAIT_S if not self.copies else 0.0)

    def poll(self, timeout: float = 0.0) -> int:
        """Applies the committed changelog records that arrived (at most :data:`POLL_RECORDS`);
        returns how many records it read. (The thread of :meth:`start` calls it in a loop.)"""
        with self._lock:
            return self._poll(timeout)

    def _poll(self, timeout: float) -> int:
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

    def take(
        self, partitions: list[int], timeout: float, mark: Callable[[str], None] | None = None
    ) -> dict[int, WarmCopy]:
        """The copies of ``partitions`` caught up with the changelog's committed end, ready to
        become active; they stop being standbys. A partition without a trusted copy, or whose
        tail does not arrive within ``timeout``, is left out (the caller restores it in full)."""
        if not any(p in self.copies for p in partitions):
            # none of ours (a rewind of owned partitions after an abort): no need to wait for
            # the tailing thread, which may be loading a large snapshot into another copy
            return {}
        with self._locked():
            return self._take(partitions, timeout, mark or (lambda step: None))

    def _take(
        self, partitions: list[int], timeout: float, mark: Callable[[str], None]
    ) -> dict[int, WarmCopy]:
        mark("standby_locked")
        wanted = [p for p in partitions if p in self.copies]
        if not wanted:
            return {}
        for p in wanted:
            self.copies[p].records = self.copies[p].bytes = 0  # from here: the tail
        # the previous owner's last transaction resolved, so the end below includes its frames
        _wait_stable(self.client, self.consumer, self.topic, wanted, timeout)
        mark("standby_stable")
        bounds = {p: _watermarks(self.consumer, TopicPartition(self.topic, p), timeout) for p in wanted}
        deadline = time.monotonic() + timeout

        def behind() -> list[int]:
            return [
                p
                for p in wanted
                if bounds[p][1] > max(bounds[p][0], self.copies[p].next_offset, self.copies[p].end_seen)
            ]

        while behind() and time.monotonic() < deadline:
            if self._poll(0.01):  # short: a call waits out its timeout unless it fills up
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
        """Ends the tailing thread (after the records it is applying) and closes the consumer."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.consumer.close()


__all__ = ["POLL_RECORDS", "TAIL_WAIT_S", "StandbyReplicas", "WarmCopy", "standby_choice"]
