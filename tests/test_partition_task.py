"""The pure partition task (decode -> dedup -> processor -> output records), without Kafka:
counts reconcile, outputs do not depend on batching, state round-trips, any processor fits."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from fakes import FakeMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream import _core
from fraudstream.alerts import Alert
from fraudstream.config import Config, DecodeSection, DetectorSection, KafkaSection
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.schema import decode_batch, encode_transactions
from fraudstream.kafka.task import (
    ALERTS,
    DEAD_LETTERS,
    H_OFFSET,
    H_REASON,
    SCORES,
    PartitionTask,
    legacy_dedup_engine,
)
from fraudstream.pieces import join
from fraudstream.processor import ALERT, PASS, ProcessorOutput, pack, unpack


def messages(n: int, seed: int, bad_every: int = 0) -> list[FakeMessage]:
    """Transactions of 40 cards, a burst on card 7 across countries, and bad records."""
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000
    cols = {
        "card": rng.integers(0, 40, n),
        "ts": t0 + np.arange(n) * 2_000 - rng.integers(0, 4_000, n),
        "amount": np.round(rng.gamma(2.0, 20.0, n), 2),
    }
    cols["country"] = cols["card"] % 3  # ordinary cards stay at home
    burst = np.arange(n) % 9 == 4  # card 7 spreads over 6 countries
    cols["card"][burst] = 7
    cols["country"][burst] = np.arange(int(burst.sum())) % 6
    values = encode_transactions(cols)
    if bad_every:
        for i in range(0, n, bad_every):
            values[i] = b'{"txn_id": "broken'
    # each message stamped just after its event (event times are never ahead of it)
    return [FakeMessage(v, i, _timestamp=t0 + i * 2_000 + 500) for i, v in enumerate(values)]


def config(kind: str = "velocity", dedup: str = "0s", scores: bool = True) -> Config:
    kafka = KafkaSection.for_topic("127.0.0.1:1", "in")
    if not scores:
        kafka.scores_topic = ""
    return Config(
        kafka=kafka,
        decode=DecodeSection(dedup_horizon=dedup),
        detector=DetectorSection(kind=kind, cooldown="1h"),
    ).validate()


def run(cfg: Config, msgs: list[FakeMessage], cuts: list[int]) -> tuple[dict[str, list[Any]], bytes, Any]:
    task = PartitionTask(0, processor_factory(cfg)(), cfg, clock=lambda: 1_800_000_000_000.0)
    records: dict[str, list[Any]] = {ALERTS: [], SCORES: [], DEAD_LETTERS: []}
    counts = np.zeros(3, np.int64)
    bounds = [0, *sorted(set(cuts)), len(msgs)]
    for lo, hi in itertools.pairwise(bounds):
        out = task.process(msgs[lo:hi])
        for role, recs in out.records.items():
            records[role].extend(recs)
        records[DEAD_LETTERS].extend(out.dead_letters)
        counts += (out.consumed, out.processed, out.dead_lettered)
    return records, task.snapshot(), counts


def comparable(records: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Records without the wall-clock latency (the only field a rerun may change)."""
    out: dict[str, list[Any]] = {}
    for role, recs in records.items():
        if role == DEAD_LETTERS:
            out[role] = list(recs)
            continue
        rows = [json.loads(v) for _, v in recs]
        for r in rows:
            r.pop("latency_ms", None)
        out[role] = rows
    return out


def test_counts_reconcile_and_bad_records_are_dead_lettered_with_their_reason() -> None:
    msgs = messages(300, seed=1, bad_every=25)
    records, _, (consumed, processed, dead) = run(config(), msgs, [])
    assert consumed == 300 == processed + dead
    assert dead == 12
    reasons = [d.header(H_REASON) or "" for d in records[DEAD_LETTERS]]
    assert all("malformed JSON" in r for r in reasons), reasons[:3]
    assert [int(d.header(H_OFFSET) or -1) for d in records[DEAD_LETTERS]] == list(range(0, 300, 25))
    assert all(d.value == b'{"txn_id": "broken' and d.key == b"k" for d in records[DEAD_LETTERS])


