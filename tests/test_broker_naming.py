"""One way to name the broker: ``--bootstrap``, else FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS, else
the configuration file, for every command and for ``scripts/kafka``; and the pieces of the
Kafka commands that need no broker (durable-topic settings, produce's times, the status line,
the alerts table)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from fraudstream.config import BOOTSTRAP_ENV, Config, KafkaSection, load_config
from fraudstream.errors import ConfigError
from fraudstream.kafka.produce import ProduceOptions, parse_time
from fraudstream.kafka.reader import as_dict, table_header, table_row
from fraudstream.kafka.status import status_line
from fraudstream.kafka.topics import check_replication, output_topics

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fraudstream.toml"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "fraudstream.toml"
    path.write_text('[kafka]\nbootstrap_servers = "file:1"\n')
    return path


def test_the_option_wins_over_the_variable_which_wins_over_the_file(config_file: Path) -> None:
    env = {BOOTSTRAP_ENV: "env:2"}
    assert load_config(config_file, env={}).kafka.bootstrap_servers == "file:1"
    assert load_config(config_file, env=env).kafka.bootstrap_servers == "env:2"
    option = {"kafka": {"bootstrap_servers": "option:3"}}
    assert load_config(config_file, env=env, overrides=option).kafka.bootstrap_servers == "option:3"
    no_option = {"kafka": {"bootstrap_servers": None}}
    assert load_config(config_file, env=env, overrides=no_option).kafka.bootstrap_servers == "env:2"
    assert load_config(None, env={}).kafka.bootstrap_servers == "127.0.0.1:9092"


def test_the_example_config_names_no_broker_and_suits_a_single_local_one() -> None:
    config = load_config(EXAMPLE, env={BOOTSTRAP_ENV: "127.0.0.1:19092"})
    assert config.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert (config.kafka.replication_factor, config.kafka.min_insync_replicas) == (1, 1)


def test_scripts_kafka_variables_are_not_configuration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fraudstream.config"):
        load_config(None, env={"FRAUDSTREAM_KAFKA_PORT": "19092", "FRAUDSTREAM_KAFKA_DIR": "/tmp/x"})
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="fraudstream.config"):
        load_config(None, env={"FRAUDSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert BOOTSTRAP_ENV in caplog.text  # the older name is pointed at the one that counts


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "127.0.0.1:9092"),
        ({BOOTSTRAP_ENV: "127.0.0.1:19555"}, "127.0.0.1:19555"),
        ({BOOTSTRAP_ENV: "localhost:19556"}, "127.0.0.1:19556"),
        ({BOOTSTRAP_ENV: "broker.example:9093"}, "127.0.0.1:9092"),  # not a broker of this machine
        ({BOOTSTRAP_ENV: "127.0.0.1:19555", "FRAUDSTREAM_KAFKA_PORT": "19557"}, "127.0.0.1:19557"),
    ],
)
def test_scripts_kafka_takes_its_port_from_the_same_variable(env: dict[str, str], expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_KAFKA")}
    done = subprocess.run(
        [str(ROOT / "scripts" / "kafka"), "bootstrap"], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_durable_topics_follow_the_configuration() -> None:
    config = Config(
        kafka=KafkaSection(replication_factor=3, min_insync_replicas=2, output_retention_ms=86_400_000)
    )
    topics = {t.topic: t for t in output_topics(config, 6)}
    for name in ("alerts", "transactions-scored", "transactions-dlq"):
        assert topics[name].replication_factor == 3
        assert topics[name].config == {"min.insync.replicas": "2", "retention.ms": "86400000"}
    changelog = topics["fraudstream-changelog"]
    assert changelog.replication_factor == 3 and changelog.config["retention.ms"] == "-1"
    with pytest.raises(ConfigError, match=r"replication_factor = 3 but the cluster .* has 1 broker"):
        check_replication(config, 1)
    check_replication(config, 3)


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"replication_factor": 0}, "kafka.replication_factor must be >= 1"),
        ({"replication_factor": 1, "min_insync_replicas": 2}, "kafka.min_insync_replicas must be in"),
        ({"output_retention_ms": 0}, "kafka.output_retention_ms must be > 0 or -1"),
    ],
)
def test_durability_settings_are_validated(kafka: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(kafka=KafkaSection(**kafka)).validate()  # type: ignore[arg-type]


def test_produce_reads_start_times_in_three_spellings() -> None:
    assert parse_time("now", now_ms=1_800_000_000_000) == 1_800_000_000_000
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2024-01-01T00:00:00") == 1_704_067_200_000  # UTC unless it says
    assert parse_time("2024-01-01T01:00:00+01:00") == 1_704_067_200_000
    with pytest.raises(ConfigError, match="--start-time"):
        parse_time("yesterday")
    with pytest.raises(ConfigError, match="--rate"):
        ProduceOptions(rate=-1).validate()


def test_the_status_line_says_what_the_pipeline_is_doing() -> None:
    samples = {
        "fraudstream_consumer_lag{partition=0}": 1200.0,
        "fraudstream_consumer_lag{partition=1}": 2.0,
        "fraudstream_watermark_ms{partition=0}": 1_800_000_000_000.0,
        "fraudstream_watermark_ms{partition=1}": 1_800_000_003_000.0,
    }
    line = status_line(samples, 120_000, 7, 20_110.4, [3.0, 4.0, 40.0], 2, 1_800_000_005_000.0)
    assert line.startswith("fraudstream run: 120,000 consumed (20,110/s), 7 alerts, lag 1,202, commit p99 ")
    assert "watermark 08:00:00 UTC (5 s behind), 2 partitions" in line
    assert "no watermark yet" in status_line({}, 0, 0, 0.0, [], 0, 0.0)


def test_the_alerts_table_reads_every_output() -> None:
    alert = {"event_time": 1_800_000_000_000, "card_id": 42, "rule": "velocity_5m", "score": 0.91,
             "trigger_txn_id": 7, "latency_ms": 12.5, "reasons": ["4 countries in 5 min"]}  # fmt: skip
    row = table_row("alerts", alert)
    assert "2027-01-15 08:00:00.000" in row and "velocity_5m" in row and "4 countries in 5 min" in row
    assert table_header("scores").split() == ["txn", "card", "score", "decision", "input", "offset"]
    letter = as_dict(b"not json", [("fraudstream.reason", b"undecodable"), ("fraudstream.offset", b"12")])
    assert letter == {"reason": "undecodable", "offset": 12, "size": 8, "value": "not json"}
    assert "undecodable" in table_row("dead-letters", letter)
    assert as_dict(b'{"reason": "late"}', []) == {"reason": "late"}
    assert as_dict(None, []) is None
