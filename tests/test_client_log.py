"""Kafka client logging: repeated failures are summarised, not printed hundreds of times, and
the values of secret settings never reach a log line."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Consumer, Producer

from fraudstream.config import Config
from fraudstream.kafka.client_log import LOGGER_NAME, REDACTED, RepeatFilter, SecretFilter, logging_config
from fraudstream.kafka.topics import client_config


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


def test_librdkafka_quoting_a_secret_setting_back_is_redacted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed ``sasl.oauthbearer.config`` from the environment: librdkafka's authentication
    error quotes it back ("Unrecognized sasl.oauthbearer.config beginning at: ..."); the client
    logger shows the error, not the secret."""
    secret = "tok-0f9e8d7c6b5a"
    monkeypatch.setenv("FS_TEST_OAUTH_CONFIG", f"principal=alice grant={secret}")
    config = Config()
    config.kafka.bootstrap_servers = "127.0.0.1:1"
    config.kafka.client = {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": "true",
        "sasl.oauthbearer.config": "${env:FS_TEST_OAUTH_CONFIG}",
    }
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    producer = Producer({**client_config(config), "debug": "security,conf"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("OAUTHBEARER" in r.getMessage() for r in caplog.records):
        producer.poll(0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    quoted = [line for line in lines if "sasl.oauthbearer.config beginning at" in line]
    assert quoted, lines  # librdkafka did quote it: the case is exercised
    assert all(REDACTED in line for line in quoted), quoted
    assert not [line for line in lines if secret in line]


def test_the_secret_filter_scrubs_values_and_their_parts() -> None:
    f = SecretFilter()
    f.add(["s3cret-password", "principal=bob extension_traceid=abcdef123 x=1"])
    rec = record(
        "%s [%s] %s", "SASL", "rdkafka#1", "bad s3cret-password near extension_traceid=abcdef123 x=1"
    )
    assert f.filter(rec)
    text = rec.getMessage()
    assert "s3cret" not in text and "abcdef123" not in text and text.count(REDACTED) == 2, text
    assert "x=1" in text, "short parts are left alone"
    untouched = record("%s [%s] %s", "FAIL", "rdkafka#1", "Connect failed")
    assert f.filter(untouched) and untouched.args == ("FAIL", "rdkafka#1", "Connect failed")
