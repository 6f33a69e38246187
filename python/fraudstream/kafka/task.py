"""The work of one input partition: decode -> dedup -> processor -> output records.

A :class:`PartitionTask` is Kafka Streams' StreamTask without the Kafka calls: it takes the
partition's messages (anything with ``value()``, ``key()``, ``offset()``, ``timestamp()``,
``topic()``, ``partition()``) and returns the records to publish, by role. The transactional
loop sends them; the exactly-once tests and the chaos benchmark call the same task over the
same input to get the reference output, so there is one implementation of what a partition
computes.

Invariants:
- Every consumed message ends as processed or dead-lettered, counted where it happens:
  ``consumed == processed + dead_lettered`` from independent counters.
- Outputs depend only on the partition's messages in offset order (and logged ``advance``
  calls), never on how they were cut into batches: the processor contract requires it of the
  processor, and decoding and deduplication are per record.
- The task's state (the processor's, and the duplicate detector's) is versioned bytes:
  ``snapshot()``, ``changes()`` since the last call, ``restore(snapshot, changes)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fraudstream.alerts import Alert
from fraudstream.config import Config
from fraudstream.errors import StreamError
from fraudstream.kafka.schema import decode_batch
from fraudstream.processor import DECISIONS, Processor, ProcessorOutput, pack, unpack
from fraudstream.windows import EmitKind, WindowedAggregation, session, to_millis

DLQ_VALUE_PREFIX_BYTES = 1_024
ALERTS, SCORES, DEAD_LETTERS = "alerts", "scores", "dead_letters"
"""Output roles; the pipeline maps them to the configured topics."""

Record = tuple[bytes | None, bytes]
"""An output record: key and value."""


class MessageLike(Protocol):
    """What the task reads of a consumed message (confluent-kafka's ``Message`` fits)."""

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

    records: dict[str, list[Record]] = field(
        default_factory=lambda: {ALERTS: [], SCORES: [], DEAD_LETTERS: []}
    )
    alerts: list[Alert] = field(default_factory=list)
    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    suppressed: int = 0
    next_offset: int | None = None
    """The offset after the last message taken (the position to commit)."""


def make_dedup_engine(horizon: str, out_of_orderness: str) -> WindowedAggregation:
    """Per transaction id, a session of gap ``horizon`` counting its occurrences: every event
    after the first in a session is a duplicate."""
    return WindowedAggregation(
        key="txn_id",
        time="event_time",
        window=session(to_millis(horizon, "dedup_horizon")),
        aggregations={"n": "count"},
        out_of_orderness=out_of_orderness,
        early_fire="on_update",
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
    """

    def __init__(
        self,
        partition: int,
        processor: Processor,
        config: Config,
        clock: Callable[[], float] = _wall_ms,
    ) -> None:
        self.partition = partition
        self.processor = processor
        self.decode = config.decode
        self.scores_on = bool(config.kafka.scores_topic)
        self.clock = clock
        d = config.decode
        self.dedup = (
            make_dedup_engine(d.dedup_horizon, config.rule.out_of_orderness)
            if to_millis(d.dedup_horizon, "dedup_horizon") > 0
            else None
        )
        if self.dedup is not None:
            self.dedup.track_changes(True)
        self.last_input_ms: float = clock()
        """Wall clock of the last message taken, or of the task's creation (idle detection)."""

    # -- processing -------------------------------------------------------------------------

    def process(self, msgs: list[Any]) -> TaskOutput:
        """Processes the partition's next messages, in offset order."""
        out = TaskOutput(consumed=len(msgs))
        if not msgs:
            return out
        self.last_input_ms = self.clock()
        decoded = decode_batch([m.value() or b"" for m in msgs], self.decode)
        for index, reason in zip(decoded.error_index.tolist(), decoded.error_reason, strict=True):
            self._dead_letter(out, msgs[index], reason)
        cols = decoded.columns
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
            cols["arrival_ms"] = self._arrival(msgs, cols["source_index"])
            result = self.processor.process(cols)
            refused = self._refused(out, msgs, cols["source_index"], result)
            out.processed = n - refused
            self._publish(out, result, msgs, cols)
        out.next_offset = _offset(msgs[-1]) + 1
        return out

    def advance(self, wall_clock_ms: int) -> TaskOutput:
        """Idle time: lets the processor close what the wall clock says is over."""
        out = TaskOutput()
        self._publish(out, self.processor.advance(wall_clock_ms), [], None)
        return out

    def _duplicates(self, cols: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        if self.dedup is None or not len(cols["txn_id"]):
            return np.empty(0, np.int64)
        out = self.dedup.process({"txn_id": cols["txn_id"], "event_time": cols["event_time"]})
        again = (out["kind"] == EmitKind.EARLY) & (out["n"] >= 2)
        return np.unique(out.trigger_rows[again])

    def _arrival(self, msgs: list[Any], source: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Wall-clock arrival per row: the message timestamp, or now when it has none."""
        now = self.clock()
        stamps = np.array([m.timestamp()[1] for m in msgs], dtype=np.float64)[source]
        return np.where(stamps > 0, stamps, now)

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
        self,
        out: TaskOutput,
        result: ProcessorOutput,
        msgs: list[Any],
        cols: dict[str, np.ndarray[Any, Any]] | None,
    ) -> None:
        out.suppressed += result.suppressed
        for alert in result.alerts:
            offset = None
            if cols is not None and alert.trigger_row >= 0:
                offset = _offset(msgs[int(cols["source_index"][alert.trigger_row])])
            located = alert.located(partition=self.partition, offset=offset)
            out.alerts.append(located)
            out.records[ALERTS].append((str(alert.card_id).encode(), located.to_json()))
        if self.scores_on and result.scores is not None and cols is not None:
            out.records[SCORES].extend(score_records(result.scores, msgs, cols["source_index"]))

    def _dead_letter(self, out: TaskOutput, msg: Any, reason: str) -> None:
        out.records[DEAD_LETTERS].append((msg.key(), dead_letter_value(msg, reason)))
        out.dead_lettered += 1

    # -- state ------------------------------------------------------------------------------

    def _parts(self) -> int:
        return 1 if self.dedup is None else 2

    def snapshot(self) -> bytes:
        parts = [self.processor.snapshot()]
        if self.dedup is not None:
            parts.append(self.dedup.snapshot())
        return pack(parts)

    def changes(self) -> bytes:
        parts = [self.processor.changes()]
        if self.dedup is not None:
            parts.append(self.dedup.changes())
        return pack(parts)

    def restore(self, snapshot: bytes, changes: list[bytes]) -> None:
        """Rebuilds the state from a snapshot and the changes written after it."""
        parts = unpack(snapshot, self._parts())
        self.processor.restore(parts[0])
        if self.dedup is not None:
            self.dedup.restore(parts[1])
        for c in changes:
            parts = unpack(c, self._parts())
            self.processor.apply_changes(parts[0])
            if self.dedup is not None:
                self.dedup.apply_changes(parts[1])
        if self.dedup is not None:
            self.dedup.track_changes(True)
        self.processor.changes()  # what was replayed is already in the changelog


def score_records(
    scores: dict[str, np.ndarray[Any, Any]], msgs: list[Any], source: np.ndarray[Any, Any]
) -> list[Record]:
    """One JSON record per scored transaction, keyed by card."""
    rows = scores["row"].tolist()
    offsets = [_offset(msgs[int(source[r])]) for r in rows]
    decisions = [DECISIONS[d] for d in scores["decision"].tolist()]
    out: list[Record] = []
    for txn, card, score, decision, offset in zip(
        scores["txn_id"].tolist(),
        scores["card_id"].tolist(),
        scores["score"].tolist(),
        decisions,
        offsets,
        strict=True,
    ):
        value = (
            f'{{"txn_id":{txn},"card_id":{card},"score":{_score(score)},'
            f'"decision":"{decision}","offset":{offset}}}'
        )
        out.append((str(card).encode(), value.encode()))
    return out


def _score(s: float) -> str:
    return "null" if s != s else f"{s:.6f}"  # NaN: the processor does not score


def dead_letter_value(msg: Any, reason: str) -> bytes:
    """The dead-letter record: the reason, where the message came from, and its value."""
    value = msg.value() or b""
    return json.dumps(
        {
            "reason": reason,
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "size": len(value),
            "value": value[:DLQ_VALUE_PREFIX_BYTES].decode("utf-8", "replace"),
        }
    ).encode()


def _offset(m: Any) -> int:
    o = m.offset()
    if o is None:
        raise StreamError("consumed a message without an offset")
    return int(o)


__all__ = [
    "ALERTS",
    "DEAD_LETTERS",
    "SCORES",
    "MessageLike",
    "PartitionTask",
    "TaskOutput",
    "dead_letter_value",
    "make_dedup_engine",
    "score_records",
]
