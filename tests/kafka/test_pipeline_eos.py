"""The exactly-once Kafka pipeline against the real broker: end to end, crashes (kill -9),
rebalances and dead letters. The reference is the in-process engine on the same input."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from eos_helpers import (
    committed_alerts,
    kill_once_restored,
    last_json_line,
    make_config,
    produce,
    read_all,
    reference_alerts,
    run_instance,
    stream_with_bursts,
    write_toml,
)

from fraudstream.config import Config, DecodeSection
from fraudstream.kafka.changelog import read_changelog
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.pipeline import FencedError, KafkaPipeline
from fraudstream.kafka.task import (
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    PartitionTask,
    TaskOutput,
    read_dead_letter,
)
from fraudstream.kafka.topics import group_member_config, transactional_id
from fraudstream.kafka.transactions import CommitAborted, TransactionalProducer

pytestmark = pytest.mark.kafka
PARTITIONS = 3


@pytest.fixture
def eos_topic(kafka_topic_factory: Callable[..., str]) -> str:
    return kafka_topic_factory(PARTITIONS)


def assert_exact(config: Config) -> list[tuple[int, ...]]:
    expected = reference_alerts(config, PARTITIONS)
    got = committed_alerts(config, PARTITIONS)
    dupes = [a for a, c in Counter(got).items() if c > 1]
    assert not dupes, f"{len(dupes)} duplicated alerts, e.g. {dupes[:3]}"
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, (
        f"missing {missing[:3]} ({len(missing)}), extra {extra[:3]} ({len(extra)})"
    )
    assert len(expected) > 0, "the stream must produce alerts, or the test proves nothing"
    return got


@pytest.mark.parametrize(
    ("threads", "overlap"),
    [(1, True), (2, True), (1, False)],
    ids=["one_thread", "process_threads_2", "commits_on_the_loop"],
)
def test_end_to_end_alerts_equal_the_in_process_engine(
    kafka_bootstrap: str, eos_topic: str, threads: int, overlap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce(kafka_bootstrap, eos_topic, stream_with_bursts(20_000, seed=1))
    config = make_config(kafka_bootstrap, eos_topic, process_threads=threads, overlap_commits=overlap)
    pipeline = KafkaPipeline(config)
    workers: Counter[str] = Counter()  # which threads processed batches
    during_commit = 0  # batches processed while a commit ran on the commit thread
    process_batch = PartitionTask.process_batch

    def spied(task: PartitionTask, batch: ConsumedBatch) -> TaskOutput:
        nonlocal during_commit
        workers[threading.current_thread().name.partition("_")[0]] += 1
        during_commit += pipeline._committing is not None and not pipeline._committing.future.done()
        return process_batch(task, batch)

    monkeypatch.setattr(PartitionTask, "process_batch", spied)
    stats = pipeline.run(idle_exit_s=2.0, max_seconds=120)
    if threads > 1:  # the partitions of a consume call were processed side by side
        assert workers["fraudstream-process"] > 0 and set(workers) <= {"fraudstream-process", "MainThread"}
    else:
        assert set(workers) == {"MainThread"}
    if overlap and threads == 1:  # the loop went on while commits ran (and waited for them)
        assert during_commit > 0
    elif not overlap:
        assert during_commit == 0
    assert stats.consumed == 20_000 + 20 * 6
    assert stats.consumed == stats.processed + stats.dead_lettered
    assert stats.dead_lettered == 0
    got = assert_exact(config)
    burst_cards = {a[0] for a in got if a[0] >= 900_000}
    assert len(burst_cards) == 20, "every injected burst was caught"


def test_a_commit_that_aborts_on_the_commit_thread_drops_what_was_processed_meanwhile(
    kafka_bootstrap: str, eos_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlapped commits: the loop processes the next records while a commit runs; when that
    commit aborts, those records are dropped with the rest (every task rewinds to the last
    commit and re-reads them): the committed alerts are still exactly the reference's."""
    produce(kafka_bootstrap, eos_topic, stream_with_bursts(20_000, seed=2))
    config = make_config(kafka_bootstrap, eos_topic, commit_interval_ms=50, consume_batch=500)
    pipeline = KafkaPipeline(config)
    commit_with = TransactionalProducer.commit_with
    commits = 0
    processed_meanwhile = 0

    def aborting(self: TransactionalProducer, offsets: Any, group: Any) -> None:
        nonlocal commits
        commits += 1
        if commits in (3, 8):  # with changelog records, offsets and outputs in the transaction
            time.sleep(0.3)  # the loop processes records meanwhile
            raise CommitAborted("injected: the broker refused the commit")
        commit_with(self, offsets, group)

    process_batch = PartitionTask.process_batch

    def spied(task: PartitionTask, batch: ConsumedBatch) -> TaskOutput:
        nonlocal processed_meanwhile
        processed_meanwhile += pipeline._committing is not None and not pipeline._committing.future.done()
        return process_batch(task, batch)

    monkeypatch.setattr(TransactionalProducer, "commit_with", aborting)
    monkeypatch.setattr(PartitionTask, "process_batch", spied)
    stats = pipeline.run(idle_exit_s=2.0, max_seconds=120)
    assert stats.aborts == 2 and processed_meanwhile > 0
    assert stats.consumed == stats.processed + stats.dead_lettered == 20_000 + 20 * 6  # (not counted twice)
    assert_exact(config)


