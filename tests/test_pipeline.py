"""The in-process pipeline: end-to-end equality with the bare engine, backpressure, shutdown,
failure propagation and the idle ticker."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from fraudstream import WindowedAggregation, hopping, tumbling
from fraudstream.generator import card_transactions
from fraudstream.pipeline import (
    ArraySource,
    CollectSink,
    IdleWatermark,
    IteratorSource,
    Pipeline,
    StageError,
)


def make_agg(**kw: Any) -> WindowedAggregation:
    return WindowedAggregation(
        key="card",
        time="ts",
        window=hopping("5m", "1m"),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness="5s",
        **kw,
    )


def rows_of(outputs: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for o in outputs for r in o.rows()]


def test_pipeline_output_equals_the_bare_engine() -> None:
    data = card_transactions(50_000, cards=500, seed=5)
    bare = make_agg()
    expected = rows_of([bare.process(data), bare.flush()])
    sink = CollectSink()
    metrics = Pipeline(ArraySource(data, 4_096), make_agg(), sink, capacity=4).run()
    assert rows_of(sink.items) == expected, "same rows in the same order"
    assert metrics["events_in"] == 50_000
    assert metrics["processor"]["events"] == 50_000
    assert metrics["processor"]["state_keys"] == 0
    assert sink.closed


class SlowSink(CollectSink):
    def write(self, item: Any) -> None:
        time.sleep(0.01)
        super().write(item)


def test_a_slow_sink_pauses_the_source_and_loses_nothing() -> None:
    data = card_transactions(40_000, cards=200, seed=9)
    source = ArraySource(data, 500)
    sink = SlowSink()
    pipe = Pipeline(source, make_agg(), sink, capacity=6, high_water=4, low_water=1)
    metrics = pipe.run()
    assert source.pauses >= 1, "backpressure reached the source"
    assert metrics["input_queue"]["peak_len"] <= 6 and metrics["output_queue"]["peak_len"] <= 6
    assert metrics["input_queue"]["pressure_events"] >= 1
    bare = make_agg()
    assert rows_of(sink.items) == rows_of([bare.process(data), bare.flush()])


def test_stop_drains_what_was_read_and_flushes() -> None:
    def endless() -> Any:
        i = 0
        while True:
            yield {
                "card": np.array([i % 3]),
                "ts": np.array([i * 1_000]),
                "amount": np.array([1.0]),
                "country": np.array([0]),
            }
            i += 1

    sink = CollectSink()
    pipe = Pipeline(IteratorSource(endless()), make_agg(), sink).start()
    time.sleep(0.3)
    pipe.stop()
    assert pipe.join(10)
    m = pipe.metrics()
    assert m["events_in"] > 0
    assert m["processor"]["events"] == m["events_in"], "everything read was processed"
    assert m["processor"]["state_keys"] == 0, "the engine was flushed"
    assert sink.closed


class ExplodingSink(CollectSink):
    def write(self, item: Any) -> None:
        raise RuntimeError("disk full")


def test_a_failing_sink_stops_the_pipeline_and_reaches_the_caller() -> None:
    data = card_transactions(200_000, cards=1_000, seed=2)
    pipe = Pipeline(ArraySource(data, 1_000), make_agg(), ExplodingSink(), capacity=2)
    with pytest.raises(StageError, match="disk full") as info:
        pipe.run()
    assert info.value.stage == "sink"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_failing_source_reaches_the_caller() -> None:
    def broken() -> Any:
        yield {
            "card": np.array([1]),
            "ts": np.array([1]),
            "amount": np.array([1.0]),
            "country": np.array([1]),
        }
        raise ValueError("bad upstream")

    with pytest.raises(StageError, match="bad upstream") as info:
        Pipeline(IteratorSource(broken()), make_agg(), CollectSink()).run()
    assert info.value.stage == "source"


def test_bad_input_in_a_batch_fails_the_processor_stage_with_the_row() -> None:
    bad = {
        "card": np.array([1, 2]),
        "ts": np.array([1, 2]),
        "amount": np.array([1.0, np.nan]),
        "country": np.array([1, 1]),
    }
    with pytest.raises(StageError, match="row 1") as info:
        Pipeline(IteratorSource([bad]), make_agg(), CollectSink()).run()
    assert info.value.stage == "processor"


class Stalling(IteratorSource):
    """Delivers its batches, then nothing (without ending) until stopped."""

    def read(self, timeout: float) -> list[Any] | None:
        got = super().read(timeout)
        if got is None:
            time.sleep(timeout)
            return []
        return got


def test_idle_ticker_closes_the_last_windows_when_traffic_stops() -> None:
    agg = WindowedAggregation(
        key="card", time="ts", window=tumbling(1_000), aggregations={"n": "count"}, out_of_orderness=100
    )
    events = {"card": np.array([7, 7, 7]), "ts": np.array([100, 200, 1_500])}
    sink = CollectSink()
    pipe = Pipeline(
        Stalling([events]), agg, sink, tick_interval=0.02, idle=IdleWatermark(after="100ms", rule="elapsed")
    ).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(len(o) for o in sink.items) < 2:
        time.sleep(0.02)
    rows = sink.rows()
    pipe.stop()
    pipe.join(5)
    # [0, 1000) closed by the events themselves; [1000, 2000) only by idle advancement
    assert [(r["window_start"], r["n"]) for r in rows[:2]] == [(0, 2), (1_000, 1)]
