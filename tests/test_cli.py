"""The ``fraudstream`` command: version, help with examples, configuration errors (exit code 2,
one line naming the key) and an unreachable broker (a non-zero exit with a one-line reason,
in bounded time)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fraudstream
from fraudstream.cli import main


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without FRAUDSTREAM_* variables (the test command exports some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    return {**env, **extra}


def fraudstream_cmd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudstream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else clean_env(),
    )


@pytest.fixture
def no_fraudstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("FRAUDSTREAM_")]:
        monkeypatch.delenv(name)


def test_version() -> None:
    done = fraudstream_cmd("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"fraudstream {fraudstream.__version__}"


def test_help_shows_the_commands_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "run", "produce", "train", "evaluate"):
        assert command in text
    assert "examples:" in text
    examples = text.split("examples:", 1)[1]
    assert "fraudstream demo" in examples and "fraudstream run --config" in examples


def test_demo_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--events", "--seed", "--rate", "--out", "--no-progress", "--model"):
        assert option in text


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: fraudstream" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[kafka\nbootstrap_servers = 'x'\n", {}, "is not valid TOML"),
        ("[kafka]\nbootstrap = 'x'\n", {}, "unknown key kafka.bootstrap"),
        ("[kafkaa]\n", {}, "unknown section [kafkaa]"),
        (
            "[kafka]\ncommit_interval_ms = 'soon'\n",
            {},
            "kafka.commit_interval_ms must be an integer, got 'soon'",
        ),
        ("[kafka]\nexactly_once = 'maybe'\n", {}, "kafka.exactly_once must be true or false"),
        ("[kafka]\ncommit_interval_ms = 0\n", {}, "kafka.commit_interval_ms must be > 0"),
        ("[rule]\nsize = 'five minutes'\n", {}, "rule.size"),
        (
            "",
            {"FRAUDSTREAM_KAFKA_COMMIT_INTERVAL_MS": "abc"},
            "kafka.commit_interval_ms must be an integer, got 'abc'",
        ),
        ("", {"FRAUDSTREAM_METRICS_PORT": "70000"}, "metrics.port must be in [0, 65535]"),
    ],
)
def test_configuration_errors_exit_2_with_one_line_naming_the_key(
    toml: str,
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_fraudstream_env: None,
) -> None:
    path = tmp_path / "fraudstream.toml"
    path.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fraudstream: configuration error: ")
    assert message in lines[0]
    assert captured.out == ""


def test_a_missing_configuration_file(no_fraudstream_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", "/nonexistent/fraudstream.toml"]) == 2
    assert "configuration file /nonexistent/fraudstream.toml does not exist" in capsys.readouterr().err


def test_a_configuration_error_is_exit_code_2_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[kafka]\ngroup_id = 42\n")
    done = fraudstream_cmd("run", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "fraudstream: configuration error: kafka.group_id must be a string, got 42"
    ]


@pytest.mark.slow
def test_an_unreachable_broker_exits_non_zero_with_a_one_line_reason() -> None:
    began = time.monotonic()
    done = fraudstream_cmd(
        "run", env=clean_env(FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"), timeout=120
    )
    elapsed = time.monotonic() - began
    assert done.returncode == 3, done.stderr[-2000:]
    assert elapsed < 90, f"took {elapsed:.0f} s"
    reason = [line for line in done.stderr.splitlines() if line.startswith("fraudstream:")]
    assert len(reason) == 1 and reason[0].startswith("fraudstream: Kafka error: "), done.stderr[-2000:]
    assert done.stdout == ""
    # librdkafka's own log lines ("%3|...|FAIL|...", one per reconnect attempt for the whole
    # metadata timeout) share stderr with the reason, in no fixed order: not asserted here
