"""The README's Kafka walkthrough, word for word, against the test broker (whatever its port).

The five lines are read from the README and run by bash in the repository root with the
environment a user has after the first line: ``FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS`` naming the
broker. Only the topic and group names differ (``FRAUDSTREAM_KAFKA_*_TOPIC`` variables, which
win over the example config as any key's variable does), so the test shares the broker with
other runs. ``scripts/kafka up`` runs too when the test broker is the one it manages (it then
only prints the address); ``scripts/kafka down`` never runs here: it would stop the test broker.

Then what a second run looks like: ``produce`` again continues the transaction ids (no
duplicates), and ``run`` with ``--status`` prints its status line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from eos_helpers import read_all

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def walkthrough() -> list[str]:
    """The command lines of the README's Kafka section, comments dropped."""
    section = README.read_text().split("## The Kafka pipeline", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None, "the Kafka section starts with a bash block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def bash(line: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def user_env(kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]) -> dict[str, str]:
    """A user's shell after ``export FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS=...``, with topics of
    this test (deleted afterwards with every topic derived from the input's name)."""
    topic = kafka_topic_factory(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    # `fraudstream` as installed next to this interpreter (a virtualenv's bin/)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        FRAUDSTREAM_KAFKA_INPUT_TOPIC=topic,
        FRAUDSTREAM_KAFKA_ALERTS_TOPIC=f"{topic}-alerts",
        FRAUDSTREAM_KAFKA_SCORES_TOPIC=f"{topic}-scored",
        FRAUDSTREAM_KAFKA_DEAD_LETTER_TOPIC=f"{topic}-dlq",
        FRAUDSTREAM_KAFKA_CHANGELOG_TOPIC=f"{topic}-changelog",
        FRAUDSTREAM_KAFKA_GROUP_ID=f"{topic}-group",
        PYTHONUNBUFFERED="1",
    )
    return env


def test_the_readme_kafka_walkthrough_works_as_written(
    user_env: dict[str, str], kafka_bootstrap: str
) -> None:
    lines = walkthrough()
    assert lines[0] == "export FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS=$(scripts/kafka up)"
    assert lines[-1] == "scripts/kafka down"
    produce_line, run_line, alerts_line = lines[1:4]
    assert all(line.startswith("fraudstream ") for line in (produce_line, run_line, alerts_line))

    # the first line: scripts/kafka finds the broker the variable names and prints its address
    managed = bash("scripts/kafka status", user_env).returncode == 0
    if managed:
        up = bash("scripts/kafka up", user_env)
        assert up.returncode == 0 and up.stdout.strip() == kafka_bootstrap, up.stderr

    produced = bash(produce_line, user_env)
    assert produced.returncode == 0, produced.stderr[-3000:]
    events = int(re.search(r"--events (\d+)", produce_line).group(1))  # type: ignore[union-attr]
    assert (
        f"produced {events:,} transactions to {user_env['FRAUDSTREAM_KAFKA_INPUT_TOPIC']}" in produced.stdout
    )
    assert f"ids 0..{events - 1:,}" in produced.stdout

    ran = bash(run_line, user_env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    stats = json.loads(ran.stdout.strip().splitlines()[-1])
    assert stats["consumed"] == events
    assert stats["consumed"] == stats["processed"] + stats["dead_lettered"]
    assert stats["alerts"] > 0 and stats["scored"] == stats["processed"]

    read = bash(alerts_line, user_env)
    assert read.returncode == 0, read.stderr[-3000:]
    alerts = [json.loads(line) for line in read.stdout.splitlines()]  # not a terminal: JSON lines
    assert len(alerts) == stats["alerts"]
    assert {"card_id", "rule", "reasons", "event_time", "trigger_txn_id"} <= set(alerts[0])
    assert f"{len(alerts):,} alerts committed in {user_env['FRAUDSTREAM_KAFKA_ALERTS_TOPIC']}" in read.stderr

    # produce can run again: the ids continue, so nothing of it is a duplicate of the first run
    again = bash(produce_line, user_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"ids {events:,}..{2 * events - 1:,}" in again.stdout
    rerun = bash(run_line + " --status --status-interval 1", user_env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    second = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert second["consumed"] == events and second["duplicates"] == 0
    status = [line for line in rerun.stderr.splitlines() if line.startswith("fraudstream run: ")]
    assert status, rerun.stderr[-3000:]
    assert re.search(r"consumed \([\d,]+/s\), [\d,]+ alerts, lag [\d,]+, ", status[-1])
    assert "lag 0," in status[-1]  # the last lines come after everything was committed

    scores = bash(alerts_line + " --scores --max 5 --format table", user_env)
    assert scores.returncode == 0, scores.stderr[-3000:]
    assert scores.stdout.splitlines()[0].split()[:4] == ["txn", "card", "score", "decision"]
    assert len(scores.stdout.splitlines()) == 6
    ids = {
        json.loads(m.value())["txn_id"]
        for m in read_all(kafka_bootstrap, user_env["FRAUDSTREAM_KAFKA_INPUT_TOPIC"], 3)
    }
    assert ids == set(range(2 * events))
