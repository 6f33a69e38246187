"""Standby replicas (``kafka.standby_partitions``) through the real broker.

- A warm copy tailing the changelog while an instance writes it (changes, new snapshots and the
  truncations before them) ends, once taken, with the same state bytes and writer position as a
  full restore, having read only the tail at the take.
- Loading a snapshot into a copy (as long as a restore of that partition) does not hold up the
  instance's own partitions: its poll loop keeps committing meanwhile.
- Two instances keeping warm copies of each other's partitions: the owner of some partitions is
  killed with SIGKILL, the survivor takes them over from its copies, and the committed alerts
  equal the reference: none lost, none twice.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from eos_helpers import (
    WAIT_S,
    as_instance,
    committed_alerts,
    kill_running,
    last_json_line,
    make_config,
    produce,
    reference_alerts,
    run_instance,
    stream_with_bursts,
    wait_until_all_own,
    write_toml,
)

from fraudstream.errors import ConfigError
from fraudstream.kafka.changelog import read_changelog
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.standby import StandbyReplicas, standby_choice
from fraudstream.kafka.task import PartitionTask
from fraudstream.kafka.tasks import _restored_task
from fraudstream.kafka.topics import client_config

LOAD_WAIT_S = 30.0
"""How long a test's slow snapshot load waits for the loop beside it to commit."""


def test_standby_choice_takes_the_partitions_after_the_owned_ones_never_an_owned_one() -> None:
    assert standby_choice({2, 3}, 6, 2) == [4, 5]
    assert standby_choice({4, 5}, 6, 3) == [0, 1, 2]
    assert standby_choice(set(), 4, 9) == [0, 1, 2, 3]
    for owned in ({0}, {1, 4}, {0, 1, 2, 3, 4, 5}):
        chosen = standby_choice(owned, 6, 6)
        assert not set(chosen) & owned
        assert sorted(chosen) == sorted(set(range(6)) - owned)


def test_standby_choice_keeps_the_partition_after_each_owned_one_in_a_spread_assignment() -> None:
    # a large group's assignor spreads a member's partitions: with as many copies as it owns,
    # a member keeps every partition that follows one of its own, so each such partition has a
    # copy on the member before it (the rule from the highest owned one missed most of them)
    assert standby_choice({0, 4, 8, 12}, 16, 4) == [1, 5, 9, 13]
    rng = random.Random(3)
    for _ in range(200):
        partitions, members = rng.randint(2, 40), rng.randint(2, 8)
        owner = [rng.randrange(members) for _ in range(partitions)]
        for m in set(owner):
            owned = {p for p in range(partitions) if owner[p] == m}
            chosen = standby_choice(owned, partitions, len(owned))
            assert not set(chosen) & owned
            after_own = {(p + 1) % partitions for p in owned} - owned
            assert after_own <= set(chosen), (owner, m, chosen)


def test_a_negative_standby_count_is_a_config_error() -> None:
    config = make_config("localhost:9092", "t")
    with pytest.raises(ConfigError, match="standby_partitions"):
        replace(config, kafka=replace(config.kafka, standby_partitions=-1)).validate()


