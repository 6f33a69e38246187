"""Fixtures for tests against the project's real Kafka broker (started by `scripts/kafka up`).

A missing broker fails the tests (it does not skip them): a skipped Kafka suite would hide
that exactly-once processing was never exercised.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic without declaring it; import it from its home.
from confluent_kafka.cimpl import NewTopic

BOOTSTRAP_ENV = "FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS"
"""The variable every fraudstream command reads (scripts/test exports it)."""
LEGACY_BOOTSTRAP_ENV = "FRAUDSTREAM_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ADMIN_TIMEOUT_S = 30.0


def _ignore_error(_err: KafkaError) -> None:
    """Swallow librdkafka's asynchronous errors; calls report failures with timeouts."""


def _admin(bootstrap: str, *, quiet: bool = False) -> AdminClient:
    # Typed loosely: the AdminClient stub leaves out the callbacks librdkafka accepts.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "error_cb": _ignore_error}
    if quiet:
        # The probe's connection-refused log lines would bury the message below.
        config["log_level"] = 0
    return AdminClient(config)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker's bootstrap address, checked to answer a metadata request."""
    bootstrap = os.environ.get(BOOTSTRAP_ENV) or os.environ.get(LEGACY_BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    admin = _admin(bootstrap, quiet=True)
    problem: str | None = None
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(
            f"no Kafka broker answers at {bootstrap} ({problem}). Start the project's broker "
            f"with `scripts/kafka up` (or point {BOOTSTRAP_ENV} at a running one).",
            pytrace=False,
        )
    if not metadata.brokers:
        pytest.fail(
            f"the Kafka cluster at {bootstrap} lists no brokers. Restart it with "
            "`scripts/kafka down && scripts/kafka up`.",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return _admin(kafka_bootstrap)


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float) -> None:
    """Block until the broker's metadata shows every partition of `topic` with a leader."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(topic=topic, timeout=max(1.0, deadline - time.monotonic()))
        info = metadata.topics.get(topic)
        if (
            info is not None
            and info.error is None
            and len(info.partitions) == partitions
            and all(p.leader >= 0 for p in info.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {topic} has no leader for all partitions after {timeout}s")
        time.sleep(0.1)


@pytest.fixture
def kafka_topic_factory(
    kafka_admin: AdminClient, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics on demand; all of them, and the topics a pipeline derived
    from them (``<name>-alerts``, ``-scored``, ``-dlq``, ``-changelog``...), are deleted after
    the test."""
    created: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]

    def create(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"fs-test-{stem}-{uuid.uuid4().hex[:10]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=ADMIN_TIMEOUT_S,
            request_timeout=ADMIN_TIMEOUT_S,
        )
        futures[name].result(timeout=ADMIN_TIMEOUT_S)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions, ADMIN_TIMEOUT_S)
        return name

    yield create

    if created:
        existing = set(kafka_admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
        derived = [t for t in existing for name in created if t.startswith(f"{name}-")]
        futures = kafka_admin.delete_topics(
            created + derived, operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S
        )
        for future in futures.values():
            try:
                future.result(timeout=ADMIN_TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise


@pytest.fixture
def kafka_topic(kafka_topic_factory: Callable[..., str]) -> str:
    """One fresh single-partition topic, deleted after the test."""
    return kafka_topic_factory()
