"""Views out: the design's materialized view (count and sum per category and hour) beside the
fraud detector, run by the pipeline on ``examples/category-view.toml`` against the real broker
and read back ``read_committed``: equal to an oracle computed from the produced transactions,
corrected by UPDATE rows for late events, the latest row per key winning, and exactly once
across kill -9."""

from __future__ import annotations

import io
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from eos_helpers import produce, read_all, run_instance, write_toml
from view_helpers import CLOSED_HOURS, HOUR, START, ViewStream, category_stream, example_config

from fraudstream.config import Config
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.task import VIEWS, PartitionTask
from fraudstream.kafka.view_reader import print_view
from fraudstream.views import combine, latest

PARTITIONS = 2


def check_view(stream: ViewStream, records: list[tuple[bytes | None, bytes]]) -> dict[str, int]:
    """The view records (in partition, offset order) against the stream's oracle; returns how
    many rows of each kind there were."""
    by_kind = Counter(json.loads(v)["kind"] for _, v in records)
    rows = latest(records)
    assert all(k == f"{r['key']}:{r['window_start']}:{r['partition']}".encode() for k, r in rows.items())
    view = {
        (r["key"], r["window_start"]): r
        for r in combine(rows.values(), {"n": "count", "total": "sum(amount)"})
    }
    oracle = stream.oracle()
    assert set(view) == set(oracle), f"missing {set(oracle) - set(view)}, extra {set(view) - set(oracle)}"
    for cell, (n, total) in oracle.items():
        assert view[cell]["n"] == n, cell
        assert view[cell]["total"] == pytest.approx(total, rel=1e-9), cell
    assert len({start for _, start in view}) == CLOSED_HOURS  # hour 3 is still open: no row
    # the corrections: UPDATE rows exactly for the windows late events reached, each after the
    # window's FINAL row of the same key, and the latest row (what compaction keeps) is the
    # corrected one
    updated = {(json.loads(v)["key"], json.loads(v)["window_start"]) for _, v in records if b'"update"' in v}
    assert updated == stream.corrected
    first: dict[bytes | None, dict[str, Any]] = {}
    for key, value in records:
        row = json.loads(value)
        if key not in first:
            assert row["kind"] == "final", f"{key!r}: the first row of a window is its FINAL row"
            first[key] = row
    grew = [k for k, r in rows.items() if r["kind"] == "update" and r["n"] > first[k]["n"]]
    assert grew, "a correction changes the count of its window"
    assert all(r["window_start"] == START + 2 * HOUR for r in rows.values() if r["kind"] == "update")
    return dict(by_kind)


def test_view_of_the_pure_task_equals_the_oracle() -> None:
    """The same checks without a broker: one partition task per partition over the stream."""
    stream = category_stream(6_000, seed=3)
    config = example_config("127.0.0.1:1", "in")
    factory = processor_factory(config)
    records: list[tuple[bytes | None, bytes]] = []
    now = int(time.time() * 1000)
    for p in range(PARTITIONS):
        mine = [(card, v) for card, v in stream.records if card % PARTITIONS == p]
        msgs = [
            Message(topic="in", partition=p, offset=i, key=str(card).encode(), value=v, timestamp=(1, now))
            for i, (card, v) in enumerate(mine)
        ]
        task = PartitionTask(p, factory(), config)
        out = task.process(msgs[: len(msgs) // 3])
        more = task.process(msgs[len(msgs) // 3 :])  # batching does not change the view
        records += out.records.get(VIEWS, []) + more.records.get(VIEWS, [])
        assert (
            out.consumed + more.consumed
            == out.processed + more.processed + out.dead_lettered + more.dead_lettered
        )
        assert out.dead_lettered + more.dead_lettered == 0, "too-late events are the detector's, not dead"
    kinds = check_view(stream, records)
    assert kinds["final"] > 0 and kinds["update"] > 0 and "early" not in kinds


@pytest.mark.kafka
def test_the_example_view_runs_beside_the_detector_and_reads_back_equal_to_the_oracle(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(PARTITIONS)
    stream = category_stream(12_000, seed=1)
    produce(kafka_bootstrap, topic, stream.records)
    config = example_config(kafka_bootstrap, topic)
    stats = KafkaPipeline(config).run(idle_exit_s=2.0, max_seconds=180)
    assert stats.consumed == len(stream.records) == stats.processed
    assert stats.scored == stats.processed, "the detector scores every transaction beside the view"
    msgs = read_all(kafka_bootstrap, config.kafka.view_topic, PARTITIONS)
    assert stats.view_rows == len(msgs) > 0
    kinds = check_view(stream, [(m.key(), m.value()) for m in msgs])
    assert kinds["update"] > 0
    # `fraudstream view --combine` prints the same windows
    out, err = io.StringIO(), io.StringIO()
    printed = print_view(config, combined=True, fmt="json", out=out, err=err)
    rows = latest((m.key(), m.value()) for m in msgs)
    expected = combine(rows.values(), config.view.aggregations)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == expected
    assert printed == len(expected) and f"{printed:,} windows" in err.getvalue()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, config.kafka.view_topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    assert entries["cleanup.policy"].value == "compact"


@pytest.mark.kafka
@pytest.mark.slow
def test_kill_9_leaves_the_view_exactly_as_a_crash_free_run(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """Instances killed with SIGKILL while they process: the committed view records are the
    records a crash-free run computes, each once (the view's records are in the transaction)."""
    topic = kafka_topic_factory(PARTITIONS)
    stream = category_stream(20_000, seed=2)
    produce(kafka_bootstrap, topic, stream.records)
    config = example_config(kafka_bootstrap, topic, consume_batch=300, commit_interval_ms=50)
    path = write_toml(config, tmp_path / "view.toml")
    log = tmp_path / "instance.log"
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        restores = log.read_text().count("restored partitions") if log.exists() else 0
        proc = run_instance(path, log, "--idle-exit", "30")
        deadline = time.monotonic() + 30
        while log.read_text().count("restored partitions") == restores and time.monotonic() < deadline:
            time.sleep(0.05)
        kills += log.read_text().count("restored partitions") > restores
        time.sleep(rng.uniform(0.2, 1.5))
        proc.kill()
        proc.wait()
    final = run_instance(path, log, "--idle-exit", "3")
    assert final.wait(timeout=240) == 0, log.read_text()[-3000:]
    assert kills >= 3, f"only {kills} kills hit an owner of partitions"
    got = [(m.key(), m.value()) for m in read_all(kafka_bootstrap, config.kafka.view_topic, PARTITIONS)]
    expected = reference_view(config)
    assert Counter(got) == Counter(expected), "committed view records differ from a crash-free run"
    check_view(stream, got)
    raw = read_all(kafka_bootstrap, config.kafka.view_topic, PARTITIONS, committed=False)
    assert len(raw) >= len(got)


def reference_view(config: Config) -> list[tuple[bytes | None, bytes]]:
    """The view records the pipeline's own partition task computes over the committed input,
    one task per partition, in partition then offset order."""
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for m in read_all(config.kafka.bootstrap_servers, config.kafka.input_topic, PARTITIONS):
        by_partition[m.partition()].append(m)
    factory = processor_factory(config)
    out: list[tuple[bytes | None, bytes]] = []
    for p in sorted(by_partition):
        out += PartitionTask(p, factory(), config).process(by_partition[p]).records.get(VIEWS, [])
    return out
