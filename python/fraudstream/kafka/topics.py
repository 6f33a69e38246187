"""Client settings shared by every Kafka client of a pipeline, and its output topics.

The output topics (alerts, scored transactions, dead letters, changelog) are created when
missing, with as many partitions as the input: partition ``p`` of every output belongs to
input partition ``p`` (a card's records stay together, and the changelog of ``p`` is read on
its own at restore). They are durable as configured: ``kafka.replication_factor`` replicas,
``min.insync.replicas``, and ``kafka.output_retention_ms`` for the outputs; every producer of
fraudstream writes with ``acks=all``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without declaring them; import them from their home
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import Config, client_settings, is_secret
from fraudstream.errors import ConfigError, StreamError
from fraudstream.kafka.client_log import logging_config
from fraudstream.kafka.connect import check_brokers

log = logging.getLogger(__name__)


def client_config(config: Config) -> dict[str, Any]:
    """Settings shared by every client: bootstrap, error logging, and the pass-through
    ``[kafka.client]`` (security settings, secret references resolved)."""
    settings = client_settings(config.kafka.client)
    secrets = [value for name, value in settings.items() if is_secret(name)]
    return {"bootstrap.servers": config.kafka.bootstrap_servers, **logging_config(secrets), **settings}


def transactional_id(config: Config) -> str:
    """The instance's ``transactional.id``, ``<group_id>-<instance_id>``: one per instance, so
    that a restarted instance fences its previous incarnation (KIP-447)."""
    return f"{config.kafka.group_id}-{config.kafka.instance_id}"


def group_member_config(config: Config) -> dict[str, Any]:
    """The settings that make a consumer a member of the pipeline's group, as every instance
    joins it: the group, its session, the assignment strategy, static membership, and reading
    committed input from the group's offsets (with :func:`client_config`). Its ``client.id`` is
    the transactional id (unless ``[kafka.client]`` sets one): the group's description then
    tells which instances' transactions have a live member (:mod:`.fencing`)."""
    k = config.kafka
    return {
        "client.id": transactional_id(config),
        **client_config(config),
        "group.id": k.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": k.session_timeout_ms,
        "partition.assignment.strategy": k.assignment_strategy,
        **({"group.instance.id": k.instance_id} if k.static_membership else {}),
        # three heartbeats per session: the default 3 s would expire short sessions
        "heartbeat.interval.ms": max(100, k.session_timeout_ms // 3),
    }


BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes`` (a topic's ``max.message.bytes`` unless set)."""


def max_message_bytes(config: Config, topic: str, timeout: float = 30.0) -> int:
    """The largest record batch ``topic`` accepts (its ``max.message.bytes``); Kafka's default
    when the broker does not say (the dead letters are sized to fit it)."""
    admin = AdminClient(client_config(config))
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
        return int(entries["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TypeError) as exc:
        log.warning("cannot read max.message.bytes of %s (%s): assuming Kafka's default", topic, exc)
        return BROKER_DEFAULT_MAX_MESSAGE_BYTES


def durable_topic(config: Config, name: str, partitions: int, **settings: str) -> NewTopic:
    """A topic with the configured replication factor and ``min.insync.replicas`` (writes with
    ``acks=all`` then survive the loss of ``replication_factor - min_insync_replicas`` brokers)."""
    k = config.kafka
    return NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=k.replication_factor,
        config={"min.insync.replicas": str(k.min_insync_replicas), **settings},
    )


def output_topics(config: Config, partitions: int) -> list[NewTopic]:
    """The topics a pipeline writes (the scores topic only when it is on)."""
    k = config.kafka
    names = [k.alerts_topic, k.dead_letter_topic] + ([k.scores_topic] if k.scores_topic else [])
    retention = str(k.output_retention_ms)
    topics = [durable_topic(config, name, partitions, **{"retention.ms": retention}) for name in names]
    if k.view_topic:  # the latest row per key and window is kept, whatever its age
        topics.append(durable_topic(config, k.view_topic, partitions, **{"cleanup.policy": "compact"}))
    # kept until the pipeline deletes what a newer snapshot made obsolete
    topics.append(
        durable_topic(
            config,
            k.changelog_topic,
            partitions,
            **{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        )
    )
    return topics


def check_replication(config: Config, brokers: int) -> None:
    """A clear error, before any topic is created, when the cluster has fewer brokers than
    ``kafka.replication_factor`` asks for (a single local broker needs 1)."""
    k = config.kafka
    if brokers < k.replication_factor:
        raise ConfigError(
            f"kafka.replication_factor = {k.replication_factor} but the cluster at {k.bootstrap_servers} "
            f"has {brokers} broker{'s' if brokers != 1 else ''}; for a single local broker set "
            "replication_factor = 1 and min_insync_replicas = 1 (examples/fraudstream.toml does, "
            "or FRAUDSTREAM_KAFKA_REPLICATION_FACTOR=1 FRAUDSTREAM_KAFKA_MIN_INSYNC_REPLICAS=1)"
        )


def ensure_topics(config: Config, timeout: float = 30.0) -> int:
    """Creates the output topics when missing; returns the input topic's partition count."""
    k = config.kafka
    meta = check_brokers(client_config(config))
    admin = AdminClient(client_config(config))
    if k.input_topic not in meta.topics or meta.topics[k.input_topic].error is not None:
        raise StreamError(f"input topic {k.input_topic!r} does not exist at {k.bootstrap_servers}")
    partitions = len(meta.topics[k.input_topic].partitions)
    missing = [t for t in output_topics(config, partitions) if t.topic not in meta.topics]
    if not missing:
        return partitions
    check_replication(config, len(meta.brokers))
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


__all__ = [
    "client_config",
    "ensure_topics",
    "group_member_config",
    "max_message_bytes",
    "output_topics",
    "transactional_id",
]
