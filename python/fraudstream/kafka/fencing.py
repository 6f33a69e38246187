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

When (:meth:`PreviousOwners.committed`): a holder that is no longer a member of the group (its
session expired: dead or a zombie) is fenced at once, without the bound's wait; the members
are the group's description (a member's ``group.instance.id`` with static membership, else its
``client.id``, which :func:`~fraudstream.kafka.topics.group_member_config` sets to the
transactional id). A holder still a member (a live owner whose commit is completing), or any
holder when the members cannot be told apart (the description failed, or a ``client.id`` of
``[kafka.client]`` hides them), is waited for up to the bound first, as before.

A fencing producer's ``init_transactions`` returns only on its InitProducerId's retry, which
librdkafka sends 500 ms after the coordinator answered that it is aborting the transaction. The
first request is what fences (the coordinator bumps the epoch and aborts), so the takeover goes
on as soon as the transaction is seen resolved (its changelog partitions stable past their
end), and the producer finishes on a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.config import Config
from fraudstream.kafka.changelog import WRITER_HEADER, _watermarks
from fraudstream.kafka.stats import RunStats
from fraudstream.kafka.topics import client_config, transactional_id

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.02
"""How often a pending transaction is checked for (the bound's wait)."""
RESOLVED_CHECK_S = 0.005
"""How often a fenced transaction's changelog partitions are checked for its abort."""
UNSTABLE_PROBE_S = 0.1
"""How long a committed-offsets fetch may take before the offsets count as held by an open
transaction, at a takeover's first check (the bound's wait uses the bound)."""


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
        self.at_once = 0
        """Of those, the fenced at once (not members of the group): the bound not waited."""
        self._admin: AdminClient | None = None
        self._readers: dict[str, Consumer] = {}
        if config.kafka.exactly_once and config.kafka.fence_pending_after_ms > 0:
            # made now, connected by the time a takeover needs them (a new client costs tens of ms)
            self._admin = AdminClient(self.client)
            for isolation in ("read_uncommitted", "read_committed"):
                self._reader(isolation)

    def committed(
        self, consumer: Consumer, partitions: list[int], steps: Steps | None = None
    ) -> list[TopicPartition]:
        """The committed input offsets of ``partitions`` (the group consumer's stable fetch),
        once no previous owner's transaction is open on them: its owner fenced at once when it
        is no longer a member of the group, else waited for up to
        ``kafka.fence_pending_after_ms``, then fenced. ``steps`` is told when each step ended."""
        mark = steps.mark if steps is not None else _no_mark
        k = self.config.kafka
        tps = [TopicPartition(k.input_topic, p) for p in partitions]
        bound = k.fence_pending_after_ms / 1000
        if k.exactly_once and bound > 0:
            deadline = time.monotonic() + bound
            open_logs = self._open_changelogs(partitions, time.monotonic())
            unstable = self._unstable(consumer, partitions, open_logs, min(bound, UNSTABLE_PROBE_S))
            mark("pending_checked")
            if open_logs or unstable:
                writers = pending_writers(self._reader, self.topic, open_logs, unstable)
                mark("writers_found")
                members = self._members()
                mark("members_checked")
                gone = {w: ps for w, ps in writers.items() if members is not None and w not in members}
                if gone:
                    self._resolved(self._fence(gone, None), open_logs, unstable)
                    mark("fenced")
                if len(gone) < len(writers):  # a member's, or members unknown: the bound first
                    self._wait_then_fence(consumer, partitions, tps, deadline, mark)
        committed: list[TopicPartition] = consumer.committed(tps, timeout=k.transaction_timeout_ms / 1000)
        mark("offsets_stable")
        return committed

    def _wait_then_fence(
        self,
        consumer: Consumer,
        partitions: list[int],
        tps: list[TopicPartition],
        deadline: float,
        mark: Callable[[str], None],
    ) -> None:
        """Waits until ``deadline`` for the transactions pending on ``partitions`` to end,
        then fences their writers."""
        offsets = _committed_within(consumer, tps, max(deadline - time.monotonic(), UNSTABLE_PROBE_S))
        open_logs = self._open_changelogs(partitions, deadline)
        mark("bound_waited")
        if offsets is None or open_logs:
            unstable = [] if offsets is not None else self._unstable(consumer, partitions, open_logs, 0.2)
            writers = pending_writers(self._reader, self.topic, open_logs, unstable)
            waited = self.config.kafka.fence_pending_after_ms
            self._resolved(self._fence(writers, waited), open_logs, unstable)
            mark("fenced")

    def _open_changelogs(self, partitions: list[int], deadline: float) -> dict[int, int]:
        """The changelog partitions with an open transaction at ``deadline`` (checked until
        then), each with its last stable offset."""
        end = {p: _watermarks(self._reader("read_uncommitted"), TopicPartition(self.topic, p), 30)[1]
               for p in partitions}  # fmt: skip
        while True:
            pending = {p: stable for p, stable in self._stable_ends(end).items() if stable < end[p]}
            if not pending or time.monotonic() >= deadline:
                return pending
            end = {p: end[p] for p in pending}
            time.sleep(CHECK_INTERVAL_S)

    def _stable_ends(self, partitions: dict[int, int] | list[int]) -> dict[int, int]:
        """The last stable offset of each changelog partition (a ``read_committed`` reader's high
        watermark)."""
        reader = self._reader("read_committed")
        return {p: _watermarks(reader, TopicPartition(self.topic, p), 30)[1] for p in partitions}

    def _unstable(
        self, consumer: Consumer, partitions: list[int], open_logs: dict[int, int], probe: float
    ) -> list[int]:
        """Of the partitions without an open changelog transaction, those whose offsets are
        still unstable (a fetch of at most ``probe`` seconds each: a stable one answers at once)."""
        topic = self.config.kafka.input_topic
        rest = [p for p in partitions if p not in open_logs]
        if not rest or _committed_within(consumer, [TopicPartition(topic, p) for p in rest], probe):
            return []
        return [p for p in rest if _committed_within(consumer, [TopicPartition(topic, p)], probe) is None]

    def _members(self) -> set[str] | None:
        """The transactional ids of the group's members, or None when they cannot be told: the
        group's description failed, or its members do not each name a distinct id of this group,
        this instance's among them."""
        group = self.config.kafka.group_id
        try:
            if self._admin is None:
                self._admin = AdminClient(self.client)
            future = self._admin.describe_consumer_groups([group], request_timeout=5)[group]
            members = future.result(timeout=5).members
        except (KafkaException, TimeoutError) as exc:
            log.warning("cannot describe group %s (%s): pending writers are waited for first", group, exc)
            return None
        ids = [f"{group}-{m.group_instance_id}" if m.group_instance_id else m.client_id for m in members]
        if (
            len(set(ids)) < len(ids)
            or self.own_id not in ids
            or not all(i.startswith(f"{group}-") for i in ids)
        ):
            log.info(
                "members of group %s not told apart by their ids %s: pending writers are waited for first",
                group,
                sorted(ids),
            )
            return None
        return set(ids)

    def _fence(self, writers: dict[str, list[int]], waited_ms: float | None) -> list[Fencing]:
        """Starts fencing each of ``writers`` (after ``waited_ms`` of the bound; None: at once,
        not a member)."""
        prefix = f"{self.config.kafka.group_id}-"
        started = []
        for writer, partitions in sorted(writers.items()):
            if writer == self.own_id or not writer.startswith(prefix):
                log.warning(
                    "partitions %s wait for a transaction of %r, not fenced (not another instance of "
                    "this group): waiting for the transaction timeout",
                    partitions,
                    writer,
                )
                continue
            started.append(Fencing(self.config, writer, partitions))
            self.fenced.append(writer)
            self.stats.fencings += 1
            self.at_once += waited_ms is None
            log.warning(
                "partitions %s: an open transaction of %s, %s: fencing it",
                partitions,
                writer,
                "not a member of the group (dead or a zombie)"
                if waited_ms is None
                else f"still open after {waited_ms:.0f} ms (dead or a zombie)",
            )
        return started

    def _resolved(self, fencings: list[Fencing], open_logs: dict[int, int], unstable: list[int]) -> None:
        """Returns once the fenced transactions are resolved: each fencing's
        ``init_transactions`` returned, or, sooner, the changelog partitions its writer held
        are stable past their end (its abort markers written; offsets alone: its return)."""
        watched = {p for f in fencings for p in f.partitions}
        ends = {p: end for p, end in self._log_ends(open_logs).items() if p in watched}
        by_changelog = not watched & set(unstable)
        while fencings:
            if by_changelog and all(stable >= ends[p] for p, stable in self._stable_ends(ends).items()):
                break
            fencings = [f for f in fencings if not f.wait(RESOLVED_CHECK_S)]
        for f in fencings:
            log.info("transaction of %s aborted in %.0f ms (fencing still under way)", f.writer, f.elapsed_ms)

    def _log_ends(self, open_logs: dict[int, int]) -> dict[int, int]:
        reader = self._reader("read_uncommitted")
        return {p: _watermarks(reader, TopicPartition(self.topic, p), 30)[1] for p in open_logs}

    def _reader(self, isolation: str) -> Consumer:
        """A reader of the changelog by isolation level (kept from one takeover to the next)."""
        if isolation not in self._readers:
            self._readers[isolation] = _reader(self.client, isolation)
        return self._readers[isolation]

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