def test_alerts_name_their_trigger_message_and_one_per_card_per_incident() -> None:
    msgs = messages(400, seed=2)
    records, _, _ = run(config(), msgs, [])
    alerts = [json.loads(v) for _, v in records[ALERTS]]
    assert alerts, "the burst on card 7 must alert"
    assert {a["card_id"] for a in alerts} == {7}
    times = sorted(a["event_time"] for a in alerts)
    assert all(b - a >= 3_600_000 for a, b in itertools.pairwise(times)), "cool-down of 1 h"
    for a in alerts:
        source = json.loads(msgs[a["offset"]].value() or b"")
        assert (source["txn_id"], source["card_id"]) == (a["trigger_txn_id"], a["card_id"])
        assert a["partition"] == 0 and a["reasons"]


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 400), max_size=8), kind=st.sampled_from(["velocity", "detector"]))
def test_outputs_and_state_do_not_depend_on_how_the_input_is_cut(cuts: list[int], kind: str) -> None:
    cfg = config(kind, dedup="10m")
    msgs = messages(400, seed=3, bad_every=37)
    msgs += msgs[100:110]  # repeated transaction ids: duplicates
    whole, whole_state, whole_counts = run(cfg, msgs, [])
    cut, cut_state, cut_counts = run(cfg, msgs, cuts)
    assert comparable(cut) == comparable(whole)
    assert cut_state == whole_state
    assert list(cut_counts) == list(whole_counts)
    assert whole_counts[2] == 11 + 10  # 11 broken records, 10 duplicates


@pytest.mark.parametrize("kind", ["velocity", "detector"])
def test_restored_from_snapshot_and_changes_a_task_continues_exactly(kind: str) -> None:
    cfg = config(kind, dedup="10m")
    msgs = messages(600, seed=4)
    _straight, straight_state, _ = run(cfg, msgs, [150, 300, 450])

    first = PartitionTask(0, processor_factory(cfg)(), cfg, clock=lambda: 1_800_000_000_000.0)
    first.process(msgs[:150])
    snapshot = first.snapshot()
    first.changes()
    first.process(msgs[150:300])
    changes = [first.changes()]
    first.process(msgs[300:450])
    changes.append(first.changes())

    second = PartitionTask(0, processor_factory(cfg)(), cfg, clock=lambda: 1_800_000_000_000.0)
    second.restore(snapshot, changes)
    assert second.snapshot() == first.snapshot()
    tail = second.process(msgs[450:])
    tail_first = first.process(msgs[450:])
    assert comparable(tail.records) == comparable(tail_first.records)
    assert second.snapshot() == straight_state


@pytest.mark.parametrize("kind", ["velocity", "detector"])
def test_a_snapshot_in_pieces_is_the_pack_of_the_parts_and_leaves_the_cores_bytes_uncopied(kind: str) -> None:
    cfg = config(kind, dedup="10m")
    task = PartitionTask(0, processor_factory(cfg)(), cfg, clock=lambda: 1_800_000_000_000.0)
    task.process(messages(400, seed=5))
    pieces = task.snapshot_pieces()
    dedup = task.dedup
    assert dedup is not None
    assert join(pieces) == pack([task.processor.snapshot(), dedup.snapshot()]) == task.snapshot()
    # the core's snapshots are the arrays it wrote, not copies into bytes objects
    assert any(isinstance(p, np.ndarray) and p.dtype == np.uint8 and len(p) > 1000 for p in pieces)


def _as_older_version_wrote_it(task: PartitionTask, engine: Any, state: bytes) -> bytes:
    """``state`` (a snapshot or change record of ``task``) with its duplicate part replaced by
    what the session window engine of earlier versions wrote over the same input."""
    parts = unpack(state, 2)
    return pack([parts[0], engine()])


@pytest.mark.parametrize("standby", [False, True])
def test_duplicate_state_written_by_the_older_engine_is_taken_over(standby: bool) -> None:
    """A changelog written before the duplicate filter (the session window engine's bytes)
    restores: the same ids are caught as duplicates afterwards, and the first change record
    after it is the filter's. With ``standby``, the older version's change records keep
    coming after the restore (a rolling upgrade) until the copy is used."""
    cfg = config("velocity", dedup="1h")  # (the input spans 20 minutes: every id stays held)
    msgs = messages(600, seed=6)
    repeats = msgs[100:140] + msgs[420:440]  # ids seen before each of the cuts below
    clock = lambda: 1_800_000_000_000.0  # noqa: E731
    old = PartitionTask(0, processor_factory(cfg)(), cfg, clock=clock)
    legacy = legacy_dedup_engine(
        cfg.decode.dedup_horizon, cfg.rule.out_of_orderness, cfg.decode.dedup_max_keys
    )
    legacy.track_changes(True)

    def feed(batch: list[FakeMessage]) -> None:
        old.process(batch)
        cols = decode_batch([m.value() for m in batch], cfg.decode).columns
        legacy.process({"txn_id": cols["txn_id"], "event_time": cols["event_time"]})

    feed(msgs[:300])
    snapshot = _as_older_version_wrote_it(old, legacy.snapshot, old.snapshot())
    legacy.changes()
    old.changes()
    feed(msgs[300:450])
    changes = [_as_older_version_wrote_it(old, legacy.changes, old.changes())]

    new = PartitionTask(0, processor_factory(cfg)(), cfg, clock=clock)
    if standby:
        new.restore(snapshot, [])
        new.apply_changes(changes[0])  # an older record after the restore
    else:
        new.restore(snapshot, changes)
    assert new.dedup is not None and old.dedup is not None
    assert len(new.dedup) == len(old.dedup) > 0  # the same ids held (counters aside)
    tail = msgs[450:] + repeats
    got, want = new.process(tail), old.process(tail)
    assert got.duplicates == want.duplicates == len(repeats)
    assert comparable(got.records) == comparable(want.records)
    assert _core.DuplicateFilter.holds_state(unpack(new.changes(), 2)[1])


