"""Logging of the Kafka clients (librdkafka's log lines and asynchronous errors).

An unreachable broker makes librdkafka report the same failure every few milliseconds per client
(hundreds of lines a second). The clients log through the ``fraudstream.kafka.client`` logger,
which lets the first record of each kind through and then one per interval, counting the rest.

librdkafka redacts secret settings in its configuration dump, but not where it quotes a value
back: a malformed ``sasl.oauthbearer.config`` comes back whole in an authentication error
("Unrecognized sasl.oauthbearer.config beginning at: ..."). So every record of that logger is
scrubbed of the secret settings' values (:class:`SecretFilter`), whichever way they were
given (inline, ``${env:...}``, ``${file:...}``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Hashable, Iterable
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


class SecretFilter(logging.Filter):
    """Replaces in every record the values of secret settings by ``<redacted>``: the whole
    value (from 3 characters), and each of its whitespace-separated parts and their values
    after ``=`` from 6 characters (a quoted fragment of ``principal=bob scope=...`` is caught
    too; shorter parts would scrub common words). Runs after :class:`RepeatFilter`, whose kinds
    read the record's arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        """Secret values to scrub from now on."""
        for value in values:
            parts = set(value.split())
            parts |= {p.split("=", 1)[1] for p in parts if "=" in p}
            self._secrets |= {p for p in parts if len(p) >= 6}
            if len(value.strip()) >= 3:
                self._secrets.add(value)
        if self._secrets:  # longest first: a value is replaced whole, not a part of it
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is not None:
            text = record.getMessage()
            scrubbed = self._pattern.sub(REDACTED, text)
            if scrubbed != text:
                record.msg, record.args = scrubbed, ()
        return True


REDACTED = "<redacted>"


def _kind(record: logging.LogRecord) -> Hashable:
    kind: Hashable | None = getattr(record, "kind", None)
    if kind is not None:
        return kind
    args = record.args
    if isinstance(args, tuple) and len(args) == 3 and record.msg == "%s [%s] %s":
        return (args[0], args[1])
    return record.msg


def client_logger() -> logging.Logger:
    """The clients' logger, with its :class:`RepeatFilter` and then its :class:`SecretFilter`
    (installed once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    if not any(isinstance(f, SecretFilter) for f in logger.filters):
        logger.addFilter(SecretFilter())
    return logger


def secret_filter() -> SecretFilter:
    """The :class:`SecretFilter` of the clients' logger."""
    return next(f for f in client_logger().filters if isinstance(f, SecretFilter))


def log_client_error(err: KafkaError) -> None:
    """librdkafka's ``error_cb``: fatal errors as errors, the rest (mostly transient) as warnings."""
    level = logging.ERROR if err.fatal() else logging.WARNING
    client_logger().log(level, "Kafka client error: %s", err, extra={"kind": err.code()})


def logging_config(secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Client settings that route librdkafka's logs and errors to :func:`client_logger`, which
    scrubs ``secrets`` (the values of the client's secret settings) from every record."""
    secret_filter().add(secrets)
    return {"logger": client_logger(), "error_cb": log_client_error}
