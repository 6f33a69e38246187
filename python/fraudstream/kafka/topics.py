"""Client settings shared by every Kafka client of a pipeline, and its output topics.

The output topics (alerts, scored transactions, dead letters, changelog) are created when
missing, with as many partitions as the input: partition ``p`` of every output belongs to
input partition ``p`` (a card's records stay together, and the changelog of ``p`` is read on
its own at restore).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import Config
from fraudstream.errors import StreamError
from fraudstream.kafka.client_log import logging_config

log = logging.getLogger(__name__)


def client_config(config: Config) -> dict[str, Any]:
    """Settings shared by every client: bootstrap, error logging, and the pass-through
    ``[kafka.client]`` (security settings)."""
    return {
        "bootstrap.servers": config.kafka.bootstrap_servers,
        **logging_config(),
        **config.kafka.client,
    }


def output_topics(config: Config, partitions: int) -> list[NewTopic]:
    """The topics a pipeline writes (the scores topic only when it is on)."""
    k = config.kafka
    names = [k.alerts_topic, k.dead_letter_topic] + ([k.scores_topic] if k.scores_topic else [])
    topics = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    topics.append(
        NewTopic(
            k.changelog_topic,
            num_partitions=partitions,
            replication_factor=1,
            # kept until the pipeline deletes what a newer snapshot made obsolete
            config={"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        )
    )
    return topics


def ensure_topics(config: Config, timeout: float = 30.0) -> int:
    """Creates the output topics when missing; returns the input topic's partition count."""
    k = config.kafka
    admin = AdminClient(client_config(config))
    meta = admin.list_topics(timeout=timeout)
    if k.input_topic not in meta.topics or meta.topics[k.input_topic].error is not None:
        raise StreamError(f"input topic {k.input_topic!r} does not exist at {k.bootstrap_servers}")
    partitions = len(meta.topics[k.input_topic].partitions)
    missing = [t for t in output_topics(config, partitions) if t.topic not in meta.topics]
    if not missing:
        return partitions
    for topic, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            log.debug("topic %s created concurrently", topic)
    deadline = time.monotonic() + timeout
    for t in missing:  # a new topic answers only once every partition has a leader
        while True:
            parts = admin.list_topics(t.topic, timeout=timeout).topics[t.topic].partitions
            if len(parts) == partitions and all(p.leader >= 0 and p.error is None for p in parts.values()):
                break
            if time.monotonic() > deadline:
                raise StreamError(f"topic {t.topic} has no leader for every partition after {timeout} s")
            time.sleep(0.05)
    return partitions


__all__ = ["client_config", "ensure_topics", "output_topics"]