def test_a_taken_copy_equals_a_full_restore_and_reads_only_the_tail(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    partitions = 2
    topic = kafka_topic_factory(partitions)
    # small snapshots: the changelog gets new snapshots and is truncated before them while the
    # copy tails it, so the copy also jumps to the changelog's new start
    config = make_config(
        kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=50, changelog_snapshot_min_bytes=30_000
    )
    records = stream_with_bursts(12_000, seed=21)
    factory = processor_factory(config)

    def make_task(p: int) -> PartitionTask:
        return PartitionTask(p, factory(), config)

    writer = KafkaPipeline(config)
    error: list[BaseException] = []

    def run() -> None:
        try:
            writer.run(max_seconds=WAIT_S)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    standby = StandbyReplicas(replace(config, kafka=replace(config.kafka, standby_partitions=partitions)),
                              client_config(config), make_task)  # fmt: skip
    # two short tails after the main input, each committed before the next: whatever the main
    # input's last commit wrote, a snapshot or not, the changelog then ends with change records
    # (a tail of 20 records writes far fewer bytes than a snapshot, so at most one tail snapshots)
    main, tails = records[:-40], (records[-40:-20], records[-20:])
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, main, 3_000.0))
    try:
        deadline = time.monotonic() + WAIT_S

        def poll_until(done: Callable[[], bool]) -> None:
            while not done() and time.monotonic() < deadline:
                standby.poll(0.05)
                assert not error, repr(error)

        while not writer.tasks.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        standby.keep_warm(set())  # the writer's partitions, as a second instance would
        feeder.start()
        poll_until(lambda: not feeder.is_alive() and writer.stats.consumed >= len(main))
        feeder.join()
        expected = len(main)
        for tail in tails:
            produce(kafka_bootstrap, topic, tail)
            expected += len(tail)
            poll_until(lambda: writer.stats.consumed >= expected)  # noqa: B023 (called at once)
            commits = writer.stats.commits
            poll_until(lambda: writer.stats.commits > commits)  # noqa: B023 (called at once)
        assert writer.stats.consumed == len(records)
        writer.stop()
        thread.join(60)
        assert not error, repr(error)
        copies_before = {p: standby.copies[p].next_offset for p in range(partitions)}
        taken = standby.take(list(range(partitions)), 60.0)
    finally:
        writer.stop()
        thread.join(60)
        standby.close()
    assert sorted(taken) == list(range(partitions)), "every copy was taken"
    assert writer.stats.commits > 10
    full = read_changelog(client_config(config), config.kafka.changelog_topic, "full-restore", [0, 1])
    for p in range(partitions):
        task, plog = _restored_task(make_task(p), full[p])
        copy = taken[p]
        assert copy.task is not None and full[p].snapshot is not None
        assert copy.task.snapshot() == task.snapshot(), f"partition {p}: state differs from a full restore"
        assert (copy.log.seq, copy.log.has_snapshot, copy.log.snapshot_bytes, copy.log.changes_bytes) == (
            plog.seq,
            plog.has_snapshot,
            plog.snapshot_bytes,
            plog.changes_bytes,
        )
        assert full[p].changes, "the changelog must hold change records after its snapshot"
        assert copies_before[p] > 0, "the copy was tailing before the take"
        assert copy.records < full[p].records_read, f"partition {p}: the take read more than the tail"