class Fencing:
    """The fencing of one transactional id, on a thread of its own (see the module docstring)."""

    def __init__(self, config: Config, writer: str, partitions: list[int]) -> None:
        self.writer = writer
        self.partitions = partitions
        self.began = time.monotonic()
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(config,), name=f"fence-{writer}", daemon=True)
        self._thread.start()

    def _run(self, config: Config) -> None:
        try:
            fence(config, self.writer)
            log.info("fenced %s in %.0f ms", self.writer, self.elapsed_ms)
        except BaseException as exc:  # raised by wait(), logged in case none waits any more
            self.error = exc
            log.warning("fencing %s failed after %.0f ms: %s", self.writer, self.elapsed_ms, exc)
        finally:
            self._done.set()

    @property
    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.began) * 1000

    def wait(self, timeout: float) -> bool:
        """Whether ``init_transactions`` returned (within ``timeout``); its error is raised."""
        if not self._done.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True


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


def members_with_own_id(admin: AdminClient, config: Config) -> list[str] | None:
    """The member ids of the group's members that carry this instance's id (its
    ``group.instance.id``, or the transactional id as ``client.id``): this instance's consumer,
    and any newer incarnation of it or other instance started with the same
    ``kafka.instance_id``. None when the group's description failed."""
    group = config.kafka.group_id
    own = transactional_id(config)
    try:
        members = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=5).members
    except (KafkaException, TimeoutError) as exc:
        log.warning("cannot describe group %s (%s)", group, exc)
        return None
    return [
        m.member_id
        for m in members
        if (f"{group}-{m.group_instance_id}" if m.group_instance_id else m.client_id) == own
    ]


def pending_writers(
    readers: Callable[[str], Consumer], topic: str, open_logs: dict[int, int], unstable: list[int]
) -> dict[str, list[int]]:
    """Writer id -> partitions it holds: for each changelog partition in ``open_logs``
    (partition -> last stable offset), the writer of the record at its last stable offset; for
    each of ``unstable``, the writer of its last committed changelog record. ``readers`` gives
    a reader of the changelog by isolation level."""
    writers: dict[str, list[int]] = {}
    for p, lso in open_logs.items():
        first = _records_from(readers("read_uncommitted"), TopicPartition(topic, p, lso), 1)
        _add_writer(writers, first[:1], p)
    for p in unstable:
        _add_writer(writers, _last_committed(readers("read_committed"), topic, p), p)
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
            # a call returns once it has its count or its timeout passed: short ones, so that a
            # few records are not held for the whole timeout
            for m in reader.consume(num_messages=limit or 500, timeout=0.01):
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


__all__ = ["Fencing", "PreviousOwners", "Steps", "fence", "members_with_own_id", "pending_writers"]
