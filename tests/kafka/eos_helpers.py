"""Shared pieces of the exactly-once tests: input streams with injected fraud bursts, the
in-process reference, and readers of committed output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from fraudstream.config import Config, KafkaSection, to_toml
from fraudstream.generator import card_transactions
from fraudstream.kafka.pipeline import make_rule_engine
from fraudstream.kafka.read_alerts import read_to_end
from fraudstream.kafka.schema import decode_batch, encode_transactions
from fraudstream.windows import EmitKind

Alert = tuple[int, int, int, int, int, int]  # card, window start, window end, n, countries, trigger txn


def make_config(bootstrap: str, topic: str, **kafka: Any) -> Config:
    section = KafkaSection.for_topic(bootstrap, topic, session_timeout_ms=2_000, **kafka)
    return Config(kafka=section).validate()


def write_toml(config: Config, path: Path) -> Path:
    path.write_text(to_toml(config))
    return path


def stream_with_bursts(n: int, seed: int, bursts: int = 20) -> list[tuple[int, bytes]]:
    """(card, message) pairs: generated traffic plus ``bursts`` cards with 6 transactions in 4
    countries within 4 minutes, interleaved by event time."""
    data = card_transactions(n, cards=2_000, rate_per_s=500.0, disorder_ms=5_000, seed=seed)
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
    """What the in-process engine alerts on the input, one engine per partition, offset order."""
    msgs = read_all(config.kafka.bootstrap_servers, config.kafka.input_topic, partitions)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    seen: set[int] = set()
    dedup = config.decode.dedup_horizon not in ("0s", "0")
    for m in msgs:
        if dedup:  # the tests' duplicates are exact copies sent close together: keep the first
            try:
                txn = json.loads(m.value())["txn_id"]
            except (ValueError, KeyError, TypeError):
                txn = None
            if isinstance(txn, int):
                if txn in seen:
                    continue
                seen.add(txn)
        by_partition[m.partition()].append(m.value())
    alerts: list[Alert] = []
    for values in by_partition.values():
        engine = make_rule_engine(config)
        decoded = decode_batch(values, config.decode)
        out = engine.process(decoded.columns)
        early = out.select(out["kind"] == EmitKind.EARLY)
        for row, trig in zip(early.rows(), early.trigger_rows.tolist(), strict=True):
            alerts.append(
                (
                    row["key"],
                    row["window_start"],
                    row["window_end"],
                    row["n"],
                    row["countries"],
                    int(decoded.columns["txn_id"][trig]),
                )
            )
    return sorted(alerts)


def committed_alerts(config: Config, partitions: int) -> list[Alert]:
    out = []
    for m in read_all(config.kafka.bootstrap_servers, config.kafka.alerts_topic, partitions):
        a = json.loads(m.value())
        out.append(
            (a["card_id"], a["window_start"], a["window_end"], a["n"], a["countries"], a["trigger_txn_id"])
        )
    return sorted(out)


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


def last_json_line(log: Path) -> dict[str, Any]:
    """The run statistics an instance printed last."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    stats: dict[str, Any] = json.loads(lines[-1])
    return stats
