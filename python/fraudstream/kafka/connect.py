"""Reaching the brokers: one check at the start of every command that talks to Kafka.

librdkafka never gives up on a bootstrap address: an unreachable one makes every client log a
connection failure per attempt for as long as a call's timeout lasts, and a metadata call then
fails with a bare timeout. :func:`check_brokers` asks once, with a short deadline and its own
silent client, and either returns the cluster's metadata or raises
:class:`KafkaUnreachableError` naming the address it tried, the first failure the client
reported, and how to name the brokers. Commands exit with status 3 on it.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata

from fraudstream.config import BOOTSTRAP_ENV
from fraudstream.errors import StreamError

CONNECT_TIMEOUT_S = 8.0
"""How long a command waits for the brokers to answer before it gives up."""


class KafkaUnreachableError(StreamError, ConnectionError):
    """No broker answered a metadata request at the configured address in time."""


def check_brokers(settings: dict[str, Any], timeout: float = CONNECT_TIMEOUT_S) -> ClusterMetadata:
    """The cluster's metadata, asked for once with ``settings`` (a client configuration with
    ``bootstrap.servers``), or :class:`KafkaUnreachableError` after ``timeout`` seconds."""
    bootstrap = settings.get("bootstrap.servers", "")
    failures: list[str] = []

    def collect(err: KafkaError) -> None:
        text = err.str()
        if text not in failures:
            failures.append(text)

    quiet: dict[str, Any] = {k: v for k, v in settings.items() if k not in ("logger", "error_cb")}
    # its own client, silent: what went wrong is summarised in the exception instead
    quiet.update({"log_level": 0, "error_cb": collect})
    admin = AdminClient(quiet)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks queued meanwhile
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        specific = [f for f in failures if "brokers are down" not in f]  # the cause, not the tally
        reason = (specific or failures or [err.str() if err is not None else str(exc)])[0]
        raise KafkaUnreachableError(
            f"no Kafka broker answered at {bootstrap} within {timeout:g} s ({reason}); start one with "
            f"`scripts/kafka up`, or name the brokers with --bootstrap or {BOOTSTRAP_ENV}"
        ) from None
    if not metadata.brokers:
        raise KafkaUnreachableError(f"the Kafka cluster at {bootstrap} lists no brokers")
    return metadata


__all__ = ["CONNECT_TIMEOUT_S", "KafkaUnreachableError", "check_brokers"]
