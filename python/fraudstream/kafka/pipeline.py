"""Exactly-once consume -> process -> produce over Kafka: the poll loop of one instance.

The roles are split as Kafka Streams splits them:

- :class:`~fraudstream.kafka.task.PartitionTask` (StreamTask): one input partition's decode ->
  dedup -> processor -> output records, with no Kafka calls;
- :class:`~fraudstream.kafka.tasks.TaskManager` (TaskManager): assignment, restore from the
  changelog, revocation, lost partitions, rewinds;
- :class:`~fraudstream.kafka.transactions.TransactionalProducer` (RecordCollector and the EOS
  producer): begin, send, commit with the offsets, abort, fencing, the watchdog;
- :class:`KafkaPipeline` (StreamThread, this module): a short poll loop that hands records to
  their tasks, sends what they return, commits on a cadence and ticks quiet partitions by the
  wall clock.

One processing interval is one Kafka transaction holding the alerts, the scored transactions,
the dead letters, the changelog records of every partition whose state changed, and the
consumer offsets (KIP-447). A ``read_committed`` reader therefore sees an interval's output if
and only if its input offsets are committed; after any crash the instance that takes a
partition over resumes from exactly the state and offsets of the last commit.

Commit cadence: every ``commit_interval_ms`` or ``commit_max_records``, and as soon as
``alert_commit_min_interval_ms`` has passed after an alert, so alert visibility is bounded by a
latency budget rather than the interval.

Overlapped commits (``kafka.overlap_commits``): a commit writes the changelog and takes the
offsets on the loop's thread, then sends the offsets and commits on a thread of its own while
the loop consumes and processes the next records; their outputs are sent once the commit has
landed, into the next transaction. The wait for the broker's round trips (a third of the loop's
time under load) then overlaps the processing. If the commit fails, the records processed
meanwhile are dropped with the rest: the abort rewinds every task to the last commit.
At-least-once overlaps the wait for its outputs' delivery the same way; the consumer's offset
commit that follows stays on the loop's thread, where a rebalance callback may wait for it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.config import Config
from fraudstream.errors import FencedError, StreamError
from fraudstream.kafka.cadence import CommitCadence
from fraudstream.kafka.changelog import CHUNK_BYTES, ChangelogWriter
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.fencing import members_with_own_id
from fraudstream.kafka.gauges import PipelineGauges
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.stats import COMMITTED_COUNTS, RunStats
from fraudstream.kafka.table_source import KafkaTables
from fraudstream.kafka.task import ALERTS, DEAD_LETTERS, DLQ_RECORD_OVERHEAD, SCORES, VIEWS, TaskOutput
from fraudstream.kafka.tasks import TaskManager
from fraudstream.kafka.topics import (
    client_config,
    ensure_topics,
    group_member_config,
    max_message_bytes,
    transactional_id,
)
from fraudstream.kafka.transactions import CommitAborted, TransactionalProducer, producer_max_message_bytes
from fraudstream.kafka.watchdog import Watchdog
from fraudstream.metrics import PipelineMetrics
from fraudstream.processor import Processor

log = logging.getLogger(__name__)

MAX_ABORTS_IN_A_ROW = 5
MAX_FENCED = 3
FENCED_WINDOW_S = 600.0
"""An instance fenced more than MAX_FENCED times within FENCED_WINDOW_S stops: another live
instance takes the same transactional id each time (:meth:`KafkaPipeline._go_on_after_fencing`)."""


@dataclass
class _Committing:
    """A commit handed to the commit thread, and what the loop counted when it began."""

    future: concurrent.futures.Future[float]
    """The commit; its result is when it landed (monotonic seconds)."""
    began: float
    counts: dict[str, int]
    """The committed counts of the run's statistics as of this commit."""
    offsets: list[TopicPartition]
    """At-least-once: the offsets to commit, on the loop's thread, once the outputs landed."""