def test_restore_reads_a_snapshot_and_the_changes_after_it_not_the_history(
    kafka_bootstrap: str, eos_topic: str
) -> None:
    produce(kafka_bootstrap, eos_topic, stream_with_bursts(20_000, seed=5))
    config = make_config(
        kafka_bootstrap, eos_topic, consume_batch=100, commit_max_records=300, changelog_snapshot_min_bytes=1
    )
    stats = KafkaPipeline(config).run(idle_exit_s=2.0, max_seconds=120)
    assert stats.commits > 50
    restored = read_changelog(
        {"bootstrap.servers": kafka_bootstrap}, config.kafka.changelog_topic, "check", list(range(PARTITIONS))
    )
    records = sum(r.records_read for r in restored.values())
    assert 0 < records < stats.commits, f"{records} changelog records read for {stats.commits} commits"
    # and what was read rebuilds the state the pipeline had: it continues with the same alerts
    assert all(r.snapshot is not None for r in restored.values())
    assert_exact(config)


def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    kafka_bootstrap: str, eos_topic: str, tmp_path: Path
) -> None:
    """Input keeps arriving while instances are killed with SIGKILL at random moments after
    they took their partitions over (mid-batch, mid-commit, mid-restore of the next one)."""
    records = stream_with_bursts(30_000, seed=2)
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, eos_topic, records, 1_500.0))
    feeder.start()  # about 20 s of input
    config = make_config(kafka_bootstrap, eos_topic, consume_batch=200, commit_interval_ms=50)
    path = write_toml(config, tmp_path / "eos.toml")
    rng = random.Random(7)
    log = tmp_path / "instance.log"
    kills = processing_kills = 0
    while kills < 10 or feeder.is_alive():
        processing_kills += kill_once_restored(path, log, rng)
        kills += 1
    feeder.join()
    final = run_instance(path, log, "--idle-exit", "3")
    assert final.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert processing_kills >= 8, f"only {processing_kills} of {kills} kills hit an owner of partitions"
    assert_exact(config)
    # aborted transactions are there, but invisible to read_committed
    raw = read_all(kafka_bootstrap, config.kafka.alerts_topic, PARTITIONS, committed=False)
    assert len(raw) >= len(committed_alerts(config, PARTITIONS))


