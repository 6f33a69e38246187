"""Exactly-once consume -> process -> produce over Kafka.

One processing interval is one Kafka transaction holding: the alerts, the dead-letter records,
the state changelog records and the consumer offsets (``send_offsets_to_transaction`` with the
consumer's group metadata, KIP-447). A ``read_committed`` reader therefore sees the output of an
interval if and only if its input offsets are committed, and after any crash the restarted
instance resumes from exactly the state and offsets of the last commit.

State: one :class:`~fraudstream.WindowedAggregation` per assigned input partition (keys are
partitioned by card, so a card's windows live with its partition). At each commit the keys that
changed go to the changelog topic (partitioned like the input), with a full snapshot whenever
the changes since the last one outgrow the state; older records are deleted, so a restore reads
one snapshot and the changes after it (:mod:`fraudstream.kafka.changelog`). On assignment, state
is restored before any record of the partition is processed; on revocation, the open
transaction is committed and the state dropped; when partitions are lost, it is aborted.

Commit cadence: every ``commit_interval_ms`` or ``commit_max_records``, and as soon as
``alert_commit_min_interval_ms`` has passed after an alert, so alert visibility is bounded by a
latency budget rather than the interval.

Errors: retriable errors are retried; errors that require an abort abort the transaction, seek
back to the committed offsets and restore the state; fatal errors (a fenced producer) stop the
instance with a clear log line.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import Config
from fraudstream.errors import FencedError, StreamError
from fraudstream.kafka.changelog import CHUNK_BYTES, ChangelogWriter, PartitionLog, read_changelog
from fraudstream.kafka.client_log import logging_config
from fraudstream.kafka.producing import produce_waiting
from fraudstream.kafka.schema import decode_batch
from fraudstream.kafka.state import PartitionState, make_dedup_engine
from fraudstream.kafka.watchdog import Watchdog
from fraudstream.metrics import PipelineMetrics
from fraudstream.windows import EmitKind, WindowedAggregation, hopping, to_millis

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ABORTS_IN_A_ROW = 5
COMMITTED_COUNTS = ("consumed", "processed", "dead_lettered", "alerts", "duplicates", "skipped")
"""RunStats fields that count committed results: an abort rolls them back to the last commit."""
DLQ_VALUE_PREFIX_BYTES = 1_024


@dataclass
class RunStats:
    """Counters of one run. Record counts are those of committed transactions (an abort rolls
    them back; Prometheus counters, which count work done, do not); ``consumed == processed +
    dead_lettered`` always holds."""

    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    skipped: int = 0
    """Records returned by a consume call that ran a rebalance, for partitions no longer owned
    or already processed; they are processed once, by whoever owns the partition."""
    duplicates: int = 0
    """Records dropped as duplicates (they are also counted in ``dead_lettered``)."""
    commits: int = 0
    aborts: int = 0
    restores: int = 0
    restore_ms: float = 0.0
    restore_bytes: int = 0
    commit_ms: list[float] = field(default_factory=list)
    backpressure_s: float = 0.0
    """Time spent waiting for a full producer queue (a slow broker holding the input back)."""
    first_input_at: float | None = None
    """Monotonic time of the first record consumed (start-up and group join excluded)."""
    last_commit_at: float | None = None

    @property
    def processing_seconds(self) -> float:
        """From the first record consumed to the last commit."""
        if self.first_input_at is None or self.last_commit_at is None:
            return 0.0
        return max(self.last_commit_at - self.first_input_at, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        d = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("commit_ms", "first_input_at", "last_commit_at")
        }
        d["processing_seconds"] = self.processing_seconds
        if self.commit_ms:
            d["commit_ms_p50"] = float(np.percentile(self.commit_ms, 50))
            d["commit_ms_p99"] = float(np.percentile(self.commit_ms, 99))
        return d


def make_rule_engine(config: Config) -> WindowedAggregation:
    """The per-partition alert engine of the ``[rule]`` section."""
    rule = config.rule
    return WindowedAggregation(
        key="card_id",
        time="event_time",
        window=hopping(rule.size, rule.slide),
        aggregations={"n": "count", "countries": ("count_distinct", "country"), "total": ("sum", "amount")},
        out_of_orderness=rule.out_of_orderness,
        allowed_lateness=rule.allowed_lateness,
        early_fire=rule.alert_when,
    )


def client_config(config: Config) -> dict[str, Any]:
    """Settings shared by every client: bootstrap, error logging, and the pass-through
    ``[kafka.client]`` (security settings)."""
    return {
        "bootstrap.servers": config.kafka.bootstrap_servers,
        **logging_config(),
        **config.kafka.client,
    }


def ensure_topics(config: Config, timeout: float = 30.0) -> int:
    """Creates the output, dead-letter and changelog topics when missing (changelog: no retention,
    as many partitions as the input). Returns the input topic's partition count."""
    k = config.kafka
    admin = AdminClient(client_config(config))
    meta = admin.list_topics(timeout=timeout)
    if k.input_topic not in meta.topics or meta.topics[k.input_topic].error is not None:
        raise StreamError(f"input topic {k.input_topic!r} does not exist at {k.bootstrap_servers}")
    partitions = len(meta.topics[k.input_topic].partitions)
    wanted = [
        NewTopic(k.alerts_topic, num_partitions=partitions, replication_factor=1),
        NewTopic(k.dead_letter_topic, num_partitions=partitions, replication_factor=1),
        NewTopic(
            k.changelog_topic,
            num_partitions=partitions,
            replication_factor=1,
            # kept until the pipeline deletes what a newer snapshot made obsolete
            config={"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        ),
    ]
    missing = [t for t in wanted if t.topic not in meta.topics]
    if missing:
        for topic, future in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                log.debug("topic %s created concurrently", topic)
        deadline = time.monotonic() + timeout
        for t in missing:  # a new topic answers only once every partition has a leader
            while True:
                parts = admin.list_topics(t.topic, timeout=timeout).topics[t.topic].partitions
                if len(parts) == partitions and all(
                    p.leader >= 0 and p.error is None for p in parts.values()
                ):
                    break
                if time.monotonic() > deadline:
                    raise StreamError(f"topic {t.topic} has no leader for every partition after {timeout} s")
                time.sleep(0.05)
    return partitions


class KafkaPipeline:
    """The transactional processing loop of one instance (``fraudstream run``)."""

    def __init__(
        self, config: Config, engine_factory: Callable[[], WindowedAggregation] | None = None
    ) -> None:
        self.config = config.validate()
        self.engine_factory = engine_factory or (lambda: make_rule_engine(self.config))
        self.stats = RunStats()
        self.states: dict[int, PartitionState] = {}
        self._positions: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._uncommitted = 0
        self._alerts_pending = 0
        self._in_txn = False
        self._last_commit = time.monotonic()
        self._stop = False
        self._aborts_in_a_row = 0
        self._failed = False
        self._counts_at_commit = {c: 0 for c in COMMITTED_COUNTS}
        k = config.kafka
        common = client_config(config)
        self.consumer = Consumer(
            {
                **common,
                "group.id": k.group_id,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": k.session_timeout_ms,
                # three heartbeats per session: the default 3 s would expire short sessions
                "heartbeat.interval.ms": max(100, k.session_timeout_ms // 3),
                "enable.partition.eof": False,
                # large fetches: the loop takes thousands of records per call
                "max.partition.fetch.bytes": 8 << 20,
                "fetch.max.bytes": 64 << 20,
            }
        )
        self.producer = self._make_producer()
        self.changelog = ChangelogWriter(
            self.producer, k.changelog_topic, k.changelog_snapshot_min_bytes, changelog_chunk_bytes(config)
        )
        self.admin = AdminClient(common)
        self.metrics = PipelineMetrics(config.metrics.port)
        self._next_gauges = 0.0
        self.watchdog = Watchdog(k.stuck_call_timeout_ms / 1000, k.shutdown_timeout_ms / 1000, self.stop)
        """Tracks blocking client calls; armed by ``fraudstream run`` (:mod:`.watchdog`)."""

    def _make_producer(self) -> Producer:
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
                "linger.ms": 2,
                "message.max.bytes": max(2 * self.config.decode.max_record_bytes, 1 << 20),
            }
        )

    def _renew_producer(self) -> None:
        """Replaces the producer by a new one with the same transactional id (which fences the
        old one). After a broker outage, librdkafka's producer can keep a stale group coordinator
        and block in ``send_offsets_to_transaction`` (librdkafka issue 5511); a new client looks
        the coordinator up afresh."""
        old = self.producer
        self.producer = self._make_producer()
        self.changelog.producer = self.producer
        with self.watchdog.call("init_transactions"):
            self.producer.init_transactions(30)
        old.flush(0)  # its transaction is aborted (fenced); nothing of it is kept

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the loop to finish its interval, commit and return (signal-handler safe)."""
        self._stop = True

    def run(self, idle_exit_s: float | None = None, max_seconds: float | None = None) -> RunStats:
        """Processes until :meth:`stop`, ``idle_exit_s`` without input, or ``max_seconds``."""
        k = self.config.kafka
        ensure_topics(self.config)
        if k.exactly_once:
            with self.watchdog.call("init_transactions"):
                self.producer.init_transactions(30)
        self.consumer.subscribe(
            [k.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        began = last_input = time.monotonic()
        try:
            while not self._stop:
                msgs = self.consumer.consume(num_messages=k.consume_batch, timeout=k.poll_timeout_ms / 1000)
                now = time.monotonic()
                if msgs:
                    last_input = now
                    if self.stats.first_input_at is None:
                        self.stats.first_input_at = now
                    self._process(msgs)
                if self._commit_due(now):
                    self._commit()
                if idle_exit_s is not None and now - last_input >= idle_exit_s and not self._uncommitted:
                    log.info("no input for %.1f s: exiting", idle_exit_s)
                    break
                if max_seconds is not None and now - began >= max_seconds:
                    break
            if self._uncommitted or self._in_txn:
                self._commit()
        except FencedError:
            self._failed = True
            log.error(
                "this instance was fenced by a newer one (transactional id %s-%s): stopping",
                k.group_id,
                k.instance_id,
            )
            raise
        except BaseException:
            self._failed = True
            raise
        finally:
            self._close()
        return self.stats

    def _close(self) -> None:
        """Leaves the group and flushes. After a failure nothing more is committed (the open
        transaction is left to abort) and errors here are logged: the failure is what the
        caller must see."""
        with self.watchdog.call("close"):
            try:
                self.consumer.close()
                self.producer.flush(10)
                self.changelog.wait_truncated(10)
            except (KafkaException, StreamError) as exc:
                if not self._failed:
                    raise
                log.warning("while closing after a failure: %s", exc)
        self.metrics.close()

    # -- processing ---------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_txn and self.config.kafka.exactly_once:
            self.producer.begin_transaction()
            self._in_txn = True

    def _process(self, msgs: list[Message]) -> None:
        self._begin()
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
                continue
            p = _partition(m)
            # Only records of partitions we own, past what is already processed: a consume call
            # that ran a rebalance can still return records fetched before it.
            if p in self.states and _offset(m) >= self._positions.get(p, 0):
                by_partition[p].append(m)
            else:
                self.stats.skipped += 1
        for partition, batch in by_partition.items():
            self._process_partition(partition, batch)

    def _process_partition(self, partition: int, msgs: list[Message]) -> None:
        k = self.config.kafka
        values = [m.value() or b"" for m in msgs]
        decoded = decode_batch(values, self.config.decode)
        for index, reason in zip(decoded.error_index.tolist(), decoded.error_reason, strict=True):
            self._dead_letter(msgs[index], reason)
        state = self.states[partition]
        dups = state.duplicates(decoded.columns)
        if len(dups):
            for r in dups.tolist():
                self._dead_letter(
                    msgs[int(decoded.columns["source_index"][r])],
                    f"duplicate txn_id within {self.config.decode.dedup_horizon}",
                )
            self.stats.duplicates += len(dups)
            keep = np.ones(len(decoded), dtype=bool)
            keep[dups] = False
            decoded.columns = {k: v[keep] for k, v in decoded.columns.items()}
        engine = state.rule
        if len(decoded.columns["txn_id"]):
            out = engine.process(decoded.columns)
            alerts = out.select(out["kind"] == EmitKind.EARLY)
            cols = decoded.columns
            for row, trigger in zip(alerts.rows(), alerts.trigger_rows.tolist(), strict=True):
                src = int(cols["source_index"][trigger])
                row["trigger_txn_id"] = int(cols["txn_id"][trigger])
                row["trigger_offset"] = msgs[src].offset()
                row["partition"] = partition
                row["rule"] = self.config.rule.alert_when
                self._send(
                    k.alerts_topic, key=str(row["key"]).encode(), value=alert_json(row), partition=partition
                )
                self.stats.alerts += 1
                self._alerts_pending += 1
                self.metrics.alerts.inc()
                ts_type, ts = msgs[src].timestamp()
                if ts_type != TIMESTAMP_NOT_AVAILABLE and ts > 0:
                    self.metrics.alert_latency.observe(max(0.0, time.time() * 1000 - ts))
            for r in out.late_rows.tolist():  # the late side output goes to the dead-letter topic
                self._dead_letter(msgs[int(cols["source_index"][r])], "event later than the allowed lateness")
        self.stats.consumed += len(msgs)
        processed_before = self.stats.processed
        self.stats.processed = self.stats.consumed - self.stats.dead_lettered
        self.metrics.consumed.inc(len(msgs))
        self.metrics.processed.inc(self.stats.processed - processed_before)
        self._positions[partition] = _offset(msgs[-1]) + 1
        self._dirty.add(partition)
        self._uncommitted += len(msgs)
        self.producer.poll(0)

    def _update_gauges(self) -> None:
        """State size, watermarks and consumer lag (once a second: lag asks the client)."""
        now_ms = time.time() * 1000
        keys = windows = nbytes = 0
        for p, state in self.states.items():
            size = state.rule.state_size()
            keys, windows, nbytes = (
                keys + size["keys"],
                windows + size["windows"],
                nbytes + state.state_bytes(),
            )
            wm = state.rule.watermark
            if wm is not None:
                self.metrics.watermark.labels(p).set(wm)
                self.metrics.watermark_lag.labels(p).set(now_ms - wm)
            position = self._positions.get(p)
            if position is not None:
                try:
                    _, high = self.consumer.get_watermark_offsets(
                        TopicPartition(self.config.kafka.input_topic, p), cached=True
                    )
                    self.metrics.lag.labels(p).set(max(0, high - position))
                except KafkaException:
                    pass  # lag is informative; never fail processing for it
        self.metrics.keys.set(keys)
        self.metrics.windows.set(windows)
        self.metrics.state_bytes.set(nbytes)

    def snapshot_metrics(self) -> dict[str, Any]:
        """The current metrics as a dict (the same figures the HTTP endpoint serves)."""
        self._update_gauges()
        return self.metrics.snapshot()

    def _send(self, topic: str, **kwargs: Any) -> None:
        waited = produce_waiting(self.producer, topic, **kwargs)
        if waited:
            self.stats.backpressure_s += waited
            self.metrics.backpressure.inc(waited)

    def _dead_letter(self, msg: Message, reason: str) -> None:
        value = msg.value() or b""
        record = {
            "reason": reason,
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "size": len(value),
            "value": value[:DLQ_VALUE_PREFIX_BYTES].decode("utf-8", "replace"),
        }
        self._send(
            self.config.kafka.dead_letter_topic,
            key=msg.key(),
            value=json.dumps(record).encode(),
            partition=_partition(msg),
        )
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered.inc()

    def _commit_due(self, now: float) -> bool:
        if not self._uncommitted:
            return False
        k = self.config.kafka
        since_ms = (now - self._last_commit) * 1000
        return (
            since_ms >= k.commit_interval_ms
            or self._uncommitted >= k.commit_max_records
            or (self._alerts_pending > 0 and since_ms >= k.alert_commit_min_interval_ms)
        )

    def _commit(self) -> None:
        k = self.config.kafka
        began = time.monotonic()
        self._begin()
        for partition in sorted(self._dirty):
            state = self.states.get(partition)
            if state is not None:
                self.changelog.write(partition, state.snapshot, state.changes)
        offsets = [TopicPartition(k.input_topic, p, off) for p, off in sorted(self._positions.items())]
        if not k.exactly_once:  # at-least-once: outputs durable first, then the offsets
            if self.producer.flush(30) > 0:
                raise StreamError("outputs were not delivered within 30 s; offsets not committed")
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            self._committed(began)
            return
        try:
            if offsets:
                with self.watchdog.call("send_offsets_to_transaction"):
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), 30
                    )
            with self.watchdog.call("commit_transaction"):
                _retrying(lambda: self.producer.commit_transaction(30))
        except KafkaException as exc:
            self._on_commit_error(exc)
            return
        self._committed(began)

    def _committed(self, began: float) -> None:
        self._aborts_in_a_row = 0
        self._counts_at_commit = {c: getattr(self.stats, c) for c in COMMITTED_COUNTS}
        self.changelog.truncate(self.admin)
        self._in_txn = False
        self._dirty.clear()
        self._uncommitted = 0
        self._alerts_pending = 0
        self._last_commit = time.monotonic()
        self.stats.commits += 1
        self.stats.commit_ms.append((self._last_commit - began) * 1000)
        self.stats.last_commit_at = self._last_commit
        self.metrics.commits.inc()
        self.metrics.commit_latency.observe((self._last_commit - began) * 1000)
        if self._last_commit >= self._next_gauges:
            self._next_gauges = self._last_commit + 1.0
            self._update_gauges()

    def _on_commit_error(self, exc: KafkaException) -> None:
        err: KafkaError = exc.args[0]
        if err.fatal() or err.code() in (
            KafkaError._FENCED,
            KafkaError.PRODUCER_FENCED,
            KafkaError.INVALID_PRODUCER_EPOCH,
        ):
            raise FencedError(str(err)) from exc
        if err.txn_requires_abort():
            log.warning("transaction must abort (%s): rewinding to the last commit", err)
            self._abort_and_rewind()
            return
        raise exc

    def _abort_and_rewind(self, lost: frozenset[int] = frozenset()) -> None:
        """Aborts the open transaction and puts every partition still owned back to the last
        commit: its offset (seek) and its state (changelog). ``lost`` partitions are dropped."""
        if self._in_txn:
            try:
                with self.watchdog.call("abort_transaction"):
                    self.producer.abort_transaction(30)
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise FencedError(str(exc.args[0])) from exc
                log.warning("abort failed: %s", exc)
            self._in_txn = False
        self.stats.aborts += 1
        self.metrics.aborts.inc()
        self._aborts_in_a_row += 1
        if self._aborts_in_a_row > MAX_ABORTS_IN_A_ROW:
            raise StreamError(
                f"{self._aborts_in_a_row} transactions in a row had to abort; the last error repeats "
                "on the same input, so the instance stops instead of looping"
            )
        for count in self._counts_at_commit:  # what the aborted work counted is void
            setattr(self.stats, count, self._counts_at_commit[count])
        for p in lost:
            self.states.pop(p, None)
            self._positions.pop(p, None)
            self.changelog.forget(p)
        kept = sorted(set(self.states) - lost)
        committed = (
            self.consumer.committed(
                [TopicPartition(self.config.kafka.input_topic, p) for p in kept], timeout=30
            )
            if kept
            else []
        )
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        self._restore(kept)
        self._dirty.clear()
        self._uncommitted = 0
        self._alerts_pending = 0

    # -- rebalancing and state ----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._restore([tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if (self._uncommitted or self._in_txn) and not self._failed:
            self._commit()
        for tp in partitions:
            self.states.pop(tp.partition, None)
            self._positions.pop(tp.partition, None)
            self.changelog.forget(tp.partition)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = frozenset(tp.partition for tp in partitions)
        log.warning("partitions lost: %s; aborting the open transaction", sorted(lost))
        self._abort_and_rewind(lost)
        if self.config.kafka.exactly_once:  # lost: the group or the broker went away
            self._renew_producer()

    def _new_state(self) -> PartitionState:
        d = self.config.decode
        dedup = None
        if to_millis(d.dedup_horizon, "dedup_horizon") > 0:
            dedup = make_dedup_engine(d.dedup_horizon, self.config.rule.out_of_orderness)
        state = PartitionState(self.engine_factory(), dedup)
        state.track_changes()
        return state

    def _restore(self, partitions: list[int]) -> None:
        """Rebuilds the engines of ``partitions`` from their changelog: the latest committed
        snapshot, then the changes after it."""
        if not partitions:
            return
        began = time.monotonic()
        k = self.config.kafka
        # Offsets first: this waits for a previous owner's pending transaction (a zombie resuming
        # mid-commit), whose changelog records must then be part of what is read next.
        committed = self.consumer.committed(
            [TopicPartition(k.input_topic, p) for p in partitions], timeout=k.transaction_timeout_ms / 1000
        )
        restored = read_changelog(
            client_config(self.config),
            k.changelog_topic,
            f"{k.group_id}-restore",
            partitions,
            # an open transaction on the changelog resolves within the transaction timeout
            timeout=max(60.0, k.transaction_timeout_ms / 1000 + 10),
        )
        for tp in committed:  # where processing resumes: records before it are done
            self._positions[tp.partition] = max(tp.offset, 0)
        for p in partitions:
            r = restored[p]
            state = self._new_state()
            if r.snapshot is not None:
                state.restore(r.snapshot, r.changes)
            self.states[p] = state
            self.changelog.logs[p] = PartitionLog(
                seq=max(r.last_seq, 0),
                changes_bytes=sum(len(c) for c in r.changes),
                snapshot_bytes=len(r.snapshot or b""),
                has_snapshot=r.snapshot is not None,
            )
            self.stats.restore_bytes += r.bytes_read
        elapsed = (time.monotonic() - began) * 1000
        self.stats.restores += 1
        self.stats.restore_ms += elapsed
        log.info(
            "restored partitions %s from the changelog in %.0f ms (%d records, %d bytes)",
            partitions,
            elapsed,
            sum(r.records_read for r in restored.values()),
            sum(r.bytes_read for r in restored.values()),
        )


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


def changelog_chunk_bytes(config: Config) -> int:
    """Changelog payload per record: 512 KiB, less when the producer's local queue is set
    smaller (``queue.buffering.max.kbytes``), so that one record always fits in it."""
    queue_kbytes = int(config.kafka.client.get("queue.buffering.max.kbytes", 1 << 20))
    return max(1 << 10, min(CHUNK_BYTES, queue_kbytes * 1024 // 4))


def _partition(m: Message) -> int:
    p = m.partition()
    if p is None:
        raise StreamError("consumed a message without a partition")
    return p


def _offset(m: Message) -> int:
    o = m.offset()
    if o is None:
        raise StreamError("consumed a message without an offset")
    return o


def alert_json(row: dict[str, Any]) -> bytes:
    """The alert record: card, window, figures, rule, and the message that triggered it."""
    return json.dumps(
        {
            "card_id": row["key"],
            "window_start": row["window_start"],
            "window_end": row["window_end"],
            "n": row["n"],
            "countries": row["countries"],
            "total": round(row["total"], 2),
            "rule": row["rule"],
            "trigger_txn_id": row["trigger_txn_id"],
            "trigger_offset": row["trigger_offset"],
            "partition": row["partition"],
        },
        separators=(",", ":"),
    ).encode()


__all__ = ["FencedError", "KafkaPipeline", "RunStats", "ensure_topics", "make_rule_engine"]
