"""Configuration files: what ``to_toml`` writes, ``load_config`` reads back equal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.config import Config, KafkaSection, load_config, to_toml

names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
)


@settings(max_examples=60, deadline=None)
@given(
    group=names,
    commit_ms=st.integers(1, 10**9),
    exactly_once=st.booleans(),
    client=st.dictionaries(st.text("abcdefghij.", min_size=1, max_size=12), names, max_size=4),
    max_amount=st.floats(1.0, 1e12, allow_nan=False),
    alert_when=st.sampled_from(["countries >= 3 and n >= 5", "total > 900.5", 'n >= 2 or countries >= "4"']),
)
def test_a_written_configuration_reads_back_equal(
    tmp_path_factory: pytest.TempPathFactory,
    group: str,
    commit_ms: int,
    exactly_once: bool,
    client: dict[str, str],
    max_amount: float,
    alert_when: str,
) -> None:
    base = Config()
    config = replace(
        base,
        kafka=replace(
            base.kafka, group_id=group, commit_interval_ms=commit_ms, exactly_once=exactly_once, client=client
        ),
        rule=replace(base.rule, alert_when=alert_when),
        decode=replace(base.decode, max_amount=max_amount),
    )
    path = tmp_path_factory.mktemp("toml") / "c.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    assert load_config(path, env={}) == config


def test_a_section_for_a_topic_names_its_outputs_after_it() -> None:
    k = KafkaSection.for_topic("127.0.0.1:1", "txns", consume_batch=7)
    assert (k.input_topic, k.alerts_topic, k.dead_letter_topic, k.changelog_topic, k.group_id) == (
        "txns",
        "txns-alerts",
        "txns-dlq",
        "txns-changelog",
        "txns-group",
    )
    assert (k.bootstrap_servers, k.consume_batch) == ("127.0.0.1:1", 7)
