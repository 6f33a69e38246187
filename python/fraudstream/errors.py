"""The exception hierarchy of fraudstream.

Every error raised on purpose by fraudstream derives from :class:`StreamError`. Errors about
bad input also derive from the built-in class a Python user would expect (``ValueError``,
``TimeoutError``), so ``except ValueError`` keeps working. The compiled core raises these
classes (mapped in one place, ``rust/src/python/errors.rs``).
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of all fraudstream errors."""


class ConfigError(StreamError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class InvalidBatchError(StreamError, ValueError):
    """A batch was rejected before any state changed.

    ``column`` and ``row`` (when known) name the first bad value.
    """

    column: str | None = None
    row: int | None = None


class SnapshotError(StreamError, ValueError):
    """Snapshot bytes are malformed or belong to another configuration."""


class QueueClosedError(StreamError):
    """The queue was closed: no more items can be put."""


class QueueTimeoutError(StreamError, TimeoutError):
    """A blocking queue operation did not complete in time."""


class FlushedError(StreamError, RuntimeError):
    """``process()`` after ``flush()``: the input has ended (every window closed, the watermark
    at +infinity), so a later record could only be late. Build a new engine or processor, or
    ``restore`` a snapshot taken before the flush."""


class FencedError(StreamError):
    """The instance's Kafka producer can no longer commit: another instance took over its
    transactional id or partitions (fenced), or the producer hit another fatal error. The
    instance stops; its open transaction is aborted and nothing of it becomes visible."""


__all__ = [
    "ConfigError",
    "FencedError",
    "FlushedError",
    "InvalidBatchError",
    "QueueClosedError",
    "QueueTimeoutError",
    "SnapshotError",
    "StreamError",
]
