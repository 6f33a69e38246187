"""``fraudstream produce``: labelled card traffic into the input topic, again and again.

The traffic is :func:`fraudstream.generator.labelled_transactions` (seeded), sent as the JSON
of :mod:`fraudstream.kafka.schema`, keyed by card. A run can follow another into the same topic:

- **ids continue.** Transaction ids start after the highest id among the last records of the
  topic's partitions (0 for a new or empty topic), or at ``--start-id``: a second run is not
  dead-lettered as repeats of the first.
- **event times are recent.** By default the traffic's event times end now (its span is
  ``--days``); ``--start-time`` puts the first one elsewhere (``now``, ISO 8601, or epoch ms).
  A second run's event times therefore overlap the first's: the detector still scores every
  transaction (its event clock clamps them), the rules count what falls behind their
  watermark as late.
- **``--rate`` paces in real time**: records leave in slices of 10 ms of the wall clock, so
  the topic receives a steady rate rather than bursts.

The topic is created when missing, durable as configured (``kafka.replication_factor``,
``min_insync_replicas``); the producer writes with ``acks=all`` and idempotence.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from fraudstream.config import Config
from fraudstream.errors import ConfigError, StreamError
from fraudstream.kafka.connect import check_brokers
from fraudstream.kafka.topics import check_replication, client_config, durable_topic

SLICE_S = 0.01
"""Pacing granularity of ``--rate``: the records of each 10 ms slice are sent together."""


@dataclass
class ProduceOptions:
    events: int = 100_000
    cards: int = 10_000
    fraud_share: float = 0.003
    days: float | None = None
    labels: bool = True
    rate: float = 0.0
    partitions: int = 6
    seed: int = 0
    start_id: int | None = None
    """First transaction id; None: after the highest id at the end of the topic."""
    start_time: str | None = None
    """First event time (``now``, ISO 8601, epoch ms); None: the traffic ends now."""
    profiles_topic: str | None = None
    """Also send the cards' profiles (:func:`fraudstream.generator.card_profiles`) to this
    compacted topic, before the transactions; None: no profiles."""

    def validate(self) -> ProduceOptions:
        if self.events < 1 or self.cards < 1:
            raise ConfigError(f"--events and --cards must be >= 1, got {self.events} and {self.cards}")
        if not 0.0 <= self.fraud_share < 0.5:
            raise ConfigError(f"--fraud-share must be in [0, 0.5), got {self.fraud_share}")
        if self.days is not None and self.days * 24 < 1:
            raise ConfigError(f"--days must span at least an hour, got {self.days}")
        if self.rate < 0:
            raise ConfigError(f"--rate must be >= 0 (0: as fast as possible), got {self.rate}")
        if self.partitions < 1:
            raise ConfigError(f"--partitions must be >= 1, got {self.partitions}")
        if self.start_id is not None and self.start_id < 0:
            raise ConfigError(f"--start-id must be >= 0, got {self.start_id}")
        if self.start_time is not None:
            parse_time(self.start_time)
        if self.profiles_topic is not None and not self.profiles_topic:
            raise ConfigError("--profiles names an empty topic")
        return self


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch ms of ``now``, an ISO 8601 time (UTC unless it names its offset) or epoch ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if text == "now":
        return now_ms
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start-time must be 'now', ISO 8601 or epoch ms, got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def topic_end(
    settings: dict[str, Any], topic: str, partitions: list[int], timeout: float = 10.0
) -> tuple[int | None, int | None]:
    """The highest ``txn_id`` and ``event_time`` among the last record of each partition of
    ``topic`` (None when the topic is empty or its last records are not transactions)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**settings, "group.id": "fraudstream-produce-probe", "enable.auto.commit": False})
    try:
        wanted = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                wanted.append(TopicPartition(topic, p, high - 1))
        if not wanted:
            return None, None
        consumer.assign(wanted)
        pending = {tp.partition for tp in wanted}
        best: int | None = None
        latest: int | None = None
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in consumer.consume(len(pending), timeout=0.5):
                if m.error() is not None:
                    continue
                pending.discard(m.partition() or 0)
                try:
                    record = json.loads(m.value() or b"")
                    txn, at = record["txn_id"], record.get("event_time")
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                if isinstance(txn, int):
                    best = txn if best is None else max(best, txn)
                if isinstance(at, int):
                    latest = at if latest is None else max(latest, at)
        return best, latest
    finally:
        consumer.close()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def produce(
    config: Config,
    options: ProduceOptions,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Sends the traffic (see the module docstring); returns what was sent."""
    from fraudstream.generator import labelled_transactions
    from fraudstream.kafka.schema import encode_transactions

    options.validate()
    k = config.kafka
    topic = k.input_topic
    settings = client_config(config)
    meta = check_brokers(settings)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        check_replication(config, len(meta.brokers))
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(settings)  # kept alive until its futures resolve
        futures = admin.create_topics([durable_topic(config, topic, options.partitions)])
        for future in futures.values():
            future.result()
        start_id = options.start_id or 0
        newest = None
    else:
        partitions = sorted(meta.topics[topic].partitions)
        last, newest = topic_end(settings, topic, partitions)
        after_last = 0 if last is None else last + 1
        start_id = after_last if options.start_id is None else options.start_id
    try:
        traffic = labelled_transactions(
            options.events,
            cards=options.cards,
            days=options.days,
            compromised=options.fraud_share,
            seed=options.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    stats = traffic.statistics()
    cols = traffic.columns
    cols["txn_id"] = cols["txn_id"] + start_id
    times = cols["event_time"]
    if options.start_time is not None:
        shift = parse_time(options.start_time) - int(times.min())
    else:  # the traffic ends now: live for the pipeline's idle ticks and watermark-lag gauges
        shift = int(time.time() * 1000) - int(times.max())
    cols["event_time"] = times + shift
    if newest is not None and int(cols["event_time"].min()) < newest:
        warn(
            f"note: {topic} already holds event times up to {_utc(newest)} UTC and this run's start at "
            f"{_utc(int(cols['event_time'].min()))}: the rules count what falls behind their watermark as "
            "late, and the detector scores those transactions at its event clock (--start-time moves them)"
        )
    data = cols if options.labels else {name: v for name, v in cols.items() if name != "fraud"}
    if options.profiles_topic is not None and traffic.profiles is not None:
        first = int(cols["event_time"].min())
        n_profiles = produce_profiles(
            config, options.profiles_topic, traffic.profiles, shift, options.partitions, first
        )
        say(f"produced {n_profiles:,} card profiles to {options.profiles_topic} (compacted, keyed by card)")

    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    producer = Producer({**settings, "linger.ms": 5, "enable.idempotence": True, "acks": "all"})
    n = options.events
    step = max(1, int(options.rate * SLICE_S)) if options.rate else 10_000
    began = time.perf_counter()
    try:
        for lo in range(0, n, step):
            chunk = {name: v[lo : lo + step] for name, v in data.items()}
            for key, value in zip(chunk["card_id"].tolist(), encode_transactions(chunk), strict=True):
                send_record(producer, topic, str(key).encode(), value, delivered)
            producer.poll(0)
            if failed:
                break
            if options.rate:  # the next slice leaves when the wall clock says so
                ahead = (lo + step) / options.rate - (time.perf_counter() - began)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        left = producer.flush(60)
    if failed or left:
        reason = failed[0].str() if failed else f"{left} records still undelivered after 60 s"
        raise StreamError(f"producing to {topic} at {k.bootstrap_servers} failed: {reason}")
    elapsed = time.perf_counter() - began
    first, last = int(cols["event_time"].min()), int(cols["event_time"].max())
    summary = {
        "topic": topic,
        "events": n,
        "first_txn_id": start_id,
        "last_txn_id": start_id + n - 1,
        "first_event_time_ms": first,
        "last_event_time_ms": last,
        "seconds": elapsed,
        **stats,
    }
    say(
        f"produced {n:,} transactions to {topic} at {k.bootstrap_servers} in {elapsed:.1f} s "
        f"({n / elapsed:,.0f}/s): ids {start_id:,}..{start_id + n - 1:,}, event times {_utc(first)} .. "
        f"{_utc(last)} UTC ({stats['days']:.1f} days) on {options.cards:,} cards, "
        f"{stats['compromised_cards']} compromised ({stats['compromised_share']:.2%}), "
        f"{stats['fraudulent_transactions']:,} fraudulent transactions"
        + ("" if options.labels else " (labels not sent)")
    )
    return summary


def encode_profiles(
    profiles: Mapping[str, np.ndarray[Any, Any]], updated_at: int
) -> list[tuple[bytes, bytes]]:
    """Profile records keyed by card (decimal text, as transactions are keyed, so a topic with as
    many partitions as the input is co-partitioned with it): ``home_country`` (ISO alpha-2),
    ``account_opened`` (epoch ms), ``avg_amount`` and the version time ``updated_at``."""
    from fraudstream import _core

    out = []
    for card, home, opened, avg in zip(
        profiles["card_id"].tolist(),
        profiles["home_country"].tolist(),
        profiles["account_opened"].tolist(),
        profiles["avg_amount"].tolist(),
        strict=True,
    ):
        value = {
            "card_id": card,
            "home_country": _core.unpack_code(home),
            "account_opened": opened,
            "avg_amount": avg,
            "updated_at": updated_at,
        }
        out.append((str(card).encode(), json.dumps(value, separators=(",", ":")).encode()))
    return out


def produce_profiles(
    config: Config,
    topic: str,
    profiles: Mapping[str, np.ndarray[Any, Any]],
    shift_ms: int,
    partitions: int,
    first_event_ms: int,
) -> int:
    """Sends the cards' profiles (times moved by ``shift_ms``, as the traffic's) to ``topic``,
    created compacted with ``partitions`` when missing; each version dated an hour before the
    first transaction. Returns how many."""
    from confluent_kafka.admin import AdminClient

    settings = client_config(config)
    meta = check_brokers(settings)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        check_replication(config, len(meta.brokers))
        admin = AdminClient(settings)
        new = durable_topic(config, topic, partitions, **{"cleanup.policy": "compact"})
        for future in admin.create_topics([new]).values():
            future.result()
    shifted = {**profiles, "account_opened": profiles["account_opened"] + shift_ms}
    records = encode_profiles(shifted, first_event_ms - 3_600_000)
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    producer = Producer({**settings, "linger.ms": 5, "enable.idempotence": True, "acks": "all"})
    for key, value in records:
        send_record(producer, topic, key, value, delivered)
    left = producer.flush(60)
    if failed or left:
        reason = failed[0].str() if failed else f"{left} records still undelivered after 60 s"
        raise StreamError(f"producing profiles to {topic} failed: {reason}")
    return len(records)


def send_record(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    delivered: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produces one record, waiting while the producer's local queue is full."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


__all__ = [
    "ProduceOptions",
    "encode_profiles",
    "parse_time",
    "produce",
    "produce_profiles",
    "send_record",
    "topic_end",
]
