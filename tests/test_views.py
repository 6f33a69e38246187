"""Views out without a broker: the Fanout composition under the processor contract, the view
records' layout, combining partial rows, the [view] settings, and the category field."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Message

from fraudstream.config import Config, DetectorSection, KafkaSection, ViewSection
from fraudstream.errors import ConfigError, SnapshotError
from fraudstream.fanout import Fanout
from fraudstream.fraud.detector import FraudDetector
from fraudstream.generator import card_transactions
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.schema import CATEGORIES, decode_batch, encode_transactions, merchant_category
from fraudstream.kafka.task import ALERTS, VIEWS, PartitionTask
from fraudstream.processor import ProcessorOutput
from fraudstream.views import combine, latest, make_view_engine, view_processor, view_records

HOUR = 3_600_000


def view_config(**view: Any) -> Config:
    kafka = KafkaSection.for_topic("127.0.0.1:1", "in")
    kafka.view_topic = "in-view"
    settings = {"key": "category", "allowed_lateness": "1h", **view}
    return Config(kafka=kafka, view=ViewSection(**settings)).validate()


def columns(n: int, seed: int) -> dict[str, np.ndarray[Any, Any]]:
    """Decoded transactions over about 3 hours, with their categories."""
    data = card_transactions(n, cards=300, rate_per_s=n / 10_000, seed=seed)
    batch = decode_batch(encode_transactions(data))
    assert len(batch) == n
    cols = batch.columns
    cols["arrival_ms"] = cols["event_time"].astype(np.float64)
    return cols


def cut(cols: dict[str, np.ndarray[Any, Any]], a: int, b: int) -> dict[str, np.ndarray[Any, Any]]:
    return {k: v[a:b] for k, v in cols.items()}


def fanout() -> Fanout:
    return Fanout(FraudDetector(), view_processor(view_config()), rows_from=1)


def alert_rows(out: ProcessorOutput) -> list[dict[str, Any]]:
    """The alerts without their detection latency (a wall-clock figure)."""
    return [{k: v for k, v in json.loads(a.to_json()).items() if k != "latency_ms"} for a in out.alerts]


def same(a: ProcessorOutput, b: ProcessorOutput) -> None:
    assert alert_rows(a) == alert_rows(b)
    assert a.suppressed == b.suppressed
    if a.scores is None or b.scores is None:
        assert a.scores is None and b.scores is None
    else:
        assert a.scores.keys() == b.scores.keys()
        for k in a.scores:
            np.testing.assert_array_equal(a.scores[k], b.scores[k])
    rows_a = [] if a.rows is None else list(a.rows.rows())
    rows_b = [] if b.rows is None else list(b.rows.rows())
    assert rows_a == rows_b
    np.testing.assert_array_equal(a.late_rows, b.late_rows)


def test_fanout_gives_each_processors_outputs_as_if_it_ran_alone() -> None:
    cols = columns(4_000, seed=1)
    detector, view = FraudDetector(), view_processor(view_config())
    both = fanout().process(cols)
    alone, rows = detector.process(cols), view.process(cols)
    same(
        both,
        ProcessorOutput(
            alerts=alone.alerts, scores=alone.scores, rows=rows.rows, suppressed=alone.suppressed
        ),
    )
    assert len(both.alerts) > 0
    assert both.rows is not None and len(both.rows) > 0
    assert both.scores is not None and len(both.scores["row"]) == 4_000


def test_fanout_restored_from_a_snapshot_and_changes_continues_identically() -> None:
    cols = columns(6_000, seed=2)
    whole = fanout()
    outs = [whole.process(cut(cols, a, a + 1_500)) for a in range(0, 6_000, 1_500)]
    replay = fanout()
    first = replay.process(cut(cols, 0, 1_500))
    snapshot = replay.snapshot()
    replay.changes()
    replay.process(cut(cols, 1_500, 3_000))
    changes = replay.changes()
    restored = fanout()
    restored.restore(snapshot)
    restored.apply_changes(changes)
    same(first, outs[0])
    for a, expected in zip((3_000, 4_500), outs[2:], strict=True):
        same(restored.process(cut(cols, a, a + 1_500)), expected)
    same(restored.flush(), whole.flush())
    corrupt = bytearray(whole.snapshot())
    corrupt[len(corrupt) // 2] ^= 0x10
    with pytest.raises(SnapshotError):
        fanout().restore(bytes(corrupt))


def test_a_row_one_child_took_is_not_late_and_refused_rows_merge() -> None:
    class Refuses:
        """Takes nothing: every row too late, row 1 refused."""

        def __init__(self, late: list[int]) -> None:
            self.late = np.asarray(late, np.int64)

        def process(self, columns: Any) -> ProcessorOutput:
            return ProcessorOutput(late_rows=self.late, dead_rows=np.array([1]), dead_reasons=["bad"])

        def advance(self, wall_clock_ms: int) -> ProcessorOutput:
            return ProcessorOutput()

        flush = snapshot = changes = lambda self: b""  # type: ignore[assignment,return-value]
        restore = apply_changes = lambda self, data: None  # type: ignore[assignment]

    out = Fanout(Refuses([0, 1, 2, 3]), Refuses([2, 3, 4])).process({})  # type: ignore[arg-type]
    assert out.late_rows.tolist() == [2, 3]
    assert out.dead_rows.tolist() == [1] and out.dead_reasons == ["bad"]
    with pytest.raises(ValueError, match="rows_from"):
        Fanout(FraudDetector(), rows_from=1)


def test_view_records_are_keyed_by_key_window_and_partition_and_the_latest_row_wins() -> None:
    engine = make_view_engine(view_config())
    t0 = 1_700_002_800_000  # an hour boundary
    first = engine.process(
        {
            "category": np.array([5411, 5411, 5812]),
            "event_time": np.array([t0, t0 + 10, t0 + HOUR + 6_000]),
            "amount": np.array([1.5, 2.5, 4.0]),
        }
    )
    late = engine.process(
        {"category": np.array([5411]), "event_time": np.array([t0 + 20]), "amount": np.array([3.0])}
    )
    records = view_records(first, 3) + view_records(late, 3)
    keys = [k for k, _ in records]
    assert keys == [f"5411:{t0}:3".encode(), f"5411:{t0}:3".encode()]
    rows = [json.loads(v) for _, v in records]
    assert [r["kind"] for r in rows] == ["final", "update"]
    assert rows[0] == {"key": 5411, "window_start": t0, "window_end": t0 + HOUR, "kind": "final",
                       "partition": 3, "n": 2, "total": 4.0}  # fmt: skip
    assert latest(records)[keys[0]]["n"] == 3  # compaction keeps the correction


def test_partial_rows_of_input_partitions_add_up() -> None:
    part = {"key": 1, "window_start": 0, "window_end": 10, "kind": "final", "partition": 0}
    parts = [
        {**part, "n": 2, "total": 3.0, "low": 1.0},
        {**part, "kind": "update", "partition": 1, "n": 5, "total": 1.5, "low": 0.5},
        {**part, "key": 2, "partition": 1, "n": 1, "total": 9.0, "low": 9.0},
    ]
    out = combine(parts, {"n": "count", "total": "sum(amount)", "low": "min(amount)"})
    assert out[0] == {"key": 1, "window_start": 0, "window_end": 10, "kind": "update", "partitions": 2,
                      "n": 7, "total": 4.5, "low": 0.5}  # fmt: skip
    assert out[1]["n"] == 1 and out[1]["partitions"] == 1
    with pytest.raises(ValueError, match="cannot be combined"):
        combine(parts, {"avg": "mean(amount)"})


@pytest.mark.parametrize(
    ("view", "kafka_view_topic", "message"),
    [
        ({"key": "category"}, "", "kafka.view_topic is empty"),
        ({"key": "colour"}, "v", "view.key must be one of"),
        ({"key": "category", "aggregations": {"n": "median(amount)"}}, "v", "median"),
        ({"key": "category", "aggregations": {"n": "sum"}}, "v", "needs a column"),
        ({"key": "category", "aggregations": {"n": "sum(colour)"}}, "v", "not a decoded column"),
        ({"key": "category", "aggregations": {"kind": "count"}}, "v", "field of every view record"),
        ({"key": "category", "aggregations": {}}, "v", "at least one"),
        ({"key": "category", "size": "an hour"}, "v", "view.size"),
    ],
)
def test_bad_view_settings_are_configuration_errors(
    view: dict[str, Any], kafka_view_topic: str, message: str
) -> None:
    kafka = KafkaSection.for_topic("127.0.0.1:1", "in")
    kafka.view_topic = kafka_view_topic
    with pytest.raises(ConfigError, match=message):
        Config(kafka=kafka, view=ViewSection(**view)).validate()


def test_the_category_is_a_property_of_the_terminal_and_optional_in_the_schema() -> None:
    terminals = np.arange(10_000)
    categories = merchant_category(terminals)
    assert set(categories.tolist()) == set(CATEGORIES)
    np.testing.assert_array_equal(merchant_category(terminals), categories)
    doc = json.loads(encode_transactions(card_transactions(1, seed=0))[0])
    without = json.dumps({k: v for k, v in doc.items() if k != "category"}).encode()
    out_of_range = json.dumps({**doc, "category": 10_000}).encode()
    batch = decode_batch([encode_transactions(card_transactions(1, seed=0))[0], without, out_of_range])
    assert batch.columns["category"].tolist() == [doc["category"], -1]
    assert batch.error_reason == ["field 'category' must be in [0, 9999], got 10000"]


def test_early_rows_share_their_windows_key_and_the_final_row_wins() -> None:
    engine = make_view_engine(view_config(early=True))
    t0 = 1_700_002_800_000
    out = engine.process(
        {
            "category": np.array([5411, 5411, 5411]),
            "event_time": np.array([t0, t0 + 10, t0 + HOUR + 6_000]),
            "amount": np.array([1.0, 2.0, 4.0]),
        }
    )
    records = view_records(out, 0)
    window = [json.loads(v) for k, v in records if k == f"5411:{t0}:0".encode()]
    assert [r["kind"] for r in window] == ["early", "early", "final"]
    assert [r["n"] for r in window] == [1, 2, 2]
    assert latest(records)[f"5411:{t0}:0".encode()]["kind"] == "final"


def test_any_window_engine_publishes_its_rows_the_velocity_rule_without_a_view_section() -> None:
    kafka = KafkaSection.for_topic("127.0.0.1:1", "in")
    kafka.view_topic = "in-view"
    config = Config(kafka=kafka, detector=DetectorSection(kind="velocity")).validate()
    data = card_transactions(2_000, cards=50, rate_per_s=2.0, seed=4)
    msgs = [
        Message(topic="in", partition=0, offset=i, key=b"k", value=v, timestamp=(1, 1_800_000_000_000))
        for i, v in enumerate(encode_transactions(data))
    ]
    task = PartitionTask(0, processor_factory(config)(), config)
    out = task.process(msgs)
    rows = [json.loads(v) for _, v in out.records[VIEWS]]
    assert len(rows) > 0 and {"n", "countries", "total"} <= set(rows[0])
    assert all(r["window_end"] - r["window_start"] == 300_000 for r in rows)  # the [rule]'s 5 min HOP
    config.kafka.view_topic = ""
    quiet = PartitionTask(0, processor_factory(config)(), config).process(msgs)
    assert VIEWS not in quiet.records and len(quiet.records[ALERTS]) == len(out.records[ALERTS])
