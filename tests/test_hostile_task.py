"""Hostile input through the pure partition task (issue 15), no broker: dead letters are faithful
and always fit, a future-dated record changes no other record's fate, duplicates are dropped by
default, and the counts reconcile from independent counters.

The same task runs inside ``fraudstream run``; ``tests/kafka/test_hostile.py`` sends these
records (and more) through the real broker.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fakes import FakeMessage as Msg

from fraudstream.config import Config, DecodeSection, DetectorSection, KafkaSection
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.schema import encode_transactions
from fraudstream.kafka.task import (
    DLQ_RECORD_OVERHEAD,
    FUTURE_REASON,
    H_KEY_SIZE,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TIMESTAMP,
    H_TIMESTAMP_TYPE,
    H_TOPIC,
    H_TRUNCATED,
    H_VALUE_SIZE,
    TOMBSTONE_REASON,
    DeadLetter,
    PartitionTask,
    TaskOutput,
    dead_letter,
)

T0 = 1_700_000_000_000
NOW = 1_800_000_000_000.0
"""The wall clock the tasks see (later than every message)."""


def traffic(n: int, seed: int) -> list[Msg]:
    """Transactions of 30 cards at home, and card 7 spreading over 6 countries (alerts)."""
    rng = np.random.default_rng(seed)
    cols = {
        "card": rng.integers(0, 30, n),
        "ts": T0 + np.arange(n) * 2_000 - rng.integers(0, 4_000, n),
        "amount": np.round(rng.gamma(2.0, 20.0, n), 2),
    }
    cols["country"] = cols["card"] % 3
    burst = np.arange(n) % 9 == 4
    cols["card"][burst] = 7
    cols["country"][burst] = np.arange(int(burst.sum())) % 6
    values = encode_transactions(cols)
    return [Msg(v, i, _timestamp=T0 + i * 2_000 + 500) for i, v in enumerate(values)]


def config(kind: str = "velocity", **decode: Any) -> Config:
    return Config(
        kafka=KafkaSection.for_topic("127.0.0.1:1", "in"),
        decode=DecodeSection(**decode),
        detector=DetectorSection(kind=kind, cooldown="1h"),
    ).validate()


def run(cfg: Config, msgs: list[Msg], dlq_max_bytes: int | None = None) -> TaskOutput:
    extra = {} if dlq_max_bytes is None else {"dlq_max_bytes": dlq_max_bytes}
    task = PartitionTask(0, processor_factory(cfg)(), cfg, clock=lambda: NOW, **extra)
    return task.process(msgs)


def record_size(d: DeadLetter) -> int:
    return len(d.key or b"") + len(d.value or b"") + sum(len(k) + len(v) for k, v in d.headers)


def renumbered(msgs: list[Msg]) -> list[Msg]:
    for i, m in enumerate(msgs):
        m._offset = i
    return msgs


# -- dead letters: faithful, and always within the topic's limit --------------------------------


def test_a_dead_letter_is_the_original_key_and_value_with_the_reason_and_origin_in_headers() -> None:
    raw = b'{"merchant": "caf\xc3", \xff\xfe not json'  # not UTF-8, not JSON
    key = bytes(range(256))
    out = run(config(), [Msg(raw, 41, _key=key, _timestamp=T0 + 7)])
    (d,) = out.dead_letters
    assert d.key == key and d.value == raw, "bytes unchanged, nothing replaced"
    assert "malformed JSON" in (d.header(H_REASON) or "")
    assert (d.header(H_TOPIC), d.header(H_PARTITION), d.header(H_OFFSET)) == ("in", "0", "41")
    assert (d.header(H_TIMESTAMP), d.header(H_TIMESTAMP_TYPE)) == (str(T0 + 7), "create")
    assert not d.truncated and d.header(H_KEY_SIZE) is None


def test_a_tombstone_stays_a_tombstone_and_a_null_key_stays_null() -> None:
    out = run(config(), [Msg(None, 0, _key=None), Msg(b"", 1, _key=b"")])
    tomb, empty = out.dead_letters
    assert (tomb.key, tomb.value, tomb.header(H_REASON)) == (None, None, TOMBSTONE_REASON)
    assert (empty.key, empty.value) == (b"", b"")
    assert "malformed JSON" in (empty.header(H_REASON) or "")


@pytest.mark.parametrize(
    ("key_bytes", "value_bytes"),
    [(1_047_000, 20), (20, 3_000_000), (1_047_000, 3_000_000), (600_000, 600_000), (0, 2_000_000)],
    ids=["oversized-key", "oversized-value", "both", "each-half", "no-key"],
)
def test_a_record_too_large_for_the_dead_letter_topic_becomes_a_flagged_truncated_copy(
    key_bytes: int, value_bytes: int
) -> None:
    """The defect: a 1,047,000-byte key fits the input topic, but its dead-letter copy (key plus
    reason) did not fit the dead-letter topic; every transaction aborted, for good."""
    limit = 1_000_000
    key = None if key_bytes == 0 else b"K" * key_bytes
    value = b"not json " + b"v" * (value_bytes - 9)
    out = run(config(max_record_bytes=10 << 20), [Msg(value, 3, _key=key)], limit)
    (d,) = out.dead_letters
    assert out.dead_lettered == 1 and out.truncated == 1
    assert record_size(d) <= limit - DLQ_RECORD_OVERHEAD, record_size(d)
    assert d.truncated and d.header(H_TRUNCATED) == "true"
    assert d.header(H_KEY_SIZE) == str(key_bytes if key is not None else -1)
    assert d.header(H_VALUE_SIZE) == str(value_bytes)
    assert (d.key is None) == (key is None)
    assert key is None or key.startswith(d.key or b"")
    assert value.startswith(d.value or b"")
    # the room is used: what is dropped is only what could not fit
    assert record_size(d) > limit - DLQ_RECORD_OVERHEAD - 300
    assert d.header(H_REASON)


@pytest.mark.parametrize("limit", [600, 2_000, 50_000, 1_048_588, 8 << 20])
def test_every_dead_letter_fits_whatever_the_limit(limit: int) -> None:
    msgs = [
        Msg(b"x" * n, i, _key=b"k" * m)
        for i, (n, m) in enumerate(
            [(0, 0), (10, 5_000_000), (5_000_000, 10), (limit, limit), (limit // 2, limit // 2)]
        )
    ]
    for d in run(config(max_record_bytes=100 << 20), msgs, limit).dead_letters:
        assert record_size(d) <= max(limit - DLQ_RECORD_OVERHEAD, sum(len(k) + len(v) for k, v in d.headers))


def test_a_reason_is_short_whatever_the_record() -> None:
    bad = json.dumps({"txn_id": "9" * 200_000, "card_id": 1}).encode()
    d = dead_letter(Msg(bad, 0), "x" * 100_000)
    assert len(d.header(H_REASON) or "") <= 520
    (d,) = run(config(), [Msg(bad, 0)]).dead_letters
    assert len(d.header(H_REASON) or "") < 600 and d.value == bad


# -- time cannot be poisoned --------------------------------------------------------------------


def fates(out: TaskOutput, msgs: list[Msg]) -> dict[str, Any]:
    """Every output by the transaction it concerns (not by offset: the future record shifts them)."""
    txn_of = {m.offset(): json.loads(m.value() or b"{}").get("txn_id") for m in msgs if m.value()}
    alerts = sorted((a.card_id, a.rule, a.trigger_txn_id, a.event_time) for a in out.alerts)
    scores = sorted((json.loads(v)["txn_id"], json.loads(v)["decision"]) for _, v in out.records["scores"])
    dead = sorted(
        (str(txn_of.get(int(d.header(H_OFFSET) or -1))), d.header(H_REASON) or "") for d in out.dead_letters
    )
    return {"alerts": alerts, "scores": scores, "dead": dead}


@pytest.mark.parametrize("kind", ["velocity", "detector"])
@pytest.mark.parametrize("ahead", ["10 minutes", "2099-12-31"])
def test_one_future_record_among_normal_traffic_changes_no_other_records_fate(kind: str, ahead: str) -> None:
    """The defect: one valid record dated 2099-12-31 (or just 10 minutes ahead) moved its
    partition's watermark, and every later record of the partition was dead-lettered as late."""
    normal = traffic(600, seed=11)
    baseline = fates(run(config(kind), normal), normal)
    assert baseline["alerts"], "the burst must alert, or the comparison proves nothing"
    at = 200
    t = normal[at]._timestamp
    event = t + 600_000 if ahead == "10 minutes" else 4_102_358_400_000
    future = json.loads(normal[at].value() or b"")
    future.update(txn_id=10**9, card_id=7, event_time=event)
    poisoned = renumbered([*normal[:at], Msg(json.dumps(future).encode(), 0, _timestamp=t), *normal[at:]])
    out = run(config(kind), poisoned)
    got = fates(out, poisoned)
    (mine,) = [d for d in got["dead"] if d[0] == str(10**9)]
    assert mine[1].startswith(FUTURE_REASON) and "message timestamp" in mine[1], mine
    got["dead"].remove(mine)
    assert got == baseline, "the future record changed another record's fate"
    assert out.future == 1 and out.consumed == out.processed + out.dead_lettered

    # without the check the same input blinds the partition: the test sees the defect
    blind = fates(run(config(kind, max_future_ms=0), poisoned), poisoned)
    assert blind != baseline