def test_a_second_instance_joins_and_leaves_and_state_moves_with_partitions(
    kafka_bootstrap: str, eos_topic: str, tmp_path: Path
) -> None:
    records = stream_with_bursts(30_000, seed=3)
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, eos_topic, records, 4_000.0))
    feeder.start()  # input keeps arriving for about 7 s while instances come and go
    base = make_config(kafka_bootstrap, eos_topic, consume_batch=100, commit_interval_ms=50)
    log1, log2 = tmp_path / "a.log", tmp_path / "b.log"
    first = run_instance(write_toml(base, tmp_path / "a.toml"), log1, "--idle-exit", "4")
    time.sleep(2.0)
    second_cfg = replace(base, kafka=replace(base.kafka, instance_id="1"))
    # 6 s: a cooperative join takes two rebalances (the first member revokes, then the second
    # is assigned), each waiting for a heartbeat, before the second member restores and consumes
    second = run_instance(write_toml(second_cfg, tmp_path / "b.toml"), log2, "--max-seconds", "6")
    assert second.wait(timeout=120) == 0, log2.read_text()[-3000:]
    feeder.join()
    assert first.wait(timeout=180) == 0, log1.read_text()[-3000:]
    stats1, stats2 = last_json_line(log1), last_json_line(log2)
    assert stats2["consumed"] > 0, "the second instance took partitions over"
    assert stats1["restores"] >= 2, "the first instance restored state after the rebalances"
    assert stats1["consumed"] + stats2["consumed"] >= 30_000 + 120
    assert_exact(base)


HOSTILE: list[tuple[bytes, str]] = [
    (b"{not json", "malformed JSON"),
    (b'{"txn_id": 1', "malformed JSON"),
    ('{"txn_id": 1, "card_id": 2, "amount": "caf\xc3'.encode("latin-1"), "malformed JSON"),
    (b'{"txn_id": 1, "card_id": 2}', "missing field"),
    (
        b'{"txn_id": "x", "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 1.0, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
        "invalid type",
    ),
    (
        b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": NaN, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
        "malformed JSON",
    ),
    (
        b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 1e999, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
        "malformed JSON",
    ),
    (
        b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": -3, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
        "amount",
    ),
    (
        b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 3, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 5}',
        "event_time",
    ),
    (
        b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 3, "currency": "EUR",'
        b' "country": "DE", "merchant": "m", "event_time": 32503680000000}',
        "event_time",
    ),
    (b"", "malformed JSON"),
    (b'{"pad": "' + b"x" * 200_000 + b'"}', "exceeds the limit"),
]


def test_hostile_records_go_to_the_dead_letter_topic_and_the_pipeline_continues(
    kafka_bootstrap: str, eos_topic: str
) -> None:
    good = stream_with_bursts(5_000, seed=4, bursts=5)
    records = list(good)
    for i, (value, _) in enumerate(HOSTILE):
        records.insert(100 + i * 400, (2, value))  # card 2: all in one partition
    produce(kafka_bootstrap, eos_topic, records)
    config = make_config(kafka_bootstrap, eos_topic)
    config.decode = DecodeSection(max_record_bytes=100_000)
    stats = KafkaPipeline(config).run(idle_exit_s=2.0, max_seconds=120)
    assert stats.consumed == len(records)
    assert stats.dead_lettered == len(HOSTILE)
    assert stats.processed == len(good)
    dlq = [read_dead_letter(m) for m in read_all(kafka_bootstrap, config.kafka.dead_letter_topic, PARTITIONS)]
    assert len(dlq) == len(HOSTILE)
    by_offset = sorted(dlq, key=lambda d: int(d.header(H_OFFSET) or -1))
    for entry, (value, expected) in zip(by_offset, HOSTILE, strict=True):
        assert expected in (entry.header(H_REASON) or ""), (entry.header(H_REASON), expected)
        assert entry.header(H_TOPIC) == eos_topic and int(entry.header(H_PARTITION) or -1) >= 0
        assert entry.value == value, "the dead letter holds the record's bytes"
    assert_exact(config)


def test_sigterm_stops_cleanly_within_a_bounded_time(
    kafka_bootstrap: str, eos_topic: str, tmp_path: Path
) -> None:
    records = stream_with_bursts(30_000, seed=6)
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, eos_topic, records, 3_000.0))
    feeder.start()
    config = make_config(kafka_bootstrap, eos_topic, consume_batch=100)
    log = tmp_path / "instance.log"
    proc = run_instance(write_toml(config, tmp_path / "c.toml"), log, "--idle-exit", "60")
    time.sleep(4.0)
    proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    assert time.monotonic() - began < 15, "stopped within a bounded time"
    feeder.join()
    stats = last_json_line(log)
    assert stats["consumed"] > 0 and stats["consumed"] == stats["processed"] + stats["dead_lettered"]
    alerts = committed_alerts(config, PARTITIONS)
    assert len(alerts) == len(set(alerts)), "nothing committed twice"


