"""A consume() call's messages as columns, read in one Rust call (``_core.message_columns``).

The poll loop used to ask every message for its error, partition and offset in a Python loop,
and the partition task again for its value and timestamp: five method calls and a few
branches per message, run by the interpreter. :class:`ConsumedBatch` reads them all at once
and the loop then works on numpy columns: grouping by partition, dropping records a task has
already processed, and the task's decode and time checks.

Invariants: row ``i`` of every column is message ``i`` of the consume call, in the order the
consumer returned them (per partition, offset order); a message whose ``error()`` is set is
in ``error_rows`` and has -1 as partition, offset and timestamp, so no task ever takes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream import _core

IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class ConsumedBatch:
    """Consumed messages and their columns (see the module docstring)."""

    messages: list[Any]
    """The messages themselves: dead letters copy their key, value and headers."""
    values: list[bytes]
    """Each message's value (``b""`` for a null one, a tombstone)."""
    partitions: IntArray
    offsets: IntArray
    timestamps: IntArray
    """Epoch ms, -1 for a message without a timestamp."""
    error_rows: IntArray
    """Positions of messages that carry a consumer error instead of a record."""

    @classmethod
    def of(cls, messages: list[Any]) -> ConsumedBatch:
        """Reads the columns of ``messages`` (confluent-kafka ``Message`` objects, or anything
        with ``error()``, ``value()``, ``partition()``, ``offset()`` and ``timestamp()``)."""
        values, partitions, offsets, timestamps, errors = _core.message_columns(messages)
        return cls(messages, values, partitions, offsets, timestamps, errors)

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: IntArray) -> ConsumedBatch:
        """The messages at ``rows``, in that order."""
        index = rows.tolist()
        return ConsumedBatch(
            [self.messages[i] for i in index],
            [self.values[i] for i in index],
            self.partitions[rows],
            self.offsets[rows],
            self.timestamps[rows],
            np.flatnonzero(np.isin(rows, self.error_rows)),
        )

    def by_partition(self) -> Iterator[tuple[int, IntArray]]:
        """Each partition present, with the rows of its messages in consumed order (errors,
        which carry partition -1, in none)."""
        parts = self.partitions
        for p in np.unique(parts[parts >= 0]).tolist():
            yield int(p), np.flatnonzero(parts == p)


__all__ = ["ConsumedBatch"]
