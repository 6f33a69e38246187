"""Hostile settings (issue 15): no configuration value can crash or hang the process. Each is a
``ConfigError`` naming the key, raised at start (``fraudstream run`` exits 2 with one line),
and secrets never appear in an error. Also: ``process()`` after ``flush()`` raises.

No broker needed: every setting here is refused before a Kafka client exists."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream import WindowedAggregation, hopping, session, tumbling
from fraudstream.config import Config, as_dict, client_settings, load_config, redacted
from fraudstream.errors import ConfigError, FlushedError
from fraudstream.kafka.processors import processor_factory
from fraudstream.metrics import PipelineMetrics

DEEP_PARENS = "(" * 10_000 + "n > 1" + ")" * 10_000
DEEP_NOT = "not " * 20_000 + "n > 1"
LONG_CHAIN = " and ".join(["n > 1"] * 50_000)

BAD_SETTINGS: list[tuple[str, dict[str, str], str]] = [
    # (name, FRAUDSTREAM_* environment, what the error says)
    ("deep-parentheses", {"RULE_ALERT_WHEN": DEEP_PARENS}, "nested deeper than 64"),
    ("deep-not", {"RULE_ALERT_WHEN": DEEP_NOT}, "nested deeper than 64"),
    ("long-chain", {"RULE_ALERT_WHEN": LONG_CHAIN}, "more than 1000 comparisons"),
    ("unicode-operator", {"RULE_ALERT_WHEN": "n ≥ 5"}, "at position 2: unexpected character '≥'"),
    ("unbalanced", {"RULE_ALERT_WHEN": "(n > 1"}, "expected ')'"),
    ("unknown-aggregate", {"RULE_ALERT_WHEN": "bogus > 1"}, "unknown aggregation"),
    ("nan-bound", {"RULE_ALERT_WHEN": "n > nan"}, "expected a number"),
    ("empty-predicate", {"RULE_ALERT_WHEN": ""}, "found the end"),
    ("panes-per-window", {"RULE_SIZE": "10m", "RULE_SLIDE": "1ms"}, "600000 panes"),
    ("panes-coprime", {"RULE_SIZE": "24h", "RULE_SLIDE": "7s"}, "panes"),
    ("panes-1h-1s", {"RULE_SIZE": "1h", "RULE_SLIDE": "1s"}, "3600 panes"),
    ("slide-above-size", {"RULE_SIZE": "1m", "RULE_SLIDE": "5m"}, "must not exceed its size"),
    ("zero-size", {"RULE_SIZE": "0s"}, "window size must be > 0"),
    ("size-beyond-100-years", {"RULE_SIZE": "50000d"}, "at most"),
    ("negative-disorder", {"RULE_OUT_OF_ORDERNESS": "-5s"}, "rule.out_of_orderness"),
    ("duration-garbage", {"RULE_SIZE": "five minutes"}, "rule.size"),
    ("dedup-negative", {"DECODE_DEDUP_HORIZON": "-1s"}, "decode.dedup_horizon"),
    ("dedup-garbage", {"DECODE_DEDUP_HORIZON": "soon"}, "decode.dedup_horizon"),
    ("max-future-negative", {"DECODE_MAX_FUTURE_MS": "-1"}, "decode.max_future_ms must be >= 0"),
    ("max-future-float", {"DECODE_MAX_FUTURE_MS": "1.5"}, "decode.max_future_ms must be an integer"),
    ("record-bytes-zero", {"DECODE_MAX_RECORD_BYTES": "0"}, "decode.max_record_bytes must be > 0"),
    ("metrics-port-high", {"METRICS_PORT": "70000"}, "metrics.port must be in [0, 65535]"),
    ("metrics-port-negative", {"METRICS_PORT": "-1"}, "metrics.port must be in [0, 65535]"),
    ("metrics-host-empty", {"METRICS_HOST": ""}, "metrics.host must not be empty"),
    ("commit-interval-zero", {"KAFKA_COMMIT_INTERVAL_MS": "0"}, "kafka.commit_interval_ms must be > 0"),
    ("consume-batch-negative", {"KAFKA_CONSUME_BATCH": "-5"}, "kafka.consume_batch must be > 0"),
    ("process-threads-zero", {"KAFKA_PROCESS_THREADS": "0"}, "kafka.process_threads must be > 0"),
    ("idle-negative", {"KAFKA_IDLE_TIMEOUT_MS": "-1"}, "kafka.idle_timeout_ms must be >= 0"),
    ("exactly-once-garbage", {"KAFKA_EXACTLY_ONCE": "maybe"}, "kafka.exactly_once must be true or false"),
    ("assignment-unknown", {"KAFKA_ASSIGNMENT_STRATEGY": "sticky"}, "assignment_strategy must be one of"),
    ("budget-below-interval", {"KAFKA_COMMIT_LATENCY_BUDGET_MS": "50"}, "at least kafka.commit_interval_ms"),
    ("empty-topic", {"KAFKA_INPUT_TOPIC": ""}, "kafka.input_topic must not be empty"),
    ("client-not-json", {"KAFKA_CLIENT": '{"sasl.password": "hunter2"'}, "must be a JSON object"),
    ("client-json-list", {"KAFKA_CLIENT": '["sasl.password", "hunter2"]'}, "must be a JSON object"),
    ("secret-env-missing", {"KAFKA_CLIENT": '{"sasl.password": "${env:NO_SUCH_VAR_15}"}'}, "NO_SUCH_VAR_15"),
    ("secret-file-missing", {"KAFKA_CLIENT": '{"sasl.password": "${file:/no/such/file}"}'}, "cannot read"),
    ("detector-kind", {"DETECTOR_KIND": "bogus"}, "detector.kind must be"),
    ("detector-module", {"DETECTOR_KIND": "no_such_module_15:build"}, "cannot load"),
    ("detector-threshold", {"DETECTOR_THRESHOLD": "2"}, "detector.threshold must be <= 1"),
    ("detector-cooldown", {"DETECTOR_COOLDOWN": "-1h"}, "detector.cooldown"),
    ("rules-file-missing", {"DETECTOR_RULES_FILE": "/no/such/rules.toml"}, "detector.rules_file"),
    ("model-file-missing", {"DETECTOR_MODEL_FILE": "/no/such/model.json"}, "detector.model_file"),
]


def build(env: dict[str, str]) -> Any:
    """What ``fraudstream run`` does before its first Kafka client: load, validate, build and
    probe the processor (a ``[rule]`` setting needs ``kind = "velocity"`` to be used)."""
    full = {f"FRAUDSTREAM_{k}": v for k, v in env.items()}
    if any(k.startswith("RULE_") for k in env):
        full.setdefault("FRAUDSTREAM_DETECTOR_KIND", "velocity")
    return processor_factory(load_config(env=full))


@pytest.mark.parametrize(("name", "env", "message"), BAD_SETTINGS, ids=[s[0] for s in BAD_SETTINGS])
def test_a_bad_setting_is_a_config_error_naming_what_is_wrong(
    name: str, env: dict[str, str], message: str
) -> None:
    began = time.monotonic()
    with pytest.raises(ConfigError) as info:
        build(env)
    assert message in str(info.value), str(info.value)[:300]
    assert len(str(info.value)) < 1_000, "an error shows a bounded part of what it was given"
    assert "hunter2" not in str(info.value), "a secret is never shown"
    assert time.monotonic() - began < 5


def test_the_bad_settings_are_distinct_and_many() -> None:
    assert len({s[0] for s in BAD_SETTINGS}) == len(BAD_SETTINGS) >= 35


@pytest.mark.parametrize(
    "make",
    [
        lambda: WindowedAggregation(
            key="k", time="t", window=tumbling("1m"), aggregations={"n": "count"}, partitions=10**9
        ),
        lambda: WindowedAggregation(
            key="k", time="t", window=tumbling("1m"), aggregations={"n": "count"}, partitions=0
        ),
        lambda: WindowedAggregation(
            key="k", time="t", window=hopping("10m", "1ms"), aggregations={"n": "count"}
        ),
        lambda: WindowedAggregation(
            key="k", time="t", window=hopping("7d", "1s"), aggregations={"n": "count"}
        ),
        lambda: WindowedAggregation(
            key="k", time="t", window=session("1m"), aggregations={"n": "count"}, early_fire=DEEP_PARENS
        ),
    ],
    ids=["partitions-1e9", "partitions-0", "hopping-10m-1ms", "hopping-7d-1s", "deep-predicate"],
)
def test_sizes_are_capped_with_a_config_error(make: Any) -> None:
    """The defects: ``partitions=10**9`` aborted the process (a failed 32 GB allocation),
    ``hopping("10m", "1ms")`` took 40 s for 5 events, a deep predicate overflowed the stack."""
    with pytest.raises(ConfigError):
        make()


def test_the_largest_allowed_hopping_window_stays_fast() -> None:
    engine = WindowedAggregation(
        key="k", time="t", window=hopping("1000s", "1s"), aggregations={"n": "count"}
    )
    began = time.monotonic()
    t0 = 1_700_000_000_000
    engine.process({"k": np.arange(5), "t": t0 + np.arange(5) * 1_000})
    engine.flush()
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    "code",
    [
        f"from fraudstream import WindowedAggregation, session\n"
        f"WindowedAggregation(key='k', time='t', window=session('1m'), aggregations={{'n': 'count'}}, "
        f"early_fire={DEEP_NOT!r})",
        "from fraudstream import WindowedAggregation, tumbling\n"
        "WindowedAggregation(key='k', time='t', window=tumbling('1m'), aggregations={'n': 'count'}, "
        "partitions=10**9)",
    ],
    ids=["deep-not", "partitions"],
)
def test_the_crashing_settings_raise_in_a_fresh_process(code: str) -> None:
    """rc 139 (segfault) and rc 134 (abort) before the fix: run where a crash cannot take the
    test session down."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"try:\n    exec({code!r})\nexcept Exception as e:\n    print(type(e).__name__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.strip() == "ConfigError"


def test_fraudstream_run_with_a_deep_predicate_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env.update(FRAUDSTREAM_DETECTOR_KIND="velocity", FRAUDSTREAM_RULE_ALERT_WHEN=DEEP_PARENS)
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream", "run"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("fraudstream:")]
    assert len(lines) == 1 and "nested deeper than 64" in lines[0] and len(lines[0]) < 1_000


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_come_from_the_environment_or_a_file_and_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_15", "from-the-env")
    client = {
        "sasl.username": "fraud",
        "sasl.password": "${env:KAFKA_SASL_PASSWORD_15}",
        "ssl.key.password": f"${{file:{secret_file}}}",
        "sasl.oauthbearer.client.secret": "literal-secret",
    }
    resolved = client_settings(client)
    assert resolved["sasl.password"] == "from-the-env"
    assert resolved["ssl.key.password"] == "from-a-file"
    assert resolved["sasl.username"] == "fraud"
    config = Config()
    config.kafka.client = client
    shown = str(as_dict(config.validate()))
    assert "literal-secret" not in shown and "from-the-env" not in shown and "from-a-file" not in shown
    assert redacted(client)["sasl.oauthbearer.client.secret"] == "<redacted>"
    assert redacted(client)["sasl.password"] == "${env:KAFKA_SASL_PASSWORD_15}"


def test_the_client_table_from_the_environment_is_json_and_never_echoed() -> None:
    """The defect: ``FRAUDSTREAM_KAFKA_CLIENT='{"sasl.password":"x"}'`` was refused with the
    value in the error."""
    cfg = load_config(env={"FRAUDSTREAM_KAFKA_CLIENT": '{"sasl.password": "hunter2", "sasl.username": "u"}'})
    assert cfg.kafka.client == {"sasl.password": "hunter2", "sasl.username": "u"}
    with pytest.raises(ConfigError) as info:
        load_config(env={"FRAUDSTREAM_KAFKA_CLIENT": "sasl.password=hunter2"})
    assert "hunter2" not in str(info.value)


# -- the metrics endpoint -----------------------------------------------------------------------


def test_a_metrics_port_in_use_is_a_config_error() -> None:
    """The defect: a port clash was a raw OSError traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} cannot be served"):
            PipelineMetrics(port, "127.0.0.1")


def test_the_metrics_host_is_configurable() -> None:
    assert Config().metrics.host == "127.0.0.1"
    metrics = PipelineMetrics(0, "127.0.0.1")
    assert metrics.port == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    served = PipelineMetrics(free, "localhost")
    try:
        assert served.port == free
    finally:
        served.close()


def test_fraudstream_run_with_a_metrics_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
        env["FRAUDSTREAM_METRICS_PORT"] = str(port)
        done = subprocess.run(
            [sys.executable, "-m", "fraudstream", "run"], capture_output=True, text=True, timeout=120, env=env
        )
    assert done.returncode == 2, done.stderr[-800:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("fraudstream:")]
    assert len(lines) == 1 and "cannot be served" in lines[0], done.stderr[-800:]


# -- process() after flush() --------------------------------------------------------------------


def test_process_after_flush_raises() -> None:
    """The defect: ``process()`` after ``flush()`` was silently accepted (every row late)."""
    from fraudstream.fraud.detector import FraudDetector
    from fraudstream.fraud.rules import RuleSet, default_rules

    t0 = 1_700_000_000_000
    engine = WindowedAggregation(key="k", time="t", window=tumbling("1m"), aggregations={"n": "count"})
    engine.process({"k": [1], "t": [t0]})
    snapshot = engine.snapshot()
    engine.flush()
    with pytest.raises(FlushedError, match="after flush"):
        engine.process({"k": [1], "t": [t0 + 1]})
    engine.restore(snapshot)  # a snapshot from before the flush: processing goes on
    engine.process({"k": [1], "t": [t0 + 1]})

    cols = {
        "card": np.array([1]),
        "ts": np.array([t0]),
        "amount": np.array([5.0]),
        "country": np.array([276]),
    }
    rules = RuleSet(default_rules(), cooldown="1h")
    rules.process(cols)
    rules.flush()
    with pytest.raises(FlushedError):
        rules.process(cols)

    detector = FraudDetector(model=None)
    txn = {
        "txn_id": np.array([1]), "card_id": np.array([1]), "customer_id": np.array([1]),
        "terminal_id": np.array([1]), "amount": np.array([5.0]), "currency": np.array([0]),
        "country": np.array([276]), "merchant": np.array([0]), "event_time": np.array([t0]),
    }  # fmt: skip
    detector.process(txn)
    detector.flush()
    with pytest.raises(FlushedError):
        detector.process({**txn, "txn_id": np.array([2])})
