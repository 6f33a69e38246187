"""Tables from Kafka: ``[tables.NAME]`` read from compacted topics, caught up before processing.

A :class:`KafkaTable` holds the rows of one table topic in the Rust core's lookup table
(``fraudstream._core.LookupTable``), one per topic partition it reads, and is fed by a consumer
of its own (assigned partitions, no group membership, ``read_committed``, nothing committed).
It restores from the topic itself, as Kafka Streams' GlobalKTable does: the topic is compacted,
so it is its own changelog, and a restarted instance reads it again from the beginning.

Placement (``[tables.NAME] placement``):

- ``global``: every instance reads every partition of the topic, loaded once at start
  (:meth:`KafkaTables.start`) before the instance joins its group;
- ``copartitioned``: table partition p goes with input partition p, loaded when p is assigned
  (:meth:`KafkaTables.assign`) and dropped when it is revoked or lost. The topic must have as
  many partitions as the input topic (checked at start, a :class:`ConfigError` otherwise) and
  be keyed the same way.

Invariants:

- **Caught up before processing.** A load reads the partitions' end offsets first, then
  consumes until every partition reached them (or the consumer reports its end), within
  ``catch_up_timeout_ms`` (a :class:`StreamError` otherwise): no transaction of a partition is
  processed before the table holds every record written before its assignment (the
  pipeline's hook calls the loads before the first ``consume`` of the input, and inside the
  assignment callback).
- **Later updates keep flowing.** :meth:`KafkaTables.poll` applies what arrived since, once
  per loop iteration, never blocking. A transaction is joined to the row as the table holds
  it when its batch is processed (a processing-time lookup; ``docs/semantics.md``).
- **The newest version wins.** Of two versions of a row the one with the greater version time
  is kept, whatever order they arrive in (equal times: the later offset); a tombstone (null
  value) deletes the row. The result depends on the records, not on how they are cut into
  batches.
- **Bad records are counted, never applied.** A key that is not an int64, a value that is not
  a JSON object, a missing or non-integer version time, a column that is not a number, a
  short code string or null: counted in ``rejected`` with the first reasons logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from fraudstream import _core
from fraudstream.config import Config, TableSection
from fraudstream.errors import ConfigError, StreamError
from fraudstream.kafka.topics import client_config

log = logging.getLogger(__name__)

VERSION_COLUMN = "version_time"
"""The column of a lookup's result holding the matched row's version time (epoch ms)."""
GLOBAL = -1
"""The key of a global table's one lookup table (copartitioned ones are keyed by partition)."""
POLL_RECORDS = 10_000
"""Most table records applied per :meth:`KafkaTables.poll` of a table (the loop's share)."""
CATCH_UP_POLL_S = 0.01
"""A catch-up's ``consume`` timeout: it returns what came within it (a full batch of a small table
never comes, and its wait was the whole catch-up)."""
MAX_LOGGED_REJECTS = 5
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Lookup = Callable[[np.ndarray[Any, Any]], dict[str, np.ndarray[Any, Any]]]