class _Running:
    """A pipeline run on a thread of the test, its outcome kept."""

    def __init__(self, pipeline: KafkaPipeline) -> None:
        self.pipeline = pipeline
        self.outcome: list[BaseException | None] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run(idle_exit_s=6.0, max_seconds=90)
            self.outcome.append(None)
        except BaseException as exc:
            self.outcome.append(exc)

    def wait_consumed(self, n: int) -> None:
        deadline = time.monotonic() + 60
        while self.pipeline.stats.consumed < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # its last commit (every 100 ms) is done; it now waits for input


def _first_half_processed(bootstrap: str, topic: str) -> tuple[Config, list[tuple[int, bytes]], _Running]:
    """A stream whose first half a running pipeline has processed and committed."""
    config = make_config(bootstrap, topic)
    records = stream_with_bursts(4_000, seed=9)
    half = len(records) // 2
    produce(bootstrap, topic, records[:half])
    running = _Running(KafkaPipeline(config))
    running.wait_consumed(half)
    return config, records, running


def _fence(config: Config, bootstrap: str) -> None:
    """What a takeover's fencing does (:mod:`fraudstream.kafka.fencing`): a producer with the
    instance's transactional id initialises, which aborts its open transaction and refuses
    every later call of its producer."""
    fencer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id(config)})
    fencer.init_transactions(30)


def test_an_instance_fenced_while_alive_goes_on_with_a_new_producer_and_loses_and_duplicates_nothing(
    kafka_bootstrap: str, eos_topic: str
) -> None:
    """A takeover fences an instance it judged gone (stalled past its session), but the
    instance is alive: as Kafka Streams with a migrated task, it takes a new producer, puts
    every partition back to its last commit and goes on, instead of stopping. The records after
    the fencing are processed once: the committed alerts are exactly the reference's."""
    config, records, running = _first_half_processed(kafka_bootstrap, eos_topic)
    _fence(config, kafka_bootstrap)
    produce(kafka_bootstrap, eos_topic, records[len(records) // 2 :])
    running.thread.join(120)
    assert running.outcome == [None], running.outcome
    stats = running.pipeline.stats
    assert stats.renewed_after_fencing == 1
    assert stats.consumed == stats.processed + stats.dead_lettered == len(records)
    assert_exact(config)


def test_an_instance_fenced_by_a_newer_member_with_its_id_stops_and_commits_nothing_more(
    kafka_bootstrap: str, eos_topic: str
) -> None:
    """A newer incarnation (or another instance started with the same ``instance_id``) joins
    the group and takes the transactional id: the older one stops with FencedError (not a raw
    client error, even while closing), and none of its fenced transaction's output is visible."""
    config, records, running = _first_half_processed(kafka_bootstrap, eos_topic)
    newer = Consumer(group_member_config(config))  # (its client.id: the transactional id)
    newer.subscribe([config.kafka.input_topic])
    deadline = time.monotonic() + 60
    while not newer.assignment() and time.monotonic() < deadline:  # (it consumes nothing: no commits)
        newer.poll(0.1)
    assert newer.assignment(), "the newer member must join the group"
    running.wait_consumed(len(records) // 2)
    committed_before = committed_alerts(config, PARTITIONS)
    assert committed_before, "the first half must alert"
    _fence(config, kafka_bootstrap)
    produce(kafka_bootstrap, eos_topic, records[len(records) // 2 :])
    deadline = time.monotonic() + 90
    while running.thread.is_alive() and time.monotonic() < deadline:
        newer.poll(0.1)  # (stays a member)
    assert not running.thread.is_alive()
    newer.close()
    assert len(running.outcome) == 1 and isinstance(running.outcome[0], FencedError), running.outcome
    assert running.pipeline.stats.renewed_after_fencing == 0
    assert committed_alerts(config, PARTITIONS) == committed_before
    # the fenced run processed records of the second half, whose alerts exist: not committed
    assert len(reference_alerts(config, PARTITIONS)) > len(committed_before)
