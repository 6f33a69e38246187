"""Any processor through the real exactly-once pipeline: a user's own (not the detector), and
wall-clock ticks of quiet partitions. The reference is the pipeline's own partition task run
in process over the committed input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from eos_helpers import (
    committed_alerts,
    last_json_line,
    make_config,
    produce,
    read_all,
    reference_alerts,
    stream_with_bursts,
    write_toml,
)

from fraudstream.config import Config, DetectorSection
from fraudstream.kafka.changelog import read_changelog
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.task import PartitionTask

pytestmark = pytest.mark.kafka
PARTITIONS = 3
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def topic(kafka_topic_factory: Callable[..., str]) -> str:
    return kafka_topic_factory(PARTITIONS)


def test_a_user_processor_named_in_the_config_runs_exactly_once_through_fraudstream_run(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    records = stream_with_bursts(6_000, seed=11, bursts=3)
    produce(kafka_bootstrap, topic, records)
    config = make_config(kafka_bootstrap, topic)
    config.detector = DetectorSection(kind="test_partition_task:user_processor")
    log, path = tmp_path / "run.log", write_toml(config, tmp_path / "u.toml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "fraudstream", "run", "--config", str(path),
             "--idle-exit", "2", "--max-seconds", "120"],
            stdout=out, stderr=subprocess.STDOUT, env=env, timeout=180, check=False,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()[-3000:]
    stats = last_json_line(log)
    assert stats["consumed"] == len(records) == stats["processed"] + stats["dead_lettered"]
    got = committed_alerts(config, PARTITIONS)
    sys.path.insert(0, str(TESTS))
    try:
        assert got == reference_alerts(config, PARTITIONS)
    finally:
        sys.path.remove(str(TESTS))
    assert {a[1] for a in got} == {"every_third"}
    assert len(got) == sum(1 for _, v in records if json.loads(v)["txn_id"] % 3 == 0)
    scores = read_all(kafka_bootstrap, config.kafka.scores_topic, PARTITIONS)
    assert len(scores) == stats["processed"] == stats["scored"]
    assert len({(m.partition(), json.loads(m.value())["offset"]) for m in scores}) == len(scores)


def _state_keys(config: Config, kafka_bootstrap: str) -> int:
    """Keys with open windows in the committed state of every partition (velocity rule)."""
    topic = config.kafka.changelog_topic
    restored = read_changelog({"bootstrap.servers": kafka_bootstrap}, topic, "check", list(range(PARTITIONS)))
    factory = processor_factory(config)
    keys = 0
    for p, r in restored.items():
        task = PartitionTask(p, factory(), config)
        assert r.snapshot is not None
        task.restore(r.snapshot, r.changes)
        keys += task.processor.engine.state_size()["keys"]  # type: ignore[attr-defined]
    return keys


@pytest.mark.parametrize("idle_timeout_ms", [0, 300])
def test_quiet_partitions_are_advanced_by_the_wall_clock_and_their_windows_close(
    kafka_bootstrap: str, topic: str, idle_timeout_ms: int
) -> None:
    """The input's event times are long past: once a partition is quiet for the idle timeout,
    advancing by the wall clock closes every window (state freed, in the changelog too); with
    ticks off, the windows stay open until the next record."""
    produce(kafka_bootstrap, topic, stream_with_bursts(3_000, seed=12, bursts=2))
    config = make_config(kafka_bootstrap, topic, idle_timeout_ms=idle_timeout_ms)
    config.detector = DetectorSection(kind="velocity")
    stats = KafkaPipeline(config).run(idle_exit_s=2.5, max_seconds=60)
    assert stats.consumed == 3_000 + 12
    assert committed_alerts(config, PARTITIONS) == reference_alerts(config, PARTITIONS)
    keys = _state_keys(config, kafka_bootstrap)
    if idle_timeout_ms:
        assert stats.idle_ticks >= PARTITIONS
        assert keys == 0, "every window closed and its state was freed"
    else:
        assert stats.idle_ticks == 0
        assert keys > 0