@dataclass
class Rows:
    """Decoded table records, in offset order."""

    keys: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    deleted: list[bool] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def _cell(value: Any, column: str, codes: dict[str, float]) -> float:
    """A column value that is not a float or an int: null (NaN), or a short code string."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        code = codes.get(value)
        if code is None:
            packed = _core.pack_code(value) if value else None
            if packed is None:
                raise ValueError(f"{column!r} = {value[:32]!r} is not a number or a short code")
            code = codes[value] = float(packed)
        return code
    raise ValueError(f"{column!r} is a {type(value).__name__}")


def decode_rows(msgs: list[Any], section: TableSection) -> Rows:
    """Table records (``key()``, ``value()``) as rows: key, version time, values, deleted."""
    rows = Rows()
    columns, stamp = section.columns, section.version_time
    codes: dict[str, float] = {}  # the few distinct code strings, packed once
    loads = json.loads
    for m in msgs:
        raw_key, raw = m.key(), m.value()
        try:
            key = int(raw_key.decode("ascii"))
            if not INT64_MIN <= key <= INT64_MAX:
                raise ValueError
        except (AttributeError, ValueError, UnicodeDecodeError):
            rows.rejected.append(f"key {raw_key[:32] if raw_key else raw_key!r} is not an int64 in decimal")
            continue
        if raw is None:
            rows.keys.append(key)
            rows.versions.append(0)
            rows.values.append([0.0] * len(columns))
            rows.deleted.append(True)
            continue
        try:
            try:
                record = loads(raw)
                version = record[stamp]  # TypeError: not an object; KeyError: no version time
            except (TypeError, KeyError):
                raise ValueError(f"not a JSON object with the version time {stamp!r}") from None
            if type(version) is not int:
                raise ValueError(f"version time {stamp!r} is not an integer (epoch ms)")
            values = []
            for c in columns:
                v = record.get(c)
                t = type(v)
                values.append(v if t is float else float(v) if t is int else _cell(v, c, codes))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            rows.rejected.append(f"key {key}: {str(exc)[:200]}")
            continue
        rows.keys.append(key)
        rows.versions.append(version)
        rows.values.append(values)
        rows.deleted.append(False)
    return rows


def apply_rows(table: _core.LookupTable, rows: Rows) -> int:
    """Applies decoded rows to a lookup table whose last column is :data:`VERSION_COLUMN`:
    per key the newest version wins (equal times: the later row), a tombstone deletes whatever
    is held. Returns how many upserts were stale (older than what was held). The result is
    that of applying the rows one by one, so it does not depend on how they were batched."""
    if not rows.keys:
        return 0
    keys = np.asarray(rows.keys, np.int64)
    held = table.lookup(keys)
    stored = np.where(held["matched"], held[VERSION_COLUMN], -np.inf).tolist()
    newest: dict[int, float] = {}
    chosen: dict[int, int] = {}  # key -> row, or -1: deleted
    stale = 0
    for i, (k, v, d) in enumerate(zip(rows.keys, rows.versions, rows.deleted, strict=True)):
        if d:
            chosen[k], newest[k] = -1, -math.inf
        elif v >= newest.get(k, stored[i]):
            chosen[k], newest[k] = i, v
        else:
            stale += 1
    picked = np.fromiter(chosen.values(), np.int64, len(chosen))
    gone = picked < 0
    at = np.where(gone, 0, picked)
    values = np.asarray(rows.values, np.float64)[at]
    cols = [np.ascontiguousarray(values[:, j]) for j in range(values.shape[1])]
    cols.append(np.asarray(rows.versions, np.float64)[at])
    table.update(np.fromiter(chosen.keys(), np.int64, len(chosen)), cols, gone)
    return stale


class KafkaTable:
    """The rows of one ``[tables.NAME]`` (see the module docstring)."""

    def __init__(self, name: str, section: TableSection, config: Config) -> None:
        self.name = name
        self.section = section
        self.columns = list(section.columns)
        self.consumer = Consumer(
            {
                **client_config(config),
                "group.id": f"{config.kafka.group_id}-table-{name}",  # assigned, never joined
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,  # a compacted tail can end before the high watermark
            }
        )
        self.tables: dict[int, _core.LookupTable] = {}
        self.assigned: set[int] = set()
        self.loaded = 0
        """Records applied since start (tombstones included)."""
        self.rejected = 0
        self.stale = 0
        """Versions ignored because a newer one of their row was already held."""
        self.load_ms = 0.0
        """Time spent catching up (start and assignments)."""

    # -- loading ----------------------------------------------------------------------------

    def load(self, partitions: list[int], home: Callable[[int], int]) -> None:
        """Reads ``partitions`` from the beginning up to the end offsets read now; ``home(p)``
        names the lookup table partition p's rows go to."""
        new = sorted(set(partitions) - self.assigned)
        if not new:
            return
        began = time.monotonic()
        topic = self.section.topic
        timeout = self.section.catch_up_timeout_ms / 1000
        ends = {}
        for p in new:
            tp = TopicPartition(topic, p)
            ends[p] = self.consumer.get_watermark_offsets(tp, timeout=30, cached=False)[1]
            self.tables.setdefault(home(p), _core.LookupTable(columns=[*self.columns, VERSION_COLUMN]))
        self.assigned |= set(new)
        self.consumer.incremental_assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in new])
        behind = {p for p in new if ends[p] > 0}
        before = self.loaded
        deadline = began + timeout
        while behind:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"table {self.name}: {topic} partitions {sorted(behind)} did not reach their end offsets "
                    f"{[ends[p] for p in sorted(behind)]} within {timeout:g} s (tables.{self.name}."
                    "catch_up_timeout_ms)"
                )
            msgs = self.consumer.consume(num_messages=50_000, timeout=CATCH_UP_POLL_S)
            for p, position in self._apply(msgs, home).items():
                if p in behind and position >= ends[p]:
                    behind.discard(p)
        elapsed = (time.monotonic() - began) * 1000
        self.load_ms += elapsed
        rows = self.loaded - before
        log.info(
            "table %s: caught up with %s partitions %s (end offsets %s): %d records in %.0f ms (%.0f/s)",
            self.name, topic, new, [ends[p] for p in new], rows, elapsed, rows / max(elapsed / 1000, 1e-9),
        )  # fmt: skip

    def drop(self, partitions: list[int]) -> None:
        """Stops reading ``partitions`` and forgets their rows (copartitioned tables only)."""
        gone = sorted(set(partitions) & self.assigned)
        if not gone:
            return
        self.consumer.incremental_unassign([TopicPartition(self.section.topic, p) for p in gone])
        for p in gone:
            self.assigned.discard(p)
            self.tables.pop(p, None)

    def poll(self, home: Callable[[int], int]) -> int:
        """Applies the records that arrived since, without waiting; returns how many."""
        if not self.assigned:
            return 0
        before = self.loaded
        self._apply(self.consumer.consume(num_messages=POLL_RECORDS, timeout=0), home)
        return self.loaded - before

    def _apply(self, msgs: list[Message], home: Callable[[int], int]) -> dict[int, int]:
        """Applies consumed records; returns per partition the offset after its last one
        (an end-of-partition event gives the end offset)."""
        positions: dict[int, int] = {}
        by_partition: dict[int, list[Message]] = {}
        for m in msgs:
            err = m.error()
            p = m.partition()
            if p is None:
                continue
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    positions[p] = max(positions.get(p, 0), int(m.offset() or 0))
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("table %s: consumer error: %s", self.name, err)
                continue
            if p not in self.assigned:
                continue  # fetched before a drop
            by_partition.setdefault(p, []).append(m)
            positions[p] = max(positions.get(p, 0), int(m.offset() or 0) + 1)
        for p, batch in by_partition.items():
            table = self.tables.get(home(p))
            if table is not None:
                self._upsert(table, decode_rows(batch, self.section))
        return positions

    def _upsert(self, table: _core.LookupTable, rows: Rows) -> None:
        if rows.rejected:
            if self.rejected < MAX_LOGGED_REJECTS:
                log.warning("table %s: rejected records, e.g. %s", self.name, rows.rejected[:5])
            self.rejected += len(rows.rejected)
        self.stale += apply_rows(table, rows)
        self.loaded += len(rows.keys)

    # -- lookups ----------------------------------------------------------------------------

    def lookup(self, keys: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """Per key: ``matched``, the table's columns (NaN when unmatched) and
        :data:`VERSION_COLUMN`, from whichever of the held partitions has the row."""
        keys = np.ascontiguousarray(keys, np.int64)
        out: dict[str, np.ndarray[Any, Any]] | None = None
        for table in self.tables.values():
            found = table.lookup(keys)
            if out is None:
                out = found
                continue
            take = found["matched"] & ~out["matched"]
            if take.any():
                out = {k: np.where(take, found[k], v) for k, v in out.items()}
        return _unmatched(len(keys), self.columns) if out is None else out

    def rows(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def close(self) -> None:
        self.consumer.close()


def _global(_partition: int) -> int:
    return GLOBAL


def _own(partition: int) -> int:
    return partition


class KafkaTables:
    """Every ``[tables.NAME]`` of a configuration, and the pipeline's hooks (see the module
    docstring): :meth:`start`, :meth:`assign`, :meth:`revoke`, :meth:`poll`, :meth:`close`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tables = {name: KafkaTable(name, s, config) for name, s in config.tables.items()}

    def lookups(self) -> dict[str, Lookup]:
        """Each table's lookup, by name (valid before and after loading)."""
        return {name: t.lookup for name, t in self.tables.items()}

    def _home(self, table: KafkaTable) -> Callable[[int], int]:
        return _global if table.section.placement == "global" else _own

    def start(self, consumer: Consumer) -> None:
        """Checks every table topic (and co-partitioning against the input topic) and loads
        the global tables, before the instance joins its group."""
        if not self.tables:
            return
        topics = consumer.list_topics(timeout=30).topics
        k = self.config.kafka
        inputs = topics.get(k.input_topic)
        for name, table in self.tables.items():
            topic = table.section.topic
            meta = topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise ConfigError(f"tables.{name}.topic: topic {topic!r} does not exist")
            count = len(meta.partitions)
            if table.section.placement == "copartitioned":
                if inputs is None or inputs.error is not None:
                    raise ConfigError(
                        f"tables.{name}: placement copartitioned needs the input topic {k.input_topic!r}, "
                        "which does not exist"
                    )
                if count != len(inputs.partitions):
                    raise ConfigError(
                        f"tables.{name}: placement copartitioned needs as many partitions as the input: "
                        f"{topic!r} has {count}, {k.input_topic!r} has {len(inputs.partitions)} "
                        '(repartition the table topic, or use placement = "global")'
                    )
            else:
                table.load(sorted(meta.partitions), _global)

    def assign(self, partitions: list[int]) -> None:
        """Loads the newly assigned partitions of the copartitioned tables (caught up on return)."""
        for table in self.tables.values():
            if table.section.placement == "copartitioned":
                table.load(partitions, _own)

    def revoke(self, partitions: list[int]) -> None:
        for table in self.tables.values():
            if table.section.placement == "copartitioned":
                table.drop(partitions)

    def poll(self) -> int:
        """Applies table updates that arrived since the last call, without waiting."""
        return sum(t.poll(self._home(t)) for t in self.tables.values())

    def stats(self) -> dict[str, dict[str, float]]:
        return {
            name: {"rows": t.rows(), "loaded": t.loaded, "rejected": t.rejected, "stale": t.stale,
                   "load_ms": t.load_ms}
            for name, t in self.tables.items()
        }  # fmt: skip

    def close(self) -> None:
        for t in self.tables.values():
            t.close()


def empty_lookup(columns: list[str]) -> Lookup:
    """A lookup that finds nothing (a processor built before any table is loaded)."""

    def lookup(keys: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        return _unmatched(len(keys), columns)

    return lookup


def _unmatched(n: int, columns: list[str]) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {"matched": np.zeros(n, bool)}
    out.update({c: np.full(n, np.nan) for c in [*columns, VERSION_COLUMN]})
    return out


__all__ = [
    "VERSION_COLUMN",
    "KafkaTable",
    "KafkaTables",
    "Rows",
    "apply_rows",
    "decode_rows",
    "empty_lookup",
]
