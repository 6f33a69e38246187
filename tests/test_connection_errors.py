"""A wrong broker address: every Kafka command names the address it tried in one line and
exits with status 3, without streaming librdkafka's reconnect lines; and the older module entry
point runs without runpy's warning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

UNREACHABLE = "127.0.0.1:1"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    return {**env, **extra}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env or clean_env()
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "fraudstream", "produce", "--bootstrap", UNREACHABLE, "--events", "10"],
        ["-m", "fraudstream", "run", "--bootstrap", UNREACHABLE],
        ["-m", "fraudstream", "alerts", "--bootstrap", UNREACHABLE],
        ["-m", "fraudstream.kafka.read_alerts", "--bootstrap", UNREACHABLE],
    ],
    ids=["produce", "run", "alerts", "read_alerts"],
)
def test_an_unreachable_broker_is_one_line_naming_it_and_exit_3(args: list[str]) -> None:
    done = run(*args)
    assert done.returncode == 3, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    reason = [line for line in lines if "Kafka error" in line]
    assert len(reason) == 1, done.stderr[-2000:]
    assert f"no Kafka broker answered at {UNREACHABLE}" in reason[0]
    assert "Connection refused" in reason[0]  # the client's own reason, once
    assert "FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS" in reason[0]
    assert len(lines) <= 3, done.stderr[-2000:]  # summarised, not streamed
    assert "|FAIL|" not in done.stderr
    assert done.stdout == ""


def test_the_variable_names_the_broker_as_the_option_does() -> None:
    done = run("-m", "fraudstream", "alerts", env=clean_env(FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS=UNREACHABLE))
    assert done.returncode == 3
    assert f"no Kafka broker answered at {UNREACHABLE}" in done.stderr


def test_read_alerts_as_a_module_runs_without_runpy_warning() -> None:
    done = run("-W", "error::RuntimeWarning", "-m", "fraudstream.kafka.read_alerts", "--help")
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr and "usage:" in done.stdout
