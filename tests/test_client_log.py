"""Kafka client logging: repeated failures are summarised, not printed hundreds of times."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Consumer

from fraudstream.kafka.client_log import LOGGER_NAME, RepeatFilter, logging_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.WARNING, kind: object = None) -> logging.LogRecord:
    rec = logging.LogRecord("x", level, __file__, 1, msg, args, None)
    if kind is not None:
        rec.kind = kind
    return rec


def test_repeats_within_the_interval_are_held_back_and_counted() -> None:
    clock = Clock()
    f = RepeatFilter(interval_s=10, clock=clock)
    fail = ("FAIL", "rdkafka#consumer-1", "Connect to 127.0.0.1:1 failed")
    assert f.filter(record("%s [%s] %s", *fail))
    for _ in range(50):
        clock.now += 0.05
        assert not f.filter(record("%s [%s] %s", *fail))
    # another kind (other client, other error code, other level) is not held back by it
    assert f.filter(record("%s [%s] %s", "FAIL", "rdkafka#producer-2", "Connect failed"))
    assert f.filter(record("Kafka client error: %s", "x", kind=-195))
    assert f.filter(record("%s [%s] %s", *fail, level=logging.ERROR))
    clock.now += 10
    passed = record("%s [%s] %s", *fail)
    assert f.filter(passed)
    assert passed.getMessage().endswith("(50 more like it in the last 10 s)")
    clock.now += 10  # nothing held back since: no count
    quiet = record("%s [%s] %s", *fail)
    assert f.filter(quiet) and "more like it" not in quiet.getMessage()


def test_an_unreachable_broker_logs_a_few_lines_not_hundreds(caplog: pytest.LogCaptureFixture) -> None:
    """A consumer polling a closed port for 3 s: librdkafka retries every few ms."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    consumer = Consumer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "group.id": "unreachable",
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 10,
            **logging_config(),
        }
    )
    try:
        consumer.subscribe(["t"])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            consumer.poll(0.1)
    finally:
        consumer.close()
    lines = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert lines, "the client's failures must be logged"
    assert len(lines) <= 12, [r.getMessage() for r in lines]
