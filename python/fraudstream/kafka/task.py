"""The work of one input partition: decode -> dedup -> processor -> output records.

A :class:`PartitionTask` is Kafka Streams' StreamTask without the Kafka calls: it takes the
partition's messages (anything with ``error()``, ``value()``, ``key()``, ``offset()``,
``timestamp()``, ``topic()``, ``partition()``), read as columns in one call
(:class:`~fraudstream.kafka.consumed.ConsumedBatch`), and returns the records to publish, by
role. The transactional loop sends them; the exactly-once tests and the chaos benchmark call
the same task over the same input to get the reference output, so there is one
implementation of what a partition computes.

Invariants:
- Every consumed message ends as processed or dead-lettered, counted where it happens:
  ``consumed == processed + dead_lettered`` from independent counters.
- Outputs depend only on the partition's messages in offset order (and logged ``advance``
  calls), never on how they were cut into batches: the processor contract requires it of the
  processor, and decoding and deduplication are per record.
- The task's state (the processor's, and the duplicate detector's) is versioned bytes:
  ``snapshot()``, ``changes()`` since the last call, ``restore(snapshot, changes)``.
- No input record can fail a transaction: a dead letter is the record's key and value bytes
  unchanged (a tombstone stays a tombstone), with the reason and origin in headers
  (:func:`dead_letter`); a record too large for the dead-letter topic becomes a truncated copy
  flagged as such, with its original sizes.
- Time cannot be poisoned: an event more than ``decode.max_future_ms`` ahead of its message's
  timestamp is dead-lettered before it reaches the duplicate detector or the processor, so it
  never moves a watermark (:meth:`PartitionTask.future_rows`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from fraudstream import _core
from fraudstream.alerts import Alert
from fraudstream.config import Config
from fraudstream.errors import StreamError
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.schema import decode_batch
from fraudstream.pieces import Buffer, Pieces, join
from fraudstream.processor import (
    DECISIONS,
    Processor,
    ProcessorOutput,
    pack,
    pack_pieces,
    snapshot_pieces,
    unpack,
)
from fraudstream.views import view_records
from fraudstream.windows import WindowedAggregation, session, to_millis

ALERTS, SCORES, DEAD_LETTERS, VIEWS = "alerts", "scores", "dead_letters", "views"
"""Output roles; the pipeline maps them to the configured topics."""

Record = tuple[bytes | None, bytes]
"""An output record: key and value."""

Headers = list[tuple[str, bytes]]

DLQ_MAX_RECORD_BYTES = 1_000_000
"""Default room for one dead letter (key, value and headers): within Kafka's default
``max.message.bytes`` (1,048,588) with room for the record's framing. The pipeline sets the
dead-letter topic's own limit (:func:`fraudstream.kafka.topics.max_message_bytes`)."""
DLQ_RECORD_OVERHEAD = 512
"""Bytes kept free for a record's framing in its batch (lengths, timestamps, header counts)."""
MAX_REASON_CHARS = 512
"""A reason is cut to this length (it goes into a header)."""

H_REASON = "fraudstream.reason"
H_TOPIC = "fraudstream.topic"
H_PARTITION = "fraudstream.partition"
H_OFFSET = "fraudstream.offset"
H_TIMESTAMP = "fraudstream.timestamp"
"""The original message's timestamp, epoch ms ("-1" when it had none)."""
H_TIMESTAMP_TYPE = "fraudstream.timestamp_type"
"""``create``, ``log_append`` or ``none``."""
H_TRUNCATED = "fraudstream.truncated"
"""Present (``true``) only on a truncated copy: key and value are prefixes of the original."""
H_KEY_SIZE = "fraudstream.key_size"
H_VALUE_SIZE = "fraudstream.value_size"
"""The original key and value sizes in bytes (``-1`` for null), on a truncated copy."""
TIMESTAMP_TYPES = {0: "none", 1: "create", 2: "log_append"}
FUTURE_REASON = "event time in the future"
TOMBSTONE_REASON = "null value (a tombstone)"


class DeadLetter(NamedTuple):
    """A dead-letter record: the original key and value, the reason and origin in headers."""

    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> str | None:
        """A header's value as text (None when absent)."""
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None

    @property
    def truncated(self) -> bool:
        return self.header(H_TRUNCATED) is not None

    def emptied(self) -> DeadLetter:
        """The headers only (key and value dropped), flagged as truncated with the sizes."""
        if self.truncated:
            return DeadLetter(None, None, self.headers)
        sizes = [
            (H_TRUNCATED, b"true"),
            (H_KEY_SIZE, str(-1 if self.key is None else len(self.key)).encode()),
            (H_VALUE_SIZE, str(-1 if self.value is None else len(self.value)).encode()),
        ]
        return DeadLetter(None, None, self.headers + sizes)