def test_every_transaction_gets_one_score_record_and_scores_can_be_turned_off() -> None:
    msgs = messages(300, seed=5, bad_every=50)
    records, _, (_, processed, _) = run(config("detector"), msgs, [100])
    scores = [json.loads(v) for _, v in records[SCORES]]
    assert len(scores) == processed == 294
    assert len({s["offset"] for s in scores}) == 294
    assert {s["decision"] for s in scores} <= {"pass", "alert", "flagged"}
    alerted = {a["offset"] for a in (json.loads(v) for _, v in records[ALERTS])}
    assert {s["offset"] for s in scores if s["decision"] == "alert"} == alerted
    off, _, _ = run(config("detector", scores=False), msgs, [100])
    assert off[SCORES] == [] and len(off[ALERTS]) == len(records[ALERTS])


class EveryThirdIsSuspicious:
    """A user's processor that is not the detector: flags every transaction whose id is a
    multiple of 3; its state is a count, its changes the count's increase."""

    def __init__(self) -> None:
        self.seen = 0
        self._since = 0

    def process(self, columns: Mapping[str, Any]) -> ProcessorOutput:
        ids = np.asarray(columns["txn_id"])
        cards = np.asarray(columns["card_id"])
        times = np.asarray(columns["event_time"])
        self.seen += len(ids)
        self._since += len(ids)
        hits = np.flatnonzero(ids % 3 == 0)
        alerts = [
            Alert(int(cards[r]), "every_third", ("id divisible by 3",), int(times[r]), int(ids[r]), int(r))
            for r in hits.tolist()
        ]
        decision = np.where(ids % 3 == 0, ALERT, PASS).astype(np.int8)
        scores = {
            "row": np.arange(len(ids)),
            "txn_id": ids,
            "card_id": cards,
            "score": (ids % 3 == 0).astype(np.float64),
            "decision": decision,
        }
        return ProcessorOutput(alerts=alerts, scores=scores)

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        return ProcessorOutput()

    def flush(self) -> ProcessorOutput:
        return ProcessorOutput()

    def snapshot(self) -> bytes:
        return self.seen.to_bytes(8, "little")

    def changes(self) -> bytes:
        delta, self._since = self._since, 0
        return delta.to_bytes(8, "little")

    def restore(self, data: bytes) -> None:
        self.seen, self._since = int.from_bytes(data, "little"), 0

    def apply_changes(self, data: bytes) -> None:
        self.seen += int.from_bytes(data, "little")


def user_processor(_: Config) -> EveryThirdIsSuspicious:
    return EveryThirdIsSuspicious()


def test_a_user_processor_runs_through_the_task_by_module_and_function_name() -> None:
    cfg = config(kind="test_partition_task:user_processor")
    msgs = messages(90, seed=6)
    records, state, (_, processed, _) = run(cfg, msgs, [30])
    assert len(records[ALERTS]) == 30 and len(records[SCORES]) == 90
    assert unpack(state, 1) == [(90).to_bytes(8, "little")]
    assert pack([(90).to_bytes(8, "little")]) == state and processed == 90


def not_a_processor(_: Config) -> object:
    return object()


def test_a_factory_that_builds_no_processor_is_refused_at_start() -> None:
    from fraudstream.errors import ConfigError

    with pytest.raises(ConfigError, match="lacks"):
        processor_factory(config(kind="test_partition_task:not_a_processor"))
    with pytest.raises(ConfigError, match="cannot load"):
        processor_factory(config(kind="no_such_module_here:factory"))