class KafkaPipeline:
    """The transactional processing loop of one instance (``fraudstream run``).

    Args:
        config: the whole configuration (validated here).
        processor_factory: builds one partition's processor; default: the ``[detector]``
            section's (:func:`fraudstream.kafka.processors.processor_factory`).
    """

    def __init__(self, config: Config, processor_factory: Callable[[], Processor] | None = None) -> None:
        self.config = config.validate()
        k = config.kafka
        self.tables = KafkaTables(self.config)
        """The ``[tables.NAME]`` tables, caught up before any transaction is processed."""
        self.processor_factory = processor_factory or _default_factory(self.config, self.tables)
        self.stats = RunStats()
        self._stop = False
        self._failed = False
        self._aborts_in_a_row = 0
        self._uncommitted = 0
        self._alerts_pending = 0
        self._last_commit = time.monotonic()
        self.cadence = CommitCadence(k)
        self._assigned_at = 0.0
        self._counts_at_commit = {c: 0 for c in COMMITTED_COUNTS}
        self._fenced_at: list[float] = []
        """When this instance was fenced and went on (:meth:`_go_on_after_fencing`)."""
        common = client_config(config)
        # first: a port in use is a configuration error before any client exists
        self.metrics = PipelineMetrics(config.metrics.port, config.metrics.host)
        self.gauges = PipelineGauges(self.metrics, k.input_topic)
        self.consumer = Consumer(
            {
                **group_member_config(config),  # benches/group_sim.py joins groups with the same
                "enable.partition.eof": False,
                # large fetches: the loop takes thousands of records per call
                "max.partition.fetch.bytes": 8 << 20,
                "fetch.max.bytes": 64 << 20,
                # the fetch queue's length each second: the input queue gauge
                "statistics.interval.ms": 1000,
                "stats_cb": self.gauges.on_consumer_stats,
            }
        )
        self.watchdog = Watchdog(k.stuck_call_timeout_ms / 1000, k.shutdown_timeout_ms / 1000, self.stop)
        """Tracks blocking client calls; armed by ``fraudstream run`` (:mod:`.watchdog`)."""
        self.transactions = TransactionalProducer(self.config, self.watchdog)
        self.changelog = ChangelogWriter(
            self.transactions.producer,
            k.changelog_topic,
            k.changelog_snapshot_min_bytes,
            changelog_chunk_bytes(config),
        )
        self.transactions.on_renew.append(lambda p: setattr(self.changelog, "producer", p))
        self.tasks = TaskManager(
            self.config, self.consumer, self.changelog, self.processor_factory, self.stats
        )
        self.admin = AdminClient(common)
        self._workers = (
            concurrent.futures.ThreadPoolExecutor(k.process_threads, thread_name_prefix="fraudstream-process")
            if k.process_threads > 1
            else None
        )
        self._committer = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fraudstream-commit")
            if k.overlap_commits
            else None
        )
        self._committing: _Committing | None = None
        """The commit running on the commit thread, if any (:meth:`_finish_commit`)."""
        self._topics = {
            ALERTS: k.alerts_topic,
            SCORES: k.scores_topic,
            DEAD_LETTERS: k.dead_letter_topic,
            VIEWS: k.view_topic,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the loop to finish its interval, commit and return (signal-handler safe)."""
        self._stop = True

    def run(self, idle_exit_s: float | None = None, max_seconds: float | None = None) -> RunStats:
        """Processes until :meth:`stop`, ``idle_exit_s`` without input, or ``max_seconds``."""
        k = self.config.kafka
        ensure_topics(self.config)
        self.tables.start(self.consumer)  # checks the table topics, loads the global tables
        # every dead letter fits its topic and the producer, whatever the input record's size,
        # and so does every batch of them
        dlq_limit = max_message_bytes(self.config, k.dead_letter_topic)
        self.tasks.dlq_max_bytes = min(dlq_limit, producer_max_message_bytes(self.config))
        self.transactions.fit_batches(dlq_limit - DLQ_RECORD_OVERHEAD)
        self.transactions.init()
        self.consumer.subscribe(
            [k.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.tasks.keep_warm()  # standby copies from the start, moved once partitions are assigned
        began = last_input = time.monotonic()
        try:
            while not self._stop:
                try:
                    now, got_input = self._step()
                except FencedError as exc:
                    self._go_on_after_fencing(exc)  # (or re-raises: this instance must stop)
                    continue
                if got_input:
                    last_input = now
                if now >= self.gauges.next_update:  # also while idle: lag falls to 0 once all is done
                    self._update_gauges(now)
                # idle since the later of the last record and the last assignment: a group join
                # and restore that outlast the idle time must not end the run before it consumed
                idle_s = now - max(last_input, self._assigned_at)
                if idle_exit_s is not None and idle_s >= idle_exit_s and not self._uncommitted:
                    log.info("no input for %.1f s: exiting", idle_exit_s)
                    break
                if max_seconds is not None and now - began >= max_seconds:
                    break
            self._finish_commit()
            if self._uncommitted or self.transactions.in_txn:
                self._commit(overlap=False)
            self._update_gauges(time.monotonic())  # the figures at exit, whatever the cadence
        except FencedError:
            self._failed = True
            log.error("this instance was fenced by a newer one (transactional id %s-%s): stopping",
                      k.group_id, k.instance_id)  # fmt: skip
            raise
        except BaseException:
            self._failed = True
            raise
        finally:
            self._close()
        return self.stats

    def _step(self) -> tuple[float, bool]:
        """One pass of the loop: table updates, a consume call and its records, the idle ticks,
        a commit when due. Returns when the consume call returned and whether it had records."""
        k = self.config.kafka
        self.tables.poll()  # table updates that arrived since, without waiting
        msgs = self.consumer.consume(num_messages=k.consume_batch, timeout=k.poll_timeout_ms / 1000)
        now = time.monotonic()
        if msgs:
            if self.stats.first_input_at is None:
                self.stats.first_input_at = now
            busy_from = time.perf_counter()
            self._aborting_on_refusal(functools.partial(self._process, msgs))
            self.gauges.busy_s += time.perf_counter() - busy_from
        if k.idle_timeout_ms:
            self._aborting_on_refusal(self._tick_idle)
        if self._commit_due(now):
            self._commit()
        return now, bool(msgs)

    def _close(self) -> None:
        """Leaves the group and flushes. After a failure nothing more is committed (the open
        transaction is left to abort) and errors here are logged: the failure is what the
        caller must see."""
        with self.watchdog.call("close"):
            try:
                self.consumer.close()
                self.tasks.close()
                self.tables.close()
                self.transactions.flush(10)
                self.changelog.wait_truncated(10)
            except (KafkaException, StreamError) as exc:
                if not self._failed:
                    raise
                log.warning("while closing after a failure: %s", exc)
            finally:
                if self._workers is not None:
                    self._workers.shutdown(wait=True)
                if self._committer is not None:  # (after a failure a commit may still be running)
                    self._committer.shutdown(wait=True)
        self.metrics.close()

    # -- processing ---------------------------------------------------------------------------

    def _process(self, msgs: list[Message]) -> None:
        batch = ConsumedBatch.of(msgs)  # one Rust call: no Python loop over the messages
        for row in batch.error_rows.tolist():
            err = msgs[row].error()
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
        work: list[tuple[int, ConsumedBatch]] = []
        for partition, rows in batch.by_partition():
            # Only records of partitions we own, past what is already processed: a consume call
            # that ran a rebalance can still return records fetched before it.
            rows = rows[self.tasks.accepted(partition, batch.offsets[rows])]
            if len(rows):
                work.append((partition, batch.take(rows)))
        self.stats.skipped += len(batch) - len(batch.error_rows) - sum(len(part) for _, part in work)
        # On this thread the partitions are processed first, while the previous interval's commit
        # (if one runs) lands, and sent after it; worker threads start once it has landed.
        here = self._workers is None or len(work) < 2
        outs = [self.tasks.tasks[partition].process_batch(part) for partition, part in work] if here else None
        if not self._finish_commit():
            return  # aborted: every task went back to the last commit, these records too
        self.transactions.begin()
        if outs is None:
            self._process_side_by_side(work)
        else:
            for (partition, part), out in zip(work, outs, strict=True):
                self._processed(partition, part, out)
        self.transactions.poll()

    def _process_side_by_side(self, work: list[tuple[int, ConsumedBatch]]) -> None:
        """The partitions of ``work`` processed on the worker threads (``kafka.process_threads``)
        while this thread sends each finished one's records, in the order of ``work``."""
        assert self._workers is not None
        futures = [self._workers.submit(self.tasks.tasks[p].process_batch, part) for p, part in work]
        try:
            for (partition, part), future in zip(work, futures, strict=True):
                self._processed(partition, part, future.result())
        finally:
            # a send refused (an abort rewinds every task) or a task failed: no task may still
            # be running when this returns
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)

    def _processed(self, partition: int, batch: ConsumedBatch, out: TaskOutput) -> None:
        """Sends a partition's output and moves its position past ``batch``."""
        self._emit(partition, out)
        self.tasks.processed(partition, out.next_offset)
        self._uncommitted += len(batch)
        for alert in out.alerts:  # latency from the trigger's message timestamp (the processor's)
            if alert.latency_ms is not None:
                self.metrics.alert_latency.observe(alert.latency_ms)

    def _emit(self, partition: int, out: TaskOutput) -> None:
        """Sends a task's records into the open transaction and counts them."""
        waited = 0.0
        for role, records in out.records.items():
            if records:
                waited += self.transactions.send_batch(self._topics[role], records, partition)
        for letter in out.dead_letters:
            waited += self.transactions.send_dead_letter(self._topics[DEAD_LETTERS], letter, partition)
        if waited:
            self.stats.backpressure_s += waited
            self.metrics.backpressure.inc(waited)
        s = self.stats
        s.consumed += out.consumed
        s.processed += out.processed
        s.dead_lettered += out.dead_lettered
        s.duplicates += out.duplicates
        s.future += out.future
        s.truncated += out.truncated
        s.suppressed += out.suppressed
        s.alerts += len(out.alerts)
        s.scored += len(out.records[SCORES])
        s.view_rows += len(out.records.get(VIEWS, ()))
        self._alerts_pending += len(out.alerts)
        self.metrics.consumed.inc(out.consumed)
        self.metrics.processed.inc(out.processed)
        self.metrics.dead_lettered.inc(out.dead_lettered)
        self.metrics.alerts.inc(len(out.alerts))

    def _tick_idle(self) -> None:
        """Advances partitions that had no record for ``idle_timeout_ms`` by the wall clock."""
        now_ms = time.time() * 1000
        idle_ms = self.config.kafka.idle_timeout_ms
        for partition, task in self.tasks.tasks.items():
            if now_ms - task.last_input_ms >= idle_ms:
                if not self._finish_commit():
                    return
                self.transactions.begin()
                out = task.advance(int(now_ms))
                task.last_input_ms = now_ms  # next tick one idle period later
                self._emit(partition, out)
                self.tasks.processed(partition, None)
                self._uncommitted += 1  # a state change to commit, though no record
                self.stats.idle_ticks += 1

    def _aborting_on_refusal(self, work: Callable[[], None]) -> None:
        """Runs ``work``; when the open transaction refuses its records, aborts and rewinds (the
        rest of the consumed batch is dropped: the rewind seeks back to the last commit)."""
        try:
            work()
        except CommitAborted as exc:
            log.warning("transaction must abort (%s): rewinding to the last commit", exc)
            self._abort_and_rewind()

    def _commit_due(self, now: float) -> bool:
        if self._committing is not None:
            if not self._committing.future.done():
                # the cadence counts from the running commit's end; an alert waits for that only
                return self._alerts_pending > 0
            if not self._finish_commit():
                return False
        return self.cadence.due((now - self._last_commit) * 1000, self._uncommitted, self._alerts_pending)

    def _commit(self, overlap: bool = True) -> None:
        """Commits what was processed since the last commit: on the commit thread when
        ``overlap`` and ``kafka.overlap_commits`` say so (the loop goes on; :meth:`_finish_commit`
        waits for it before anything more is sent), else here."""
        if not self._finish_commit():
            return
        began = time.monotonic()
        try:
            if self.config.kafka.exactly_once:
                self.transactions.begin()
            with self.transactions.refusal_aborts():
                self.tasks.write_changelog()
            offsets = self.tasks.offsets()
            counts = {c: getattr(self.stats, c) for c in COMMITTED_COUNTS}
            self._uncommitted = 0  # (what comes now goes into the next transaction)
            self._alerts_pending = 0
            if overlap and self._committer is not None:
                eos = self.config.kafka.exactly_once
                group = self.consumer.consumer_group_metadata() if offsets and eos else None
                future = self._committer.submit(self._commit_on_thread, offsets, group)
                self._committing = _Committing(future, began, counts, offsets)
                return
            self.transactions.commit(offsets, self.consumer)
        except CommitAborted as exc:
            log.warning("transaction must abort (%s): rewinding to the last commit", exc)
            self._abort_and_rewind()
            return
        self._committed(began, time.monotonic(), counts)

    def _commit_on_thread(self, offsets: list[TopicPartition], group: object) -> float:
        if self.config.kafka.exactly_once:
            self.transactions.commit_with(offsets, group)
        else:  # the outputs' delivery; the offsets follow on the loop's thread (_finish_commit)
            self.transactions.deliver()
        return time.monotonic()

    def _finish_commit(self, rewind: bool = True) -> bool:
        """Waits for the commit running on the commit thread, if any. Returns whether the state
        is as committed: False when it had to abort (the tasks are then rewound to the last
        commit, unless ``rewind`` is False: the caller rewinds)."""
        committing, self._committing = self._committing, None
        if committing is None:
            return True
        try:
            landed = committing.future.result()
        except CommitAborted as exc:
            log.warning("transaction must abort (%s): rewinding to the last commit", exc)
            if rewind:
                self._abort_and_rewind()
            return False
        if not self.config.kafka.exactly_once:
            # the consumer's own commit stays on its thread: a rebalance callback waits here
            self.transactions.commit_offsets(committing.offsets, self.consumer)
            landed = time.monotonic()
        self._committed(committing.began, landed, committing.counts)
        return True

    def _committed(self, began: float, landed: float, counts: dict[str, int]) -> None:
        self._aborts_in_a_row = 0
        self._counts_at_commit = counts
        self.changelog.truncate(self.admin)
        self.tasks.committed()
        self._last_commit = landed
        took_ms = (landed - began) * 1000
        self.stats.commits += 1
        self.stats.commit_ms.append(took_ms)
        self.cadence.committed(took_ms)
        self.stats.last_commit_at = landed
        self.metrics.commits.inc()
        self.metrics.commit_latency.observe(took_ms)

    def _go_on_after_fencing(self, exc: FencedError) -> None:
        """Another producer took this instance's transactional id. A member of the group with
        this instance's id did (a newer incarnation, or one started with the same
        ``instance_id``): this instance stops (re-raises). Otherwise it was fenced by a takeover
        that judged it gone (it stalled past its session: :mod:`.fencing`) and is alive after
        all. As Kafka Streams does with a migrated task, it then goes on: a new producer, every
        partition still assigned back to its last commit (offset and state), the others dropped;
        a consumer dropped from the group rejoins at its next poll. Fenced more than
        :data:`MAX_FENCED` times within :data:`FENCED_WINDOW_S`, it stops all the same."""
        now = time.monotonic()
        self._fenced_at = [t for t in self._fenced_at if now - t < FENCED_WINDOW_S] + [now]
        k = self.config.kafka
        own = transactional_id(self.config)
        if len(self._fenced_at) > MAX_FENCED:
            log.error("fenced %d times within %.0f s: another live instance seems to use the "
                      "transactional id %s (kafka.instance_id must be unique)",
                      len(self._fenced_at), FENCED_WINDOW_S, own)  # fmt: skip
            raise exc
        # A member beside this one with its id: a newer incarnation, which must win. (While this
        # consumer rejoins, dropped from the group by its stall, the group lists it under a new
        # member id: not a rival, and not told apart from one; a rival then is what MAX_FENCED
        # ends.)
        member, members = self.consumer.memberid(), members_with_own_id(self.admin, self.config)
        if members and member in members and len(members) > 1:
            log.error("another member of group %s has this instance's id %s", k.group_id, own)
            raise exc
        log.warning("fenced while alive (%s): a new producer, every partition back to its last commit", exc)
        with contextlib.suppress(FencedError):  # (a commit running on its thread: landed, or void)
            self._finish_commit(rewind=False)  # (the rewind below follows either way)
        self.transactions.renew()
        gone = frozenset(self.tasks.tasks) - {tp.partition for tp in self.consumer.assignment()}
        self._rewind(gone)
        self.tables.revoke(sorted(gone))
        self.stats.renewed_after_fencing += 1

    def _abort_and_rewind(self, lost: frozenset[int] = frozenset()) -> None:
        """Aborts the open transaction and puts every partition still owned back to the last
        commit: its offset and its state. ``lost`` partitions are dropped."""
        self.transactions.abort()
        self.stats.aborts += 1
        self.metrics.aborts.inc()
        self._aborts_in_a_row += 1
        if self._aborts_in_a_row > MAX_ABORTS_IN_A_ROW:
            raise StreamError(
                f"{self._aborts_in_a_row} transactions in a row had to abort; the last error repeats "
                "on the same input, so the instance stops instead of looping"
            )
        self._rewind(lost)

    def _rewind(self, lost: frozenset[int]) -> None:
        """Every partition still owned back to the last commit, ``lost`` ones dropped (the open
        transaction is gone: aborted, or its producer fenced)."""
        for count, value in self._counts_at_commit.items():  # what the aborted work counted is void
            setattr(self.stats, count, value)
        self.tasks.rewind(lost)
        self._uncommitted = 0
        self._alerts_pending = 0

    def _update_gauges(self, now: float) -> None:
        self.gauges.update(now, self.tasks, self.consumer, self.stats)

    # -- rebalancing (consumer callbacks) -------------------------------------------------------

    # With cooperative rebalancing the callbacks name only the partitions that move: the
    # others keep their tasks, and their processing goes on after the callback returns. One
    # exception: librdkafka runs the group protocol on its own thread, so a commit can race the
    # generation bump of a join and be refused (ILLEGAL_GENERATION, librdkafka issue 4059);
    # the transaction then aborts and every owned partition rewinds to the last commit.

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._finish_commit()  # (its outcome first: an abort rewinds the partitions owned)
        self.tables.assign([tp.partition for tp in partitions])  # copartitioned: caught up first
        self.tasks.assign([tp.partition for tp in partitions])  # restored before any record
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.stats.rebalances += 1
        self.stats.partitions_assigned += len(partitions)
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._failed:
            self._finish_commit()
        if (self._uncommitted or self.transactions.in_txn) and not self._failed:
            self._commit(overlap=False)  # everything processed so far, the revoked partitions' work included
        self.tasks.revoke([tp.partition for tp in partitions])
        self.tables.revoke([tp.partition for tp in partitions])
        self._unassign(consumer, partitions)
        self.stats.partitions_revoked += len(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = frozenset(tp.partition for tp in partitions)
        self._finish_commit(rewind=False)  # (if it aborts, the rewind below puts everything back)
        log.warning("partitions lost: %s; aborting the open transaction", sorted(lost))
        self._abort_and_rewind(lost)
        self.tables.revoke(sorted(lost))
        if self.config.kafka.exactly_once:  # lost: the group or the broker went away
            self.transactions.renew()
        self._unassign(consumer, partitions)
        self.stats.partitions_lost += len(partitions)

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    @property
    def _cooperative(self) -> bool:
        return self.config.kafka.assignment_strategy == "cooperative-sticky"


def _default_factory(config: Config, tables: KafkaTables) -> Callable[[], Processor]:
    return processor_factory(config, tables.lookups())


def changelog_chunk_bytes(config: Config) -> int:
    """Changelog payload per record: 512 KiB, less when the producer's local queue is set
    smaller (``queue.buffering.max.kbytes``), so that one record always fits in it."""
    queue_kbytes = int(config.kafka.client.get("queue.buffering.max.kbytes", 1 << 20))
    return max(1 << 10, min(CHUNK_BYTES, queue_kbytes * 1024 // 4))


__all__ = ["FencedError", "KafkaPipeline", "RunStats", "changelog_chunk_bytes"]
