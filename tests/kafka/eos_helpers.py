"""Shared pieces of the exactly-once tests: input streams with injected fraud bursts, the
in-process reference, and readers of committed output."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from fraudstream.config import Config, KafkaSection, to_toml
from fraudstream.generator import card_transaction_profiles, card_transactions
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.read_alerts import read_to_end
from fraudstream.kafka.schema import encode_transactions
from fraudstream.kafka.task import ALERTS, PartitionTask

Alert = tuple[int, str, int, int, int, int]  # card, rule, trigger txn, event time, partition, offset
SINGLE_BROKER = {"replication_factor": 1, "min_insync_replicas": 1}
"""The test broker is one node: the topics the pipeline creates have one replica."""
STREAM_CARDS = 2_000
"""The cards of :func:`stream_with_bursts`' traffic, ``0 .. STREAM_CARDS - 1`` (its burst
cards are ``900_000 + b``)."""
WAIT_S = 90.0
"""How long a test waits for instances to own partitions (and for one to finish: twice that)."""


def make_config(bootstrap: str, topic: str, **kafka: Any) -> Config:
    kafka = {**SINGLE_BROKER, **kafka}
    section = KafkaSection.for_topic(bootstrap, topic, session_timeout_ms=2_000, **kafka)
    return Config(kafka=section).validate()


def as_instance(config: Config, name: str) -> Config:
    """``config`` for the group member ``name`` (its own transactional id)."""
    return replace(config, kafka=replace(config.kafka, instance_id=name))


def write_toml(config: Config, path: Path) -> Path:
    path.write_text(to_toml(config))
    return path


def stream_with_bursts(n: int, seed: int, bursts: int = 20) -> list[tuple[int, bytes]]:
    """(card, message) pairs: generated traffic plus ``bursts`` cards with 6 transactions in 4
    countries within 4 minutes, interleaved by event time."""
    data = card_transactions(n, cards=STREAM_CARDS, rate_per_s=500.0, disorder_ms=5_000, seed=seed)
    rng = np.random.default_rng(seed + 1)
    t_min, t_max = int(data["ts"].min()), int(data["ts"].max())
    extra: dict[str, list[int] | list[float]] = {"card": [], "ts": [], "amount": [], "country": []}
    for b in range(bursts):
        start = int(rng.integers(t_min, max(t_min + 1, t_max - 300_000)))
        for i in range(6):
            extra["card"].append(900_000 + b)  # type: ignore[arg-type]
            extra["ts"].append(start + i * 40_000)  # type: ignore[arg-type]
            extra["amount"].append(5.0 + i)  # type: ignore[arg-type]
            extra["country"].append([1, 5, 9, 14, 5, 1][i])  # type: ignore[arg-type]
    cols = {k: np.concatenate([data[k], np.asarray(extra[k])]) for k in data}
    order = np.argsort(cols["ts"] + rng.integers(0, 3_000, len(cols["ts"])), kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    return list(zip(cols["card"].tolist(), encode_transactions(cols), strict=True))


def stream_profiles() -> dict[str, np.ndarray[Any, Any]]:
    """The profiles of :func:`stream_with_bursts`' cards (home country, account opening,
    average amount), whatever its seed; the burst cards have none."""
    return card_transaction_profiles(STREAM_CARDS)


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]], rate: float | None = None) -> None:
    """Produces ``records`` keyed by card, as fast as possible or at ``rate`` records/s."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    began = time.monotonic()
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=str(key).encode(), value=value)
        producer.poll(0)
        if rate and i % 500 == 0:
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, partitions: int, committed: bool = True) -> list[Any]:
    """Every record of ``topic`` (read_committed by default), in partition then offset order."""
    return read_to_end(bootstrap, topic, partitions, committed)


def reference_alerts(config: Config, partitions: int) -> list[Alert]:
    """What the pipeline's own partition task computes over the committed input, one task
    per partition in offset order, in one batch (outputs do not depend on batching)."""
    msgs = read_all(config.kafka.bootstrap_servers, config.kafka.input_topic, partitions)
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for m in msgs:
        by_partition[m.partition()].append(m)
    factory = processor_factory(config)
    alerts: list[Alert] = []
    for p, batch in by_partition.items():
        out = PartitionTask(p, factory(), config).process(batch)
        alerts.extend(alert_identity(json.loads(value)) for _, value in out.records[ALERTS])
    return sorted(alerts)


def alert_identity(a: dict[str, Any]) -> Alert:
    return (a["card_id"], a["rule"], a["trigger_txn_id"], a["event_time"], a["partition"], a["offset"])


def committed_alerts(config: Config, partitions: int) -> list[Alert]:
    records = read_all(config.kafka.bootstrap_servers, config.kafka.alerts_topic, partitions)
    return sorted(alert_identity(json.loads(m.value())) for m in records)


def run_instance(config_path: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``fraudstream run`` in a subprocess (killable with SIGKILL), its output appended to ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fraudstream", "run", "--config", str(config_path), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def owns(log: Path) -> bool:
    """Whether the instance logging to ``log`` has restored (so owned) partitions."""
    return log.exists() and "restored partitions" in log.read_text()


def wait_until_all_own(logs: Iterable[Path]) -> None:
    """Waits (at most :data:`WAIT_S`) until every instance logging to ``logs`` owns partitions."""
    logs = list(logs)
    deadline = time.monotonic() + WAIT_S
    while not all(map(owns, logs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(map(owns, logs)), "every instance owns partitions"


def kill_running(*procs: subprocess.Popen[bytes]) -> None:
    """Kills (SIGKILL) and reaps those of ``procs`` still running: a failed test's leftovers."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kill_once_restored(config_path: Path, log: Path, rng: random.Random, wait_s: float = 20.0) -> bool:
    """Starts an instance, waits (at most ``wait_s``) until it restored partitions, lets it run
    a random 0 - 1.5 s and kills it with SIGKILL; whether it had owned partitions."""
    restores = log.read_text().count("restored partitions") if log.exists() else 0
    proc = run_instance(config_path, log, "--idle-exit", "30")
    deadline = time.monotonic() + wait_s
    while log.read_text().count("restored partitions") == restores and time.monotonic() < deadline:
        time.sleep(0.05)  # start-up, group join (and table loads), restore
    owned = log.read_text().count("restored partitions") > restores
    time.sleep(rng.uniform(0.0, 1.5))
    proc.kill()
    proc.wait()
    return owned


def last_json_line(log: Path) -> dict[str, Any]:
    """The run statistics an instance printed last."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    stats: dict[str, Any] = json.loads(lines[-1])
    return stats


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for an instance's metrics endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The samples a metrics endpoint on 127.0.0.1 serves, by name (labels included)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-+\d.eEinfa]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