def test_the_poll_loop_keeps_committing_while_a_copy_loads_a_snapshot(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(2)
    # small snapshots: the owners write new ones while the test runs, and the copies load them
    config = make_config(
        kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=50, standby_partitions=1,
        changelog_snapshot_min_bytes=30_000,
    )  # fmt: skip
    commits_during_load = 3
    armed = threading.Event()
    """Set once each instance owns its partition: loads from then on are slow (a rebalance that
    moves the copies waits for a load in progress, as it must; none comes once both own one)."""
    pipelines = [KafkaPipeline(as_instance(config, name)) for name in ("a", "b")]
    loads: list[tuple[str, bool]] = []
    """Per snapshot loaded into a copy: the instance, and whether its loop committed meanwhile."""

    def slow_loads(name: str, pipeline: KafkaPipeline) -> None:
        # a snapshot load that lasts until the instance's own loop has committed a few times (a
        # large state's load, made as long as it takes): a loop that waits for the load never
        # commits, and the load gives up after LOAD_WAIT_S
        standby = pipeline.tasks.standby
        assert standby is not None
        make_task = standby.make_task

        def make_slow_task(p: int) -> PartitionTask:
            task = make_task(p)
            restore = task.restore

            def slow_restore(snapshot: bytes, changes: list[bytes]) -> None:
                if not armed.is_set():
                    restore(snapshot, changes)
                    return
                target = pipeline.stats.commits + commits_during_load
                deadline = time.monotonic() + LOAD_WAIT_S
                while pipeline.stats.commits < target and time.monotonic() < deadline:
                    time.sleep(0.01)
                loads.append((name, pipeline.stats.commits >= target))
                restore(snapshot, changes)

            task.restore = slow_restore  # type: ignore[method-assign]
            return task

        standby.make_task = make_slow_task

    errors: list[BaseException] = []

    def run(pipeline: KafkaPipeline) -> None:
        try:
            pipeline.run(max_seconds=WAIT_S * 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in pipelines]
    for name, pipeline in zip(("a", "b"), pipelines, strict=True):
        slow_loads(name, pipeline)
    # input through the whole test (up to a minute, however slow the group's start on a loaded
    # machine): both instances have records to commit while their copies load
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, topic, stream_with_bursts(30_000, seed=23), 500.0), daemon=True
    )
    feeder.start()
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not all(p.tasks.tasks for p in pipelines) and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert all(p.tasks.tasks for p in pipelines), "each instance owns a partition"
        # and the group has settled: each loop commits a few times more (a rebalance still
        # completing moves the copies, which waits for a load in progress, as it must)
        settled = [p.stats.commits + 3 for p in pipelines]
        while any(p.stats.commits < n for p, n in zip(pipelines, settled, strict=True)) and not errors:
            assert time.monotonic() < deadline, "each loop commits once the group has settled"
            time.sleep(0.05)
        armed.set()
        deadline = time.monotonic() + WAIT_S * 2
        while {name for name, _ in loads} != {"a", "b"} and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        # the loads that ended while both loops ran: one still loading when they stop below sees
        # no more commits (a stopped loop commits nothing) and would count as waited for
        measured = list(loads)
    finally:
        for pipeline in pipelines:
            pipeline.stop()
        for thread in threads:
            thread.join(WAIT_S)
    assert not errors, repr(errors)
    assert {name for name, _ in measured} == {"a", "b"}, f"each instance loads into its copy: {loads}"
    assert all(committed for _, committed in measured), f"a loop waited for its copy's load: {measured}"


def test_kill9_of_the_owner_the_other_takes_over_from_its_standby_copies(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    partitions = 4
    topic = kafka_topic_factory(partitions)
    records = stream_with_bursts(20_000, seed=22)
    # no idle ticks: the input's event times are from 2023, so a wall-clock tick while the takeover
    # waits for the killed owner's open transaction would make later records late for the rule
    # windows, which the tick-free reference does not do (as in the chaos run's configuration)
    base = make_config(
        kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=50, standby_partitions=partitions,
        idle_timeout_ms=0,
    )  # fmt: skip
    paths = {
        name: write_toml(as_instance(base, name), tmp_path / f"{n}.toml") for n, name in enumerate(("a", "b"))
    }
    logs = {name: tmp_path / f"{name}.log" for name in paths}
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, records, 2_000.0))
    feeder.start()
    owner = run_instance(paths["a"], logs["a"])
    survivor = run_instance(paths["b"], logs["b"], "--idle-exit", "10")
    try:
        wait_until_all_own(logs.values())
        time.sleep(2.0)  # both process; the survivor's copies follow the owner's commits
        killed_at = len(logs["b"].read_text())
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        feeder.join()
        assert survivor.wait(WAIT_S * 2) == 0, logs["b"].read_text()[-3000:]
    finally:
        kill_running(owner, survivor)
    stats = last_json_line(logs["b"])
    # the survivor's takeover of the killed owner's partitions restored them from its copies (a
    # transaction that aborts afterwards rewinds owned partitions from the changelog: not the
    # takeover; librdkafka sometimes bumps the epoch after a long assignment callback)
    after_kill = logs["b"].read_text()[killed_at:].splitlines()
    restores = [ln for ln in after_kill if "restored partitions" in ln]
    assert any("from standby copies" in ln and "none from standby" not in ln for ln in restores), restores
    assert stats["standby_takeovers"] >= 1
    expected = reference_alerts(base, partitions)
    assert expected, "the stream must produce alerts, or the test proves nothing"
    assert Counter(committed_alerts(base, partitions)) == Counter(expected)