class MessageLike(Protocol):
    """What the task reads of a consumed message (confluent-kafka's ``Message`` fits)."""

    def error(self) -> Any: ...

    def value(self) -> bytes | None: ...

    def key(self) -> bytes | None: ...

    def offset(self) -> int | None: ...

    def partition(self) -> int | None: ...

    def topic(self) -> str | None: ...

    def timestamp(self) -> tuple[int, int]: ...


@dataclass
class TaskOutput:
    """What a call of the task produced: records by role, the alerts behind the alert records,
    and counts."""

    records: dict[str, list[Record]] = field(default_factory=lambda: {ALERTS: [], SCORES: []})
    """By role; :data:`VIEWS` only when the configuration publishes a view."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """Records for the dead-letter topic (:data:`DEAD_LETTERS` role), in offset order per cause."""
    alerts: list[Alert] = field(default_factory=list)
    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    future: int = 0
    """Records dead-lettered as event time in the future (also in ``dead_lettered``)."""
    truncated: int = 0
    """Dead letters that had to be cut to fit the dead-letter topic."""
    suppressed: int = 0
    next_offset: int | None = None
    """The offset after the last message taken (the position to commit)."""


def make_duplicate_filter(horizon: str, out_of_orderness: str, max_keys: int = 0) -> _core.DuplicateFilter:
    """Per transaction id, the sessions of gap ``horizon`` of its occurrences: every event after
    the first in a session is a duplicate (``_core.DuplicateFilter``, rust/src/dedup.rs). With
    ``max_keys``, at most that many ids are held (the one seen longest ago is forgotten first)."""
    return _core.DuplicateFilter(
        to_millis(horizon, "dedup_horizon"), to_millis(out_of_orderness, "out_of_orderness"), max_keys or None
    )


def legacy_dedup_engine(horizon: str, out_of_orderness: str, max_keys: int = 0) -> WindowedAggregation:
    """The session window engine that held the duplicate state before the filter: its
    changelog records are still read (and taken over by the filter, same decisions)."""
    return WindowedAggregation(
        key="txn_id",
        time="event_time",
        window=session(to_millis(horizon, "dedup_horizon")),
        aggregations={"n": "count"},
        out_of_orderness=out_of_orderness,
        early_fire="on_update",
        max_keys=max_keys or None,
    )


def _wall_ms() -> float:
    return time.time_ns() / 1e6


class PartitionTask:
    """One input partition's processing (see the module docstring).

    Args:
        partition: the input partition.
        processor: any :class:`~fraudstream.processor.Processor`.
        config: decode limits (``[decode]``), the dedup horizon, whether scores are published.
        clock: wall clock in epoch ms (the arrival time of records without a timestamp).
        dlq_max_bytes: room for one dead-letter record (key, value and headers); larger ones
            are truncated copies.
    """

    def __init__(
        self,
        partition: int,
        processor: Processor,
        config: Config,
        clock: Callable[[], float] = _wall_ms,
        dlq_max_bytes: int = DLQ_MAX_RECORD_BYTES,
    ) -> None:
        self.partition = partition
        self.processor = processor
        self.decode = config.decode
        self.scores_on = bool(config.kafka.scores_topic)
        self.views_on = bool(config.kafka.view_topic)
        self.clock = clock
        self.dlq_max_bytes = dlq_max_bytes
        d = config.decode
        self._dedup_settings = (d.dedup_horizon, config.rule.out_of_orderness, d.dedup_max_keys)
        on = to_millis(d.dedup_horizon, "dedup_horizon") > 0
        self._dedup = make_duplicate_filter(*self._dedup_settings) if on else None
        if self._dedup is not None:
            self._dedup.track_changes(True)
        self._legacy_dedup: WindowedAggregation | None = None
        """The duplicate state as an older version wrote it, until the filter takes it over."""
        self.last_input_ms: float = clock()
        """Wall clock of the last message taken, or of the task's creation (idle detection)."""

    # -- processing -------------------------------------------------------------------------

    def process(self, msgs: list[Any]) -> TaskOutput:
        """Processes the partition's next messages, in offset order."""
        return self.process_batch(ConsumedBatch.of(msgs))

    def process_batch(self, batch: ConsumedBatch) -> TaskOutput:
        """Processes the partition's next messages, read as columns, in offset order."""
        out = TaskOutput(consumed=len(batch))
        if not len(batch):
            return out
        if len(batch.error_rows) or batch.offsets.min() < 0:
            raise StreamError("a consumer error or a message without an offset is not a record to process")
        self.last_input_ms = self.clock()
        msgs = batch.messages  # read only for dead letters
        decoded = decode_batch(batch.values, self.decode)
        for index, reason in zip(decoded.error_index.tolist(), decoded.error_reason, strict=True):
            msg = msgs[index]
            self._dead_letter(out, msg, TOMBSTONE_REASON if msg.value() is None else reason)
        cols = decoded.columns
        stamps = batch.timestamps
        future, reasons = self.future_rows(stamps, cols)
        if len(future):
            for r, reason in zip(future.tolist(), reasons, strict=True):
                self._dead_letter(out, msgs[int(cols["source_index"][r])], reason)
            out.future = len(future)
            keep = np.ones(len(cols["txn_id"]), dtype=bool)
            keep[future] = False
            cols = {k: v[keep] for k, v in cols.items()}
        dups = self._duplicates(cols)
        if len(dups):
            for r in dups.tolist():
                self._dead_letter(
                    out,
                    msgs[int(cols["source_index"][r])],
                    f"duplicate txn_id within {self.decode.dedup_horizon}",
                )
            out.duplicates = len(dups)
            keep = np.ones(len(cols["txn_id"]), dtype=bool)
            keep[dups] = False
            cols = {k: v[keep] for k, v in cols.items()}
        n = len(cols["txn_id"])
        if n:
            cols["arrival_ms"] = self._arrival(stamps, cols["source_index"])
            result = self.processor.process(cols)
            refused = self._refused(out, msgs, cols["source_index"], result)
            out.processed = n - refused
            self._publish(out, result, batch.offsets[cols["source_index"]])
        out.next_offset = int(batch.offsets[-1]) + 1
        return out

    def advance(self, wall_clock_ms: int) -> TaskOutput:
        """Idle time: lets the processor close what the wall clock says is over."""
        out = TaskOutput()
        self._publish(out, self.processor.advance(wall_clock_ms), None)
        return out

    def future_rows(
        self, stamps: np.ndarray[Any, Any], cols: dict[str, np.ndarray[Any, Any]]
    ) -> tuple[np.ndarray[Any, Any], list[str]]:
        """Rows whose event time is more than ``decode.max_future_ms`` ahead of their message's
        timestamp (``stamps``: per message, epoch ms or -1), and the reason for each.

        The reference is the message timestamp, a property of the record, so a replay after a
        crash judges every record as the first run did. A message without a timestamp, or with
        one itself ahead of the wall clock (a producer's clock, or a hostile ``CreateTime``), is
        judged against the wall clock at arrival instead: ``min(timestamp, now)``."""
        limit = self.decode.max_future_ms
        n = len(cols["txn_id"])
        if limit <= 0 or not n:
            return np.empty(0, np.int64), []
        now = int(self.clock())
        stamps = stamps[cols["source_index"]]
        reference = np.where(stamps >= 0, np.minimum(stamps, now), now)
        ahead = cols["event_time"] - reference
        rows = np.flatnonzero(ahead > limit)
        reasons = [
            f"{FUTURE_REASON}: {int(ahead[r])} ms ahead of the "
            + ("message timestamp" if stamps[r] >= 0 and stamps[r] <= now else "wall clock at arrival")
            + f" (decode.max_future_ms = {limit})"
            for r in rows.tolist()
        ]
        return rows, reasons

    def _duplicates(self, cols: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        dedup = self._filter()
        if dedup is None or not len(cols["txn_id"]):
            return np.empty(0, np.int64)
        return dedup.process(_int64(cols["txn_id"]), _int64(cols["event_time"]))

    def _arrival(self, stamps: np.ndarray[Any, Any], source: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Wall-clock arrival per row: the message timestamp, or now when it has none."""
        rows = stamps[source].astype(np.float64)
        return np.where(rows > 0, rows, self.clock())

    def _refused(
        self, out: TaskOutput, msgs: list[Any], source: np.ndarray[Any, Any], result: ProcessorOutput
    ) -> int:
        """Dead-letters the rows the processor did not take; returns how many."""
        for r in result.late_rows.tolist():
            self._dead_letter(out, msgs[int(source[r])], "event later than the allowed lateness")
        for r, reason in zip(result.dead_rows.tolist(), result.dead_reasons, strict=True):
            self._dead_letter(out, msgs[int(source[r])], reason)
        return len(result.late_rows) + len(result.dead_rows)

    def _publish(
        self, out: TaskOutput, result: ProcessorOutput, offsets: np.ndarray[Any, Any] | None
    ) -> None:
        """The records of ``result``; ``offsets``: the input message offset of each row given to
        the processor (None for an ``advance``)."""
        out.suppressed += result.suppressed
        for alert in result.alerts:
            offset = None
            if offsets is not None and alert.trigger_row >= 0:
                offset = int(offsets[alert.trigger_row])
            located = alert.located(partition=self.partition, offset=offset)
            out.alerts.append(located)
            out.records[ALERTS].append((str(alert.card_id).encode(), located.to_json()))
        if self.scores_on and result.scores is not None and offsets is not None:
            out.records[SCORES].extend(score_records(result.scores, offsets))
        if self.views_on and result.rows is not None:
            out.records.setdefault(VIEWS, []).extend(view_records(result.rows, self.partition))

    def _dead_letter(self, out: TaskOutput, msg: Any, reason: str) -> None:
        letter = dead_letter(msg, reason, self.dlq_max_bytes)
        out.dead_letters.append(letter)
        out.dead_lettered += 1
        out.truncated += letter.truncated

    def evicted(self) -> int:
        """Keys evicted by a cap on live keys, as the task's state counts them (a restore brings
        the count back): the duplicate detector's, and the processor's when it reports
        ``counters()["evicted"]``. The pipeline's metric counts the increase at each commit
        (:attr:`~fraudstream.kafka.tasks.TaskManager.evicted`)."""
        dedup = self._filter()
        n = 0 if dedup is None else int(dedup.counters()["evicted"])
        counters = getattr(self.processor, "counters", None)
        if callable(counters):
            with contextlib.suppress(TypeError, AttributeError, ValueError):  # counters of another shape
                n += int(counters().get("evicted", 0))
        return n

    # -- state ------------------------------------------------------------------------------

    def _parts(self) -> int:
        return 1 if self._dedup is None else 2

    def snapshot(self) -> bytes:
        return join(self.snapshot_pieces())

    def snapshot_pieces(self) -> Pieces:
        """:meth:`snapshot` in pieces, not joined: what the changelog cuts into frames."""
        parts: list[Buffer | Pieces] = [snapshot_pieces(self.processor)]
        dedup = self._filter()
        if dedup is not None:
            parts.append(dedup.snapshot_array())
        return pack_pieces(parts)

    def changes(self) -> bytes:
        parts = [self.processor.changes()]
        dedup = self._filter()
        if dedup is not None:
            parts.append(dedup.take_changes())
        return pack(parts)

    def restore(self, snapshot: bytes, changes: list[bytes]) -> None:
        """Rebuilds the state from a snapshot and the changes written after it."""
        parts = unpack(snapshot, self._parts())
        self.processor.restore(parts[0])
        if self._dedup is not None:
            self._restore_dedup(parts[1])
        for c in changes:
            self.apply_changes(c)
        if self._dedup is not None:
            self._dedup.track_changes(True)
        self.processor.changes()  # what was replayed is already in the changelog

    def apply_changes(self, changes: bytes) -> None:
        """Applies one change record (:meth:`changes`) to a restored state: what
        :meth:`restore` replays, and what a standby replica applies as its changelog grows."""
        parts = unpack(changes, self._parts())
        self.processor.apply_changes(parts[0])
        if self._dedup is None:
            return
        if self._legacy_dedup is not None and not _core.DuplicateFilter.holds_state(parts[1]):
            self._legacy_dedup.apply_changes(parts[1])  # still written by an older version
        else:
            dedup = self._filter()
            assert dedup is not None
            dedup.apply_changes(parts[1])

    def _restore_dedup(self, state: bytes) -> None:
        """The duplicate state from a snapshot; one written by an older version (the session
        window engine) is read as such and taken over at first use (:meth:`_filter`), so a
        standby can still apply that version's change records until then."""
        assert self._dedup is not None
        self._legacy_dedup = None
        if _core.DuplicateFilter.holds_state(state):
            self._dedup.restore(state)
            return
        self._dedup = make_duplicate_filter(*self._dedup_settings)
        self._legacy_dedup = legacy_dedup_engine(*self._dedup_settings)
        self._legacy_dedup.restore(state)

    @property
    def dedup(self) -> _core.DuplicateFilter | None:
        """The duplicate filter (None when ``decode.dedup_horizon`` is 0)."""
        return self._filter()

    def _filter(self) -> _core.DuplicateFilter | None:
        """The duplicate filter, having taken over an older version's state if one was read."""
        if self._legacy_dedup is not None and self._dedup is not None:
            self._dedup.adopt(self._legacy_dedup._engine)
            self._dedup.track_changes(True)
            self._dedup.take_changes()  # (recorded by the adoption: already in the changelog)
            self._legacy_dedup = None
        return self._dedup


def score_records(
    scores: dict[str, np.ndarray[Any, Any]], offsets: np.ndarray[Any, Any]
) -> list[tuple[bytes, bytes]]:
    """One JSON record per scored transaction, keyed by card, built in one Rust pass
    (``_core.score_records``); ``offsets``: the input offset of each row given to the processor.
    ``"degraded":true`` on a row scored with the feature store's defaults (the scores'
    ``degraded`` column)."""
    degraded = scores.get("degraded")
    return _core.score_records(
        _int64(scores["txn_id"]),
        _int64(scores["card_id"]),
        np.ascontiguousarray(scores["score"], dtype=np.float64),
        _int64(scores["decision"]),
        _int64(np.asarray(offsets)[scores["row"]]),
        list(DECISIONS),
        None if degraded is None else _int64(degraded),
    )


def _int64(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.ascontiguousarray(a, dtype=np.int64)


def dead_letter(msg: Any, reason: str, max_bytes: int = DLQ_MAX_RECORD_BYTES) -> DeadLetter:
    """The dead-letter record of ``msg``: its key and value bytes unchanged (None stays None),
    the reason, source topic, partition, offset and timestamp in headers.

    When key, value and headers together exceed ``max_bytes`` (less the record framing), the
    copy is truncated: headers ``fraudstream.truncated``, ``fraudstream.key_size`` and
    ``fraudstream.value_size`` say so and give the original sizes, and the room left is shared
    between a prefix of the key and a prefix of the value (the smaller one whole when it fits
    in half). So every dead letter fits the topic, whatever the record."""
    key, value = msg.key(), msg.value()
    ts_type, ts = msg.timestamp()
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "..."
    headers: Headers = [
        (H_REASON, reason.encode("utf-8", "replace")),
        (H_TOPIC, str(msg.topic()).encode("utf-8", "replace")),
        (H_PARTITION, str(msg.partition()).encode()),
        (H_OFFSET, str(msg.offset()).encode()),
        (H_TIMESTAMP, str(ts if ts_type else -1).encode()),
        (H_TIMESTAMP_TYPE, TIMESTAMP_TYPES.get(ts_type, str(ts_type)).encode()),
    ]
    key_n, value_n = len(key or b""), len(value or b"")
    room = max_bytes - DLQ_RECORD_OVERHEAD - sum(len(k) + len(v) for k, v in headers)
    if key_n + value_n <= room:
        return DeadLetter(key, value, headers)
    flags: Headers = [
        (H_TRUNCATED, b"true"),
        (H_KEY_SIZE, str(key_n if key is not None else -1).encode()),
        (H_VALUE_SIZE, str(value_n if value is not None else -1).encode()),
    ]
    headers += flags
    room = max(0, room - sum(len(k) + len(v) for k, v in flags))
    key_keep = min(key_n, max(room // 2, room - value_n))
    value_keep = min(value_n, room - key_keep)
    return DeadLetter(
        None if key is None else key[:key_keep], None if value is None else value[:value_keep], headers
    )


def read_dead_letter(msg: Any) -> DeadLetter:
    """A consumed dead-letter record (a confluent-kafka ``Message``) as a :class:`DeadLetter`."""
    return DeadLetter(msg.key(), msg.value(), list(msg.headers() or []))


__all__ = [
    "ALERTS",
    "DEAD_LETTERS",
    "SCORES",
    "VIEWS",
    "DeadLetter",
    "MessageLike",
    "PartitionTask",
    "TaskOutput",
    "dead_letter",
    "legacy_dedup_engine",
    "make_duplicate_filter",
    "read_dead_letter",
    "score_records",
]
