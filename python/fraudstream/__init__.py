"""fraudstream: Rust-accelerated stream processing for real-time fraud detection.

The engine (:class:`WindowedAggregation`) computes keyed event-time windows with Flink's
semantics over numpy batches; the pipeline, Kafka and fraud layers build on it.
"""

from __future__ import annotations

from fraudstream._core import __version__
from fraudstream.errors import (
    ConfigError,
    FencedError,
    FlushedError,
    InvalidBatchError,
    QueueClosedError,
    QueueTimeoutError,
    SnapshotError,
    StreamError,
)
from fraudstream.windows import (
    EmitKind,
    Hopping,
    Session,
    Tumbling,
    WindowedAggregation,
    WindowOutput,
    hopping,
    session,
    to_millis,
    tumbling,
)

__all__ = [
    "ConfigError",
    "EmitKind",
    "FencedError",
    "FlushedError",
    "Hopping",
    "InvalidBatchError",
    "QueueClosedError",
    "QueueTimeoutError",
    "Session",
    "SnapshotError",
    "StreamError",
    "Tumbling",
    "WindowOutput",
    "WindowedAggregation",
    "__version__",
    "hopping",
    "session",
    "to_millis",
    "tumbling",
]
