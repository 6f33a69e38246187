"""The Python API's hot calls, each beside a baseline in the same group (see conftest.py)."""

from __future__ import annotations

import json
import queue
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from fraudstream import WindowedAggregation, hopping
from fraudstream._core import BoundedQueue
from fraudstream.generator import card_transactions, labelled_transactions
from fraudstream.kafka.schema import decode_batch, encode_transactions

EVENTS = 65_536
"""Events per round of the ``process`` group, whatever the batch size."""


@pytest.fixture(scope="module")
def stream() -> dict[str, np.ndarray[Any, Any]]:
    return card_transactions(EVENTS, cards=10_000, rate_per_s=10_000.0, disorder_ms=5_000, seed=1)


def velocity() -> WindowedAggregation:
    return WindowedAggregation(
        key="card",
        time="ts",
        window=hopping("5m", "1m"),
        aggregations={"n": "count", "total": ("sum", "amount"), "countries": ("count_distinct", "country")},
        out_of_orderness="5s",
    )


@pytest.mark.parametrize("batch", [64, 1_024, 16_384, 65_536])
def test_process(benchmark: Any, stream: dict[str, np.ndarray[Any, Any]], batch: int) -> None:
    """``WindowedAggregation.process`` over the same events cut into batches of ``batch``."""
    benchmark.group = "process (HOP 5m/1m, 3 aggs)"
    benchmark.extra_info["items"] = EVENTS
    cuts = [{k: v[lo : lo + batch] for k, v in stream.items()} for lo in range(0, EVENTS, batch)]

    def run(engine: WindowedAggregation) -> None:
        for cut in cuts:
            engine.process(cut)

    benchmark.pedantic(run, setup=lambda: ((velocity(),), {}), rounds=5)


def test_process_baseline_python_dicts(benchmark: Any, stream: dict[str, np.ndarray[Any, Any]]) -> None:
    """The same panes in plain Python: per card, per 1-minute pane, count, sum and countries."""
    benchmark.group = "process (HOP 5m/1m, 3 aggs)"
    benchmark.extra_info["items"] = EVENTS
    rows = list(zip(*(stream[k].tolist() for k in ("card", "ts", "amount", "country")), strict=True))

    def run() -> None:
        panes: dict[tuple[int, int], list[Any]] = defaultdict(lambda: [0, 0.0, set()])
        for card, ts, amount, country in rows:
            pane = panes[(card, ts // 60_000)]
            pane[0] += 1
            pane[1] += amount
            pane[2].add(country)

    benchmark.pedantic(run, rounds=5)


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    traffic = labelled_transactions(10_000, cards=1_000, seed=3)
    return encode_transactions(traffic.columns)


def test_decode(benchmark: Any, messages: list[bytes]) -> None:
    """``decode_batch``: JSON messages to columns in one Rust pass."""
    benchmark.group = "decode (10k JSON messages)"
    benchmark.extra_info["items"] = len(messages)
    benchmark(decode_batch, messages)


def test_decode_baseline_json_loads(benchmark: Any, messages: list[bytes]) -> None:
    benchmark.group = "decode (10k JSON messages)"
    benchmark.extra_info["items"] = len(messages)

    def run() -> None:
        rows = [json.loads(m) for m in messages]
        {k: np.array([r[k] for r in rows]) for k in ("txn_id", "card_id", "amount", "event_time")}

    benchmark(run)


@pytest.fixture(scope="module")
def features() -> tuple[Any, dict[str, np.ndarray[Any, Any]]]:
    from fraudstream.fraud.model import default_model

    model = default_model()
    rng = np.random.default_rng(5)
    cols = {name: rng.random(100_000) * 10 for name in model.feature_names}
    return model, cols


def test_score(benchmark: Any, features: tuple[Any, dict[str, np.ndarray[Any, Any]]]) -> None:
    """``Model.score``: the shipped model over 100k rows of features, in Rust."""
    model, cols = features
    benchmark.group = "score (default model, 100k rows)"
    benchmark.extra_info["items"] = 100_000
    benchmark(model.score, cols)


def test_score_baseline_numpy(benchmark: Any, features: tuple[Any, dict[str, np.ndarray[Any, Any]]]) -> None:
    """A logistic regression in numpy over the same (already transformed) matrix."""
    model, cols = features
    benchmark.group = "score (default model, 100k rows)"
    benchmark.extra_info["items"] = 100_000
    x = np.column_stack([cols[n] for n in model.feature_names])
    w = np.linspace(-1, 1, x.shape[1])

    def run() -> np.ndarray[Any, Any]:
        return 1 / (1 + np.exp(-((x - x.mean(0)) / x.std(0)) @ w))

    benchmark(run)


ITEMS = 100_000


def test_queue_batches(benchmark: Any) -> None:
    """``BoundedQueue``: put and get in batches of 1024 (one thread: the call overhead)."""
    benchmark.group = "queue (100k items)"
    benchmark.extra_info["items"] = ITEMS
    items = list(range(1_024))

    def run() -> None:
        q = BoundedQueue(8_192)
        for _ in range(ITEMS // 1_024):
            q.put_batch(items)
            q.get_batch(1_024)

    benchmark(run)


def test_queue_items(benchmark: Any) -> None:
    benchmark.group = "queue (100k items)"
    benchmark.extra_info["items"] = ITEMS

    def run() -> None:
        q = BoundedQueue(8_192)
        for i in range(ITEMS):
            q.put(i)
            q.get_batch(1)

    benchmark(run)


def test_queue_baseline_queue_queue(benchmark: Any) -> None:
    benchmark.group = "queue (100k items)"
    benchmark.extra_info["items"] = ITEMS

    def run() -> None:
        q: queue.Queue[int] = queue.Queue(8_192)
        for i in range(ITEMS):
            q.put(i)
            q.get()

    benchmark(run)