def test_without_a_message_timestamp_the_wall_clock_at_arrival_judges() -> None:
    good = json.loads(traffic(1, seed=1)[0].value() or b"")
    msgs = [
        Msg(
            json.dumps({**good, "txn_id": 1, "event_time": int(NOW) + 200_000}).encode(),
            0,
            _ts_type=0,
            _timestamp=-1,
        ),
        Msg(
            json.dumps({**good, "txn_id": 2, "event_time": int(NOW) + 400_000}).encode(),
            1,
            _ts_type=0,
            _timestamp=-1,
        ),
        # a message timestamp itself in the future (a hostile CreateTime) is not trusted either
        Msg(
            json.dumps({**good, "txn_id": 3, "event_time": int(NOW) + 10**9}).encode(),
            2,
            _timestamp=int(NOW) + 10**9,
        ),
    ]
    out = run(config(), msgs)
    reasons = {int(d.header(H_OFFSET) or -1): d.header(H_REASON) or "" for d in out.dead_letters}
    assert sorted(reasons) == [1, 2]
    assert all("wall clock at arrival" in r for r in reasons.values()), reasons
    assert out.processed == 1


# -- safe defaults and honest counts ------------------------------------------------------------


def test_duplicates_are_dropped_with_the_default_configuration() -> None:
    """The defect: dedup was off by default, and 60 repeated transaction ids inflated alerts."""
    assert (Config().decode.dedup_horizon, Config().decode.dedup_max_keys) == ("2m", 1_000_000)
    normal = traffic(400, seed=12)
    repeats = [Msg(m.value(), 0, _timestamp=m._timestamp + 1_000) for m in normal[100:160]]
    msgs = renumbered([*normal[:160], *repeats, *normal[160:]])
    cfg = Config(kafka=KafkaSection.for_topic("127.0.0.1:1", "in"), detector=DetectorSection(kind="velocity"))
    out = run(cfg, msgs)
    once = run(cfg, renumbered(traffic(400, seed=12)))
    assert out.duplicates == 60 and out.dead_lettered == 60
    assert sorted(a.trigger_txn_id for a in out.alerts) == sorted(a.trigger_txn_id for a in once.alerts)
    assert all("duplicate txn_id" in (d.header(H_REASON) or "") for d in out.dead_letters)


def test_consumed_equals_processed_plus_dead_lettered_from_independent_counters() -> None:
    """``consumed`` is the messages given, ``processed`` the scored records (one per processed
    transaction), ``dead_lettered`` the dead letters; the offsets they name partition the input."""
    msgs = traffic(500, seed=13)
    for i in range(0, 500, 23):
        msgs[i]._value = b"{broken" if i % 2 else None
    msgs += [Msg(msgs[1].value(), 500, _timestamp=msgs[1]._timestamp)]  # a duplicate
    out = run(config("detector"), msgs)
    scored = {json.loads(v)["offset"] for _, v in out.records["scores"]}
    dead = {int(d.header(H_OFFSET) or -1) for d in out.dead_letters}
    assert out.consumed == len(msgs)
    assert out.processed == len(out.records["scores"]) == len(scored)
    assert out.dead_lettered == len(out.dead_letters) == len(dead)
    assert scored.isdisjoint(dead) and scored | dead == set(range(len(msgs)))
    assert out.consumed == out.processed + out.dead_lettered
