"""Logging of the Kafka clients (librdkafka's log lines and asynchronous errors).

An unreachable broker makes librdkafka report the same failure every few milliseconds per client
(hundreds of lines a second). The clients log through the ``fraudstream.kafka.client`` logger,
which lets the first record of each kind through and then one per interval, counting the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from confluent_kafka import KafkaError

LOGGER_NAME = "fraudstream.kafka.client"


class RepeatFilter(logging.Filter):
    """Passes the first record of a kind, then at most one per ``interval_s``; a record that
    follows held-back ones says how many. A record's kind: its ``kind`` attribute (``extra=``),
    else for librdkafka's ``"%s [%s] %s"`` records the facility and client name, else its
    format string."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.levelno, _kind(record))
        now = self.clock()
        last = self._seen.get(kind)
        if last is not None and now - last[0] < self.interval_s:
            self._seen[kind] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self._seen[kind] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last {self.interval_s:.0f} s)"
            record.args = ()
        return True


def _kind(record: logging.LogRecord) -> Hashable:
    kind: Hashable | None = getattr(record, "kind", None)
    if kind is not None:
        return kind
    args = record.args
    if isinstance(args, tuple) and len(args) == 3 and record.msg == "%s [%s] %s":
        return (args[0], args[1])
    return record.msg


def client_logger() -> logging.Logger:
    """The clients' logger, with its :class:`RepeatFilter` (installed once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger


def log_client_error(err: KafkaError) -> None:
    """librdkafka's ``error_cb``: fatal errors as errors, the rest (mostly transient) as warnings."""
    level = logging.ERROR if err.fatal() else logging.WARNING
    client_logger().log(level, "Kafka client error: %s", err, extra={"kind": err.code()})


def logging_config() -> dict[str, Any]:
    """Client settings that route librdkafka's logs and errors to :func:`client_logger`."""
    return {"logger": client_logger(), "error_cb": log_client_error}
