"""``fraudstream alerts``: the pipeline's committed output, as a ``read_committed`` consumer sees it.

Reads one output topic (the alerts by default; the scored transactions or the dead letters on
request) from its beginning, every partition, and prints each record as a JSON line or as a row
of a readable table. Without ``--follow`` it stops at the end of every partition (the last
stable offset: a transaction still open is not waited for) and says how many records it read;
with ``--follow`` it keeps printing what the pipeline commits until Ctrl-C.

It joins no consumer group and commits nothing: reading never disturbs the pipeline.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.config import Config
from fraudstream.errors import StreamError
from fraudstream.kafka.connect import check_brokers
from fraudstream.kafka.topics import client_config

Record = tuple[int, int, bytes | None, list[tuple[str, bytes | None]]]
"""A record read: partition, offset, value, headers."""
HEADER_PREFIX = "fraudstream."
"""Dead letters carry where they came from and why in headers named ``fraudstream.*``."""

KINDS = ("alerts", "scores", "dead-letters")
"""What ``fraudstream alerts`` can read: the topic of each is named by the configuration."""


def topic_of(config: Config, kind: str) -> str:
    """The output topic holding ``kind`` records."""
    k = config.kafka
    topic = {"alerts": k.alerts_topic, "scores": k.scores_topic, "dead-letters": k.dead_letter_topic}[kind]
    if not topic:
        raise StreamError(f"{kind} are turned off in this configuration (kafka.scores_topic is empty)")
    return topic


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    value: Callable[[dict[str, Any]], Any]
    right: bool = False


def _time(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(v: Any, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


TABLES: dict[str, list[Column]] = {
    "alerts": [
        Column("event time (UTC)", 23, lambda r: _time(r.get("event_time"))),
        Column("card", 10, lambda r: r.get("card_id"), right=True),
        Column("rule", 22, lambda r: r.get("rule")),
        Column("score", 6, lambda r: _num(r.get("score")), right=True),
        Column("txn", 10, lambda r: r.get("trigger_txn_id"), right=True),
        Column("latency ms", 10, lambda r: _num(r.get("latency_ms"), 1), right=True),
        Column("reasons", 0, lambda r: "; ".join(str(x) for x in r.get("reasons") or [])),
    ],
    "scores": [
        Column("txn", 10, lambda r: r.get("txn_id"), right=True),
        Column("card", 10, lambda r: r.get("card_id"), right=True),
        Column("score", 8, lambda r: "" if r.get("score") is None else f"{r['score']:.6f}", right=True),
        Column("decision", 8, lambda r: r.get("decision")),
        Column("input offset", 12, lambda r: r.get("offset"), right=True),
    ],
    "dead-letters": [
        Column("reason", 34, lambda r: r.get("reason")),
        Column("from", 24, lambda r: f"{r.get('topic')}/{r.get('partition')}@{r.get('offset')}"),
        Column("bytes", 7, lambda r: r.get("size"), right=True),
        Column("value", 0, lambda r: str(r.get("value", ""))[:80]),
    ],
}


def _cell(col: Column, text: str) -> str:
    if not col.width:
        return text
    text = text if len(text) <= col.width else text[: col.width - 1] + "…"
    return text.rjust(col.width) if col.right else text.ljust(col.width)


def table_header(kind: str) -> str:
    return "  ".join(_cell(c, c.title) for c in TABLES[kind]).rstrip()


def table_row(kind: str, record: dict[str, Any]) -> str:
    cells = []
    for c in TABLES[kind]:
        try:
            v = c.value(record)
        except (TypeError, ValueError, KeyError):
            v = ""
        cells.append(_cell(c, "" if v is None else str(v)))
    return "  ".join(cells).rstrip()


def as_dict(value: bytes | None, headers: list[tuple[str, bytes | None]]) -> dict[str, Any] | None:
    """A record as plain data: a dead letter's ``fraudstream.*`` headers (reason, origin)
    plus its value as text, or the JSON value of the other outputs (None: no value)."""
    meta = {
        k[len(HEADER_PREFIX) :]: (v or b"").decode("utf-8", "replace")
        for k, v in headers
        if k.startswith(HEADER_PREFIX)
    }
    if meta:
        for k in ("partition", "offset", "timestamp"):
            if meta.get(k, "").lstrip("-").isdigit():
                meta[k] = int(meta[k])  # type: ignore[assignment]
        text = (value or b"").decode("utf-8", "replace")
        return {**meta, "size": len(value or b""), "value": text}
    if value is None:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return {"value": value.decode("utf-8", "replace")}
    return record if isinstance(record, dict) else {"value": record}


def committed_records(
    config: Config, topic: str, follow: bool = False, poll_s: float = 0.5
) -> Iterator[Record]:
    """``(partition, offset, value, headers)`` of every committed record of ``topic``, partition by
    partition in offset order as they arrive, from the beginning; without ``follow`` up to the
    end of every partition. Checks at once (not on the first ``next``): raises
    :class:`~fraudstream.kafka.connect.KafkaUnreachableError` when no broker answers,
    :class:`StreamError` when the topic does not exist (and ``follow`` is off: following waits
    for it)."""
    settings = client_config(config)
    meta = check_brokers(settings)
    while topic not in meta.topics or meta.topics[topic].error is not None:
        if not follow:
            raise StreamError(
                f"topic {topic!r} does not exist at {config.kafka.bootstrap_servers} "
                "(fraudstream run creates it when it starts)"
            )
        time.sleep(1.0)
        meta = AdminClient(settings).list_topics(timeout=10)
    return _read(settings, topic, sorted(meta.topics[topic].partitions), follow, poll_s)


def _read(
    settings: dict[str, Any], topic: str, partitions: list[int], follow: bool, poll_s: float
) -> Iterator[Record]:
    consumer = Consumer(
        {
            **settings,
            "group.id": f"fraudstream-alerts-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        while follow or pending:
            for m in consumer.consume(1_000, timeout=poll_s):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition() or 0)
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    continue  # transient; the client retries
                headers = m.headers() or []
                pairs = list(headers.items()) if isinstance(headers, dict) else headers
                yield (
                    m.partition() or 0,
                    m.offset() or 0,
                    m.value(),
                    [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs],
                )
    finally:
        consumer.close()


def print_records(
    config: Config,
    kind: str = "alerts",
    *,
    follow: bool = False,
    fmt: str | None = None,
    limit: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Prints the committed ``kind`` records (``fmt``: ``"json"`` lines or ``"table"``; default:
    a table on a terminal, JSON lines otherwise); returns how many it printed."""
    out = out or sys.stdout
    err = err or sys.stderr
    fmt = fmt or ("table" if out.isatty() else "json")
    topic = topic_of(config, kind)
    count = 0
    records = committed_records(config, topic, follow)
    if fmt == "table":
        print(table_header(kind), file=out, flush=True)
    try:
        for _, _, value, headers in records:
            record = as_dict(value, headers)
            if record is None:
                continue
            line = table_row(kind, record) if fmt == "table" else json.dumps(record, separators=(", ", ": "))
            print(line, file=out, flush=follow)
            count += 1
            if limit is not None and count >= limit:
                break
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or piped into `head`
        return count
    noun = {"alerts": "alerts", "scores": "scored transactions", "dead-letters": "dead letters"}[kind]
    print(
        f"{count:,} {noun} committed in {topic} at {config.kafka.bootstrap_servers} (read_committed)",
        file=err,
    )
    return count


__all__ = ["KINDS", "as_dict", "committed_records", "print_records", "table_header", "table_row", "topic_of"]
