"""``[tables.NAME]`` and ``detector.profiles_table`` in the configuration: read, refused with
the key named, written back by ``to_toml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import Config, load_config, to_toml
from fraudstream.errors import ConfigError

COLUMNS = 'columns = ["home_country", "account_opened", "avg_amount"]'
GOOD = """
[detector]
profiles_table = "profiles"

[tables.profiles]
topic = "profiles"
placement = "copartitioned"
columns = ["home_country", "account_opened", "avg_amount"]
version_time = "updated"
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, env={})


def test_tables_are_read_and_written_back(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    t = config.tables["profiles"]
    assert (t.topic, t.placement, t.key, t.version_time) == (
        "profiles",
        "copartitioned",
        "card_id",
        "updated",
    )
    assert load(tmp_path, to_toml(config)) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('placement = "copartitioned"', 'placement = "local"'), "tables.profiles.placement must be one of"),
        (('topic = "profiles"', 'topic = ""'), "tables.profiles.topic must not be empty"),
        ((COLUMNS, "columns = []"), "tables.profiles.columns"),
        ((COLUMNS, 'columns = "a"'), "must be a list"),
        ((COLUMNS, 'columns = ["home_country"]'), r"lacks \['account_opened', 'avg_amount'\]"),
        (('profiles_table = "profiles"', 'profiles_table = "other"'), "names no \\[tables.NAME\\] section"),
        (('version_time = "updated"', "colour = 1"), "unknown key tables.profiles.colour"),
    ],
)  # fmt: skip
def test_bad_table_settings_are_refused_naming_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, GOOD.replace(*change))


def test_tables_must_be_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tables"):
        load(tmp_path, "tables = 3\n")
    with pytest.raises(ConfigError, match=r"tables.p must be a section"):
        load(tmp_path, "[tables]\np = 3\n")


def test_the_example_loads_and_produce_profiles_writes_its_table_topic() -> None:
    from fraudstream.cli import _profiles_topic

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "profiles.toml", env={})
    table = config.tables[config.detector.profiles_table]
    assert _profiles_topic(config, "") == table.topic  # `produce --profiles` without a topic
    assert _profiles_topic(config, "other") == "other" and _profiles_topic(config, None) is None
