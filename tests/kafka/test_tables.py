"""Tables from Kafka through the real pipeline: a profiles topic joined to the transactions.

The detector runs with a hand-made model that reads only two profile features: a foreign
transaction (the card's home country is in its profile) on an account younger than 30 days
(the account's opening date is in its profile) scores above the threshold, anything else
below. So every alert in these tests exists only if the transaction was joined to its card's
profile, and a transaction processed before the table was loaded would score as a card
without profile (no alert).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer
from eos_helpers import (
    alert_identity,
    committed_alerts,
    kill_once_restored,
    make_config,
    read_all,
    run_instance,
    stream_with_bursts,
    write_toml,
)
from eos_helpers import produce as produce_records
from toy_models import foreign_young_model

from fraudstream import _core
from fraudstream.config import DetectorSection, TableSection
from fraudstream.errors import ConfigError
from fraudstream.fraud.profiles import DAY_MS, ProfileColumns, join_profiles
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.produce import ProduceOptions, encode_profiles, produce, send_record
from fraudstream.kafka.schema import encode_transactions
from fraudstream.kafka.task import ALERTS, PartitionTask

pytestmark = pytest.mark.kafka
PARTITIONS = 3
FR, DE = _core.pack_code("FR"), _core.pack_code("DE")
NOW = int(time.time() * 1000)
T0 = NOW - 3_600_000
PROFILE_ROWS = 40_000
"""Profiles in the table: enough that reading them takes several consume calls."""
YOUNG = 200
"""Cards 0 .. YOUNG-1 have accounts opened 5 days ago; the others 2,000 days ago."""


def foreign_young_model_file(path: Path) -> Path:
    path.write_text(json.dumps(foreign_young_model().to_dict()))
    return path


def profiles(cards: np.ndarray[Any, Any], home: int = FR) -> dict[str, np.ndarray[Any, Any]]:
    age = np.where(cards < YOUNG, 5, 2_000)
    return {
        "card_id": cards.astype(np.int64),
        "home_country": np.full(len(cards), home, np.int64),
        "account_opened": (T0 - age * DAY_MS).astype(np.int64),
        "avg_amount": np.full(len(cards), 30.0),
    }


def send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for key, value in records:
        send_record(producer, topic, key, value)
    assert producer.flush(30) == 0


def transactions(cards: list[int], country: int, first_id: int, t0: int = T0) -> list[tuple[bytes, bytes]]:
    n = len(cards)
    cols = {
        "txn_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "card_id": np.asarray(cards, np.int64),
        "amount": np.full(n, 25.0),
        "country": np.full(n, country, np.int64),
        "event_time": t0 + np.arange(n, dtype=np.int64) * 10,
    }
    return [(str(c).encode(), v) for c, v in zip(cards, encode_transactions(cols), strict=True)]


@pytest.fixture
def topics(kafka_topic_factory: Callable[..., str]) -> tuple[str, str]:
    tx = kafka_topic_factory(PARTITIONS)
    table = kafka_topic_factory(PARTITIONS, {"cleanup.policy": "compact"})
    return tx, table


def config_for(bootstrap: str, tx: str, table: str, tmp_path: Path, placement: str = "global") -> Any:
    config = make_config(bootstrap, tx, idle_timeout_ms=0)
    config.detector = DetectorSection(
        profiles_table="profiles", model_file=str(foreign_young_model_file(tmp_path / "m.json"))
    )
    config.tables = {
        "profiles": TableSection(
            topic=table, placement=placement, columns=["home_country", "account_opened", "avg_amount"]
        )
    }
    return config.validate()


def alerted_cards(bootstrap: str, config: Any, partitions: int = PARTITIONS) -> list[int]:
    alerts = read_all(bootstrap, config.kafka.alerts_topic, partitions)
    return sorted(json.loads(m.value())["card_id"] for m in alerts)


def counting(pipeline: KafkaPipeline) -> Callable[[], int]:
    """Keeps the processors the pipeline builds; returns a function summing their transactions
    scored without a profile (the tasks are dropped when the run ends)."""
    built: list[Any] = []
    factory = pipeline.tasks.processor_factory

    def build() -> Any:
        built.append(factory())
        return built[-1]

    pipeline.tasks.processor_factory = build
    return lambda: sum(p.counters()["profiles_missing"] for p in built)


@pytest.mark.parametrize("placement", ["global", "copartitioned"])
def test_transactions_wait_for_the_table_and_the_alerts_reflect_its_values(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, placement: str
) -> None:
    tx, table = topics
    # the table first (every card of the traffic and many more), then the transactions: the
    # very first transactions need their profile
    send(kafka_bootstrap, table, encode_profiles(profiles(np.arange(PROFILE_ROWS)), T0 - DAY_MS))
    young = list(range(0, YOUNG, 4))  # foreign purchases on young accounts: alerts
    old = list(range(YOUNG, YOUNG + 150))  # foreign purchases on old accounts: none
    home = list(range(1, YOUNG, 4))  # purchases at home on young accounts: none
    unknown = list(range(PROFILE_ROWS, PROFILE_ROWS + 30))  # no profile: defaults, no alert
    cards = young + old + home + unknown
    records = (
        transactions(young + old, DE, 0) + transactions(home, FR, 10_000) + transactions(unknown, DE, 20_000)
    )
    send(kafka_bootstrap, tx, records)
    config = config_for(kafka_bootstrap, tx, table, tmp_path, placement)
    pipeline = KafkaPipeline(config)
    missing_profiles = counting(pipeline)
    stats = pipeline.run(idle_exit_s=3, max_seconds=120)
    assert stats.consumed == stats.processed == len(cards)
    loaded = pipeline.tables.tables["profiles"]
    assert loaded.loaded == PROFILE_ROWS and loaded.rejected == 0
    assert alerted_cards(kafka_bootstrap, config) == young
    assert missing_profiles() == len(unknown)  # exactly the cards without a profile
    exported = pipeline.metrics.registry.get_sample_value
    assert exported("fraudstream_profiles_missing_total") == len(unknown)
    assert exported("fraudstream_profile_lookups_total") == len(cards)


def test_copartitioned_needs_as_many_partitions_as_the_input(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    tx = kafka_topic_factory(PARTITIONS)
    table = kafka_topic_factory(PARTITIONS - 1, {"cleanup.policy": "compact"})
    config = config_for(kafka_bootstrap, tx, table, tmp_path, "copartitioned")
    pipeline = KafkaPipeline(config)
    with pytest.raises(
        ConfigError,
        match=f"as many partitions as the input: .* has {PARTITIONS - 1}, .* has {PARTITIONS}",
    ):
        pipeline.run(idle_exit_s=1, max_seconds=30)


def test_a_missing_table_topic_is_a_configuration_error(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    tx, table = topics
    config = config_for(kafka_bootstrap, tx, table + "-absent", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        KafkaPipeline(config).run(idle_exit_s=1, max_seconds=30)


def test_a_restart_restores_the_table_from_its_topic_and_the_newest_version_wins(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    tx, table = topics
    cards = np.arange(0, YOUNG, 2)
    send(kafka_bootstrap, table, encode_profiles(profiles(cards), T0 - DAY_MS))
    config = config_for(kafka_bootstrap, tx, table, tmp_path)
    send(kafka_bootstrap, tx, transactions(cards[:20].tolist(), DE, 0))
    first = KafkaPipeline(config)
    first.run(idle_exit_s=2, max_seconds=60)
    assert alerted_cards(kafka_bootstrap, config) == cards[:20].tolist()
    # while no instance runs: cards 40..78 move to Germany (newer versions), and an older
    # version of card 40 arrives late (it must not win)
    moved = cards[20:40]
    send(kafka_bootstrap, table, encode_profiles(profiles(moved, DE), T0))
    send(kafka_bootstrap, table, encode_profiles(profiles(moved[:1], FR), T0 - 2 * DAY_MS))
    send(kafka_bootstrap, tx, transactions(cards[20:60].tolist(), DE, 1_000))
    second = KafkaPipeline(config)
    missing_profiles = counting(second)
    second.run(idle_exit_s=2, max_seconds=60)
    restored = second.tables.tables["profiles"]
    assert restored.loaded == len(cards) + len(moved) + 1  # read again from the topic
    assert restored.stale == 1
    # moved cards buy at home now; the others abroad
    assert alerted_cards(kafka_bootstrap, config) == [*cards[:20].tolist(), *cards[40:60].tolist()]
    assert missing_profiles() == 0


def test_table_updates_keep_flowing_while_transactions_are_processed(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    tx, table = topics
    send(kafka_bootstrap, table, encode_profiles(profiles(np.arange(10)), T0 - DAY_MS))
    config = config_for(kafka_bootstrap, tx, table, tmp_path)
    pipeline = KafkaPipeline(config)
    missing_profiles = counting(pipeline)
    runner = threading.Thread(target=pipeline.run, kwargs={"idle_exit_s": 6, "max_seconds": 90})
    runner.start()
    try:
        deadline = time.monotonic() + 60
        loaded = pipeline.tables.tables["profiles"]
        while loaded.loaded < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        # card 500 is new: its profile arrives after the start, then its transaction
        send(
            kafka_bootstrap,
            table,
            encode_profiles(profiles(np.array([5])) | {"card_id": np.array([500])}, T0),
        )
        while loaded.loaded < 11 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loaded.loaded == 11
        send(kafka_bootstrap, tx, transactions([500, 501], DE, 0))
    finally:
        runner.join(120)
    assert not runner.is_alive()
    assert alerted_cards(kafka_bootstrap, config) == [500]  # 501 has no profile
    assert missing_profiles() == 1


def test_produce_profiles_gives_every_card_of_its_traffic_a_copartitioned_profile(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    tx = kafka_topic_factory(PARTITIONS)
    table = f"{tx}-profiles"  # created by produce; deleted with the input topic's derived ones
    config = config_for(kafka_bootstrap, tx, table, tmp_path, "copartitioned")
    config.detector = DetectorSection(profiles_table="profiles")  # the shipped profiles model
    sent = produce(
        config,
        ProduceOptions(events=20_000, cards=2_000, partitions=PARTITIONS, profiles_topic=table),
        say=lambda _line: None,
    )
    pipeline = KafkaPipeline(config)
    missing_profiles = counting(pipeline)
    stats = pipeline.run(idle_exit_s=3, max_seconds=120)
    assert stats.consumed == stats.processed == sent["events"] == 20_000
    assert missing_profiles() == 0  # every card of the traffic has its profile
    # keyed alike: a card's profile lives in the partition number of its transactions
    where = {m.key(): m.partition() for m in read_all(kafka_bootstrap, table, PARTITIONS, committed=False)}
    cards = {m.key(): m.partition() for m in read_all(kafka_bootstrap, tx, PARTITIONS, committed=False)}
    assert cards and all(where[card] == p for card, p in cards.items())
    assert pipeline.tables.tables["profiles"].loaded == len(where)


def test_copartitioned_instances_hold_the_table_partitions_of_their_input_partitions(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    tx = kafka_topic_factory(4)
    table = kafka_topic_factory(4, {"cleanup.policy": "compact"})
    send(kafka_bootstrap, table, encode_profiles(profiles(np.arange(2_000)), T0 - DAY_MS))
    config = config_for(kafka_bootstrap, tx, table, tmp_path, "copartitioned")
    pipelines, counts, runners = [], [], []
    for instance in ("0", "1"):
        c = config_for(kafka_bootstrap, tx, table, tmp_path, "copartitioned")
        c.kafka.instance_id = instance
        pipeline = KafkaPipeline(c)
        counts.append(counting(pipeline))
        pipelines.append(pipeline)
        runners.append(threading.Thread(target=pipeline.run, kwargs={"idle_exit_s": 8, "max_seconds": 120}))
    for r in runners:
        r.start()
    try:
        deadline = time.monotonic() + 60
        held: list[set[int]] = []
        while time.monotonic() < deadline:  # both in the group, the partitions split between them
            held = [set(p.tasks.tasks) for p in pipelines]
            if all(held) and sum(len(h) for h in held) == 4:
                break
            time.sleep(0.1)
        assert all(held) and not held[0] & held[1] and held[0] | held[1] == {0, 1, 2, 3}
        # each instance holds the table partitions of its own input partitions, no others
        assert [p.tables.tables["profiles"].assigned for p in pipelines] == held
        young = list(range(0, YOUNG, 2))
        send(kafka_bootstrap, tx, transactions(young + list(range(YOUNG, 400)), DE, 0))
    finally:
        for r in runners:
            r.join(150)
    assert not any(r.is_alive() for r in runners)
    assert alerted_cards(kafka_bootstrap, config, 4) == young
    assert sum(count() for count in counts) == 0


def test_kill_9_with_a_table_loses_and_duplicates_nothing(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    """Instances killed with SIGKILL at random moments while input arrives: each restart reads
    the table again before processing, and the committed alerts equal the partition task's run
    in process with the whole table, every transaction scored exactly once."""
    tx, table = topics
    known = profiles(np.arange(2_000))  # the stream's cards; its burst cards have none
    send(kafka_bootstrap, table, encode_profiles(known, T0 - DAY_MS))
    records = stream_with_bursts(15_000, seed=3, bursts=10)
    feeder = threading.Thread(target=produce_records, args=(kafka_bootstrap, tx, records, 1_500.0))
    feeder.start()  # about 10 s of input
    config = config_for(kafka_bootstrap, tx, table, tmp_path)
    config.kafka.consume_batch, config.kafka.commit_interval_ms = 200, 50
    path = write_toml(config, tmp_path / "t.toml")
    rng = random.Random(5)
    log = tmp_path / "instance.log"
    kills = 0
    while kills < 5 or feeder.is_alive():
        kill_once_restored(path, log, rng, wait_s=30)  # restored: the table was loaded before
        kills += 1
    feeder.join()
    final = run_instance(path, log, "--idle-exit", "3")
    assert final.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert log.read_text().count("table profiles: caught up") >= kills + 1
    # the reference: the pipeline's own partition task over the committed input, whole table
    columns = ProfileColumns()
    lookup = {"profiles": lambda keys: join_profiles(keys, known, columns)}
    factory = processor_factory(config, lookup)
    by_partition: dict[int, list[Any]] = {}
    for m in read_all(kafka_bootstrap, tx, PARTITIONS):
        by_partition.setdefault(m.partition(), []).append(m)
    expected = sorted(
        alert_identity(json.loads(value))
        for p, batch in by_partition.items()
        for _, value in PartitionTask(p, factory(), config).process(batch).records[ALERTS]
    )
    got = committed_alerts(config, PARTITIONS)
    assert len(expected) > 100 and got == expected
    scored = [
        json.loads(m.value())["txn_id"]
        for m in read_all(kafka_bootstrap, config.kafka.scores_topic, PARTITIONS)
    ]
    assert len(scored) == len(set(scored)) == len(records)
