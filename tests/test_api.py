"""The Python API of the window engine: inputs it accepts, errors it raises, introspection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fraudstream
from fraudstream import (
    ConfigError,
    EmitKind,
    InvalidBatchError,
    SnapshotError,
    StreamError,
    WindowedAggregation,
    _core,
    hopping,
    session,
    to_millis,
    tumbling,
)


def make(**kw: object) -> WindowedAggregation:
    args: dict[str, object] = {
        "key": "card",
        "time": "ts",
        "window": tumbling(10),
        "aggregations": {"n": "count", "total": ("sum", "amount"), "c": ("count_distinct", "country")},
    }
    args.update(kw)
    return WindowedAggregation(**args)  # type: ignore[arg-type]


def batch(n: int = 4, start: int = 0) -> dict[str, np.ndarray]:
    return {
        "card": np.arange(n, dtype=np.int64) % 2,
        "ts": np.arange(start, start + n, dtype=np.int64) * 3,
        "amount": np.linspace(1.0, 2.0, n),
        "country": np.arange(n, dtype=np.int64) % 3,
    }


def test_durations() -> None:
    assert to_millis("5m") == 300_000
    assert to_millis("1h30m") == 5_400_000
    assert to_millis("250ms") == 250
    assert to_millis(timedelta(seconds=2)) == 2_000
    assert to_millis("1.5s") == 1_500
    for bad in ("5 parsecs", "m5", "", True, 1.5):
        with pytest.raises(ConfigError):
            to_millis(bad)  # type: ignore[arg-type]
    assert hopping("5m", "1m").size == 300_000
    assert session("30s").gap == 30_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": hopping(10, 20)}, "slide"),
        ({"window": tumbling(0)}, "window size"),
        ({"aggregations": {"x": "median"}}, "unknown aggregation"),
        ({"aggregations": {"x": ("sum",)}}, "(function, column)"),
        ({"aggregations": {"x": "sum"}}, "needs a column"),
        ({"aggregations": {}}, "at least one"),
        ({"aggregations": {"key": "count"}}, "clashes"),
        ({"early_fire": "n >= "}, "position 5"),
        ({"early_fire": "max(amount) > 3"}, "not among"),
        ({"out_of_orderness": -1}, "out_of_orderness"),
        ({"partitions": 0}, "partitions"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"window": "5m"}, "window must be"),
    ],
)
def test_configuration_errors_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(**kwargs)


def test_config_error_is_a_value_error_and_a_stream_error() -> None:
    with pytest.raises(ValueError):
        make(window=tumbling(-5))
    assert issubclass(InvalidBatchError, StreamError)


@pytest.mark.parametrize(
    ("column", "bad", "row", "message"),
    [
        ("ts", np.array([0, 3, -1, 9]), 2, "outside the supported range"),
        ("ts", np.array([0.0, 3.0, np.nan, 9.0]), 2, "not a whole, finite number"),
        ("ts", np.array([0.0, 3.5, 6.0, 9.0]), 1, "not a whole, finite number"),
        ("card", np.array([0.0, np.inf, 1.0, 1.0]), 1, "not a whole, finite number"),
        ("amount", np.array([1.0, 2.0, 3.0, np.nan]), 3, "not finite"),
        ("amount", np.array([1.0, -np.inf, 3.0, 1.0]), 1, "not finite"),
        ("ts", np.array([0, 3, 253_402_300_800_000, 9]), 2, "outside the supported range"),
    ],
)
def test_bad_values_raise_naming_column_and_row_and_change_nothing(
    column: str, bad: np.ndarray, row: int, message: str
) -> None:
    agg = make()
    agg.process(batch(4))
    before = agg.snapshot()
    b = batch(4, start=10)
    b[column] = bad
    with pytest.raises(InvalidBatchError, match=message) as info:
        agg.process(b)
    assert info.value.column == column
    assert info.value.row == row
    assert f"row {row}" in str(info.value)
    assert agg.snapshot() == before, "a rejected batch must leave the state untouched"


def test_shape_and_type_errors() -> None:
    agg = make()
    b = batch(4)
    b["amount"] = b["amount"][:3]
    with pytest.raises(InvalidBatchError, match="'amount' has 3 rows, expected 4"):
        agg.process(b)
    b = batch(4)
    b["ts"] = np.array(["a", "b", "c", "d"])
    with pytest.raises(TypeError, match="'ts' must hold integers"):
        agg.process(b)
    b = batch(4)
    b["amount"] = b["amount"].reshape(2, 2)
    with pytest.raises(InvalidBatchError, match="1-dimensional"):
        agg.process(b)
    b = batch(4)
    del b["country"]
    with pytest.raises(InvalidBatchError, match="missing column 'country'"):
        agg.process(b)
    with pytest.raises(InvalidBatchError, match="nulls"):
        agg.process({**batch(2), "amount": pa.array([1.0, None])})


def test_other_dtypes_are_widened_without_changing_results() -> None:
    base, other = make(), make()
    b = batch(6)
    converted = {
        "card": b["card"].astype(np.int32),
        "ts": b["ts"].astype(np.float64),
        "amount": b["amount"].astype(np.float32).astype(np.float64),
        "country": b["country"].astype(np.uint8),
    }
    b["amount"] = converted["amount"]
    a1 = [base.process(b), base.flush()]
    a2 = [other.process(converted), other.flush()]
    for x, y in zip(a1, a2, strict=True):
        assert list(x.rows()) == list(y.rows())


def test_pyarrow_pandas_and_lists_are_accepted() -> None:
    import pandas as pd

    b = batch(5)
    expected = [r for o in (make().process(b),) for r in o.rows()]
    rb = pa.RecordBatch.from_pydict(b)
    agg = make()
    got = list(agg.process(rb).rows())
    assert got == expected
    assert list(make().process(pa.Table.from_batches([rb, rb]).slice(0, 5)).rows()) == expected
    assert list(make().process(pd.DataFrame(b)).rows()) == expected
    assert list(make().process({k: v.tolist() for k, v in b.items()}).rows()) == expected
    out = agg.flush()
    table = out.to_arrow()
    assert table.num_rows == len(out)
    assert table.schema.names == ["key", "window_start", "window_end", "kind", "n", "total", "c"]


def test_output_columns_and_dtypes() -> None:
    agg = make(
        aggregations={
            "n": "count",
            "d": ("count_distinct", "country"),
            "lo": ("min", "amount"),
            "hi": ("max", "amount"),
            "avg": ("mean", "amount"),
            "f": ("first", "amount"),
            "l": ("last", "amount"),
        }
    )
    out = agg.process(batch(4))  # times 0, 3, 6, 9: the watermark reaches 9 and [0, 10) fires
    assert len(out) == 2 and len(agg.flush()) == 0
    assert out["n"].dtype == np.int64 and out["d"].dtype == np.int64
    assert out["avg"].dtype == np.float64
    assert out["kind"].dtype == np.uint8
    rows = list(out.rows())
    assert sum(r["n"] for r in rows) == 4
    assert all(r["kind"] == EmitKind.FINAL for r in rows)


def test_push_and_introspection() -> None:
    agg = make(out_of_orderness=2)
    assert agg.watermark is None
    assert len(agg.push(1, 100, amount=5.0, country=3)) == 0
    assert agg.watermark == 98
    assert agg.state_size()["keys"] == 1
    assert agg.counters() == {"events": 1, "late": 0, "emitted": 0, "evicted": 0}
    with pytest.raises(ConfigError, match="country"):
        agg.push(1, 101, amount=1.0)
    out = agg.advance_to(200)
    assert [(r["key"], r["window_start"], r["n"]) for r in out.rows()] == [(1, 100, 1)]
    late = agg.push(1, 100, amount=1.0, country=1)
    assert late.late_rows.tolist() == [0]
    assert agg.counters()["late"] == 1
    assert agg.flush().columns["key"].size == 0
    assert agg.state_size() == {"keys": 0, "windows": 0, "timers": 0, "bytes": agg.state_size()["bytes"]}


def test_snapshot_rejects_garbage_and_other_configs() -> None:
    agg = make()
    agg.process(batch(4))
    snap = agg.snapshot()
    assert snap[:4] == b"FSTR"
    with pytest.raises(SnapshotError):
        make().restore(b"garbage")
    with pytest.raises(SnapshotError):
        make().restore(snap[:-3])
    with pytest.raises(SnapshotError, match="another configuration"):
        make(window=tumbling(20)).restore(snap)
    fresh = make()
    fresh.restore(snap)
    assert fresh.snapshot() == snap
    assert list(fresh.flush().rows()) == list(agg.flush().rows())


def _spin_while(run: Callable[[], object]) -> tuple[list[int], int, int]:
    """Runs `run` in a worker thread while another thread notes the time of each of its steps;
    returns (step times, start, end of `run`) in perf_counter_ns."""
    steps: list[int] = []
    span: list[int] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            steps.append(time.perf_counter_ns())

    def work() -> None:
        span.append(time.perf_counter_ns())
        run()
        span.append(time.perf_counter_ns())

    spinner = threading.Thread(target=spin)
    worker = threading.Thread(target=work)
    spinner.start()
    worker.start()
    worker.join()
    stop.set()
    spinner.join()
    return steps, span[0], span[1]


def _made_progress_inside(steps: list[int], start: int, end: int) -> bool:
    """Whether a step falls in the middle half of [start, end]. A call that kept the GIL lets
    the other thread run only at its edges (at most one switch interval after `start`, before
    the call is entered), never in the middle of a long call."""
    quarter = (end - start) // 4
    return any(start + quarter < t < end - quarter for t in steps)


def test_batches_release_the_gil() -> None:
    """Another Python thread keeps running while `process` works on a long batch."""
    n = 2_000_000
    rng = np.random.default_rng(3)
    data = {
        "card": rng.integers(0, 100_000, n),
        "ts": np.sort(rng.integers(0, 10_000_000, n)),
        "amount": rng.random(n),
        "country": rng.integers(0, 5, n),
    }
    agg = make(window=hopping(50_000, 10_000))
    results: list[int] = []
    steps, start, end = _spin_while(lambda: results.append(len(agg.process(data))))
    assert results and results[0] > 0
    assert _made_progress_inside(steps, start, end), f"{len(steps)} steps, none inside the call"


@pytest.mark.parametrize("call", ["getter", "process"])
def test_waiting_for_a_busy_engine_releases_the_gil(call: str) -> None:
    """A thread that calls a busy engine (a getter, or `process` itself) waits for it with the
    GIL released: while one thread's long batch holds the engine and a second thread keeps
    calling it, a third thread keeps running Python."""
    n = 2_000_000
    rng = np.random.default_rng(4)
    engine = _core.WindowEngine(
        window="hopping", size=50_000, slide=10_000, aggregations=[("n", "count", None)]
    )
    keys, times = rng.integers(0, 100_000, n), np.sort(rng.integers(0, 10_000_000, n))
    one = np.zeros(1, dtype=np.int64)
    busy = threading.Thread(target=lambda: engine.process(keys, times, []))
    calls = 0

    def call_while_busy() -> None:
        nonlocal calls
        while busy.is_alive():
            _ = engine.watermark if call == "getter" else engine.process(one, one, [])
            calls += 1

    busy.start()
    steps, start, end = _spin_while(call_while_busy)
    assert calls > 0
    assert _made_progress_inside(steps, start, end), f"{len(steps)} steps, none inside the batch"


def test_every_strided_column_raises_the_same_error() -> None:
    """Keys, times, partitions and values alike: a strided array is refused by the core with
    InvalidBatchError naming the column, never a RuntimeError for one and a ValueError for another."""
    engine = _core.WindowEngine(
        window="tumbling", size=10, aggregations=[("total", "sum", "amount")], partitions=2
    )
    good = {
        "keys": np.arange(4, dtype=np.int64),
        "times": np.arange(4, dtype=np.int64),
        "partitions": np.zeros(4, dtype=np.int64),
        "amount": np.ones(4),
    }
    names = {"keys": "key", "times": "time", "partitions": "partition", "amount": "amount"}
    for column, name in names.items():
        cols = dict(good)
        cols[column] = np.repeat(cols[column], 2)[::2]
        assert not cols[column].flags.c_contiguous
        with pytest.raises(InvalidBatchError, match="C-contiguous") as info:
            engine.process(cols["keys"], cols["times"], [cols["amount"]], partitions=cols["partitions"])
        assert info.value.column == name
    assert engine.counters()["events"] == 0


def test_repeated_calls_do_not_leak() -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    agg = make(window=hopping(50, 10))
    b = batch(64)

    def run(rounds: int) -> None:
        for i in range(rounds):
            b["ts"] = np.arange(64, dtype=np.int64) + i * 64
            agg.process(b)

    run(2_000)
    before = proc.memory_info().rss
    run(10_000)
    grown = proc.memory_info().rss - before
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 calls"
    assert agg.state_size()["keys"] <= 2


def test_version_and_bench(tmp_path: Path) -> None:
    assert fraudstream.__version__
    out = subprocess.run(
        [sys.executable, "-m", "fraudstream", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"fraudstream {fraudstream.__version__}"
    bench = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudstream",
            "bench",
            "--events",
            "50000",
            "--python-events",
            "20000",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    figures = json.loads(bench.stdout.strip().splitlines()[-1])
    assert figures["disagreements"] == 0, "fraudstream and the Python loop emit the same windows"
    assert figures["fraudstream_events_per_s"] > 0 and figures["ratio"] > 0


def test_trigger_rows_name_the_event_that_emitted_each_row() -> None:
    agg = make(window=hopping(10, 5), early_fire="c >= 2")
    b = {
        "card": np.array([1, 1, 2, 1]),
        "ts": np.array([1, 2, 3, 30]),
        "amount": np.ones(4),
        "country": np.array([5, 6, 5, 5]),
    }
    out = agg.process(b)
    early = out.select(out["kind"] == EmitKind.EARLY)
    assert early.trigger_rows.tolist() == [1, 1], "row 1 made card 1 see a second country"
    finals = out.select(out["kind"] == EmitKind.FINAL)
    assert set(finals.trigger_rows.tolist()) == {3}, "row 3 moved the watermark past those windows"
    assert agg.flush().trigger_rows.tolist() == [-1, -1], "flush, not an input row, emitted these"


def test_restore_keeps_recording_changes_for_the_changelog() -> None:
    """A changelog written after a restore must hold every change made after it."""
    agg = make()
    agg.track_changes()
    agg.process(batch(4))
    snap = agg.snapshot()
    agg.changes()
    restored = make()
    restored.track_changes()
    restored.restore(snap)
    restored.process(batch(4, start=20))
    rebuilt = make()
    rebuilt.restore(snap)
    rebuilt.apply_changes(restored.changes())
    assert rebuilt.snapshot() == restored.snapshot()
