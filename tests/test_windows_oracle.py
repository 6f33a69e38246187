"""Property tests: the Rust window engine against the pure-Python oracle (``tests/oracle.py``).

Streams are small on purpose: few keys, times in a narrow range that drift forwards with
disorder and ties, so windows overlap, sessions merge, watermarks pass windows mid-stream and
late data shows up. Every call's output is compared with the oracle's: the rows as a multiset
(floats with ``math.isclose``), in the order the contract fixes (rows of one cause in increasing
window end), the trigger row of each row, the late rows, the watermark, idle partitions, the
counters, and empty state after ``flush()``. A separate test checks the contract's order of
keys that share a window end.

Engine-only properties: any batching gives bit-identical output, snapshot/restore
mid-stream is invisible, and an engine with ``final_rows=False`` gives exactly the early (and
late) rows of one with final rows, with the same state bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream import (
    EmitKind,
    Hopping,
    Session,
    Tumbling,
    WindowedAggregation,
    hopping,
    session,
    tumbling,
)
from fraudstream.errors import FlushedError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import Oracle

# Hypothesis imports libcst only to print a failing example; libcst's import warns
# (DeprecationWarning) and filterwarnings=error turns that into a pytest INTERNALERROR that
# hides the failure. Import it here, quietly, so failures are reported.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import libcst  # noqa: F401

AGGREGATIONS: dict[str, str | tuple[str, str]] = {
    "n": "count",
    "total": ("sum", "amount"),
    "lo": ("min", "amount"),
    "hi": ("max", "amount"),
    "avg": ("mean", "amount"),
    "countries": ("count_distinct", "country"),
    "amounts": ("count_distinct", "amount"),
    "first": ("first", "amount"),
    "last": ("last", "amount"),
}
# Dyadic amounts (exact in binary) with duplicates and both zeros (one distinct value); sums
# stay exact.
AMOUNTS = [-1.0, 0.0, -0.0, 0.25, 0.5, 1.0, 1.0, 2.5, 3.0, 7.75]
# Where a stream's times start: the epoch, today, and just below the latest event time.
BASES = [0, 1_700_000_000_000, 253_402_300_799_999 - 400]
# Alert predicates: the engine's text and the equivalent Python function for the oracle.
PREDICATES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("countries >= 2 and n >= 3", lambda a: a["countries"] >= 2 and a["n"] >= 3),
    ("distinct(country) >= 3 and count >= 5", lambda a: a["countries"] >= 3 and a["n"] >= 5),
    ("sum(amount) > 6 or n == 2", lambda a: a["total"] > 6 or a["n"] == 2),
    ("not (hi < 3) and avg >= 1", lambda a: not (a["hi"] < 3) and a["avg"] >= 1),
    ("n < 2", lambda a: a["n"] < 2),
    # "and" binds tighter than "or".
    (
        "n > 3 or countries == 2 and total >= 5",
        lambda a: a["n"] > 3 or (a["countries"] == 2 and a["total"] >= 5),
    ),
    ("min(amount) < 0 or last >= 3", lambda a: a["lo"] < 0 or a["last"] >= 3),
]

BASE = settings(
    deadline=None,
    database=None,  # keep no example database
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Config:
    window: Tumbling | Hopping | Session
    out_of_orderness: int = 0
    allowed_lateness: int = 0
    early: str | None = None  # None, "on_update" or the text of one of PREDICATES
    partitions: int = 1
    idle_timeout: int | None = None

    def _common(self) -> dict[str, Any]:
        return {
            "key": "card",
            "time": "ts",
            "window": self.window,
            "aggregations": AGGREGATIONS,
            "out_of_orderness": self.out_of_orderness,
            "allowed_lateness": self.allowed_lateness,
            "partition": "part" if self.partitions > 1 else None,
            "partitions": self.partitions,
            "idle_timeout": self.idle_timeout,
        }

    def engine(self, final_rows: bool = True) -> WindowedAggregation:
        return WindowedAggregation(early_fire=self.early, final_rows=final_rows, **self._common())

    def oracle(self) -> Oracle:
        early = self.early if self.early in (None, "on_update") else dict(PREDICATES)[self.early]
        return Oracle(early_fire=early, **self._common())


# An event: (key, time, amount, country, partition).
Event = tuple[int, int, float, int, int]
# An operation: ("process", first, stop, now_ms) | ("advance", t) | ("tick", now_ms).
Op = tuple[Any, ...]


def columns(events: list[Event]) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "card": np.array([e[0] for e in events], dtype=np.int64),
        "ts": np.array([e[1] for e in events], dtype=np.int64),
        "amount": np.array([e[2] for e in events], dtype=np.float64),
        "country": np.array([e[3] for e in events], dtype=np.int64),
        "part": np.array([e[4] for e in events], dtype=np.int64),
    }


# ---------------------------------------------------------------------------- strategies


@st.composite
def tumbling_windows(draw: st.DrawFn) -> Tumbling:
    size = draw(st.integers(1, 12))
    return tumbling(size, draw(st.integers(0, size - 1)))


@st.composite
def hopping_windows(draw: st.DrawFn) -> Hopping:
    size = draw(st.integers(1, 12))
    slide = draw(st.integers(1, size))
    return hopping(size, slide, draw(st.integers(0, slide - 1)))


SESSIONS = st.builds(session, st.integers(1, 8))
# Hopping windows whose size is not a multiple of the slide (panes of gcd(size, slide)).
UNEVEN_HOPS = st.sampled_from([hopping(10, 4), hopping(10, 4, 3), hopping(9, 6, 2), hopping(7, 3)])
WINDOWS = st.one_of(tumbling_windows(), hopping_windows(), UNEVEN_HOPS, SESSIONS)


@st.composite
def configs(draw: st.DrawFn, windows: st.SearchStrategy[Any] = WINDOWS, idle: bool = False) -> Config:
    return Config(
        window=draw(windows),
        out_of_orderness=draw(st.one_of(st.just(0), st.integers(1, 6))),
        allowed_lateness=draw(st.one_of(st.just(0), st.integers(1, 8))),
        early=draw(
            st.one_of(st.none(), st.just("on_update"), st.sampled_from([text for text, _ in PREDICATES]))
        ),
        partitions=draw(st.integers(2, 3) if idle else st.integers(1, 3)),
        idle_timeout=draw(st.integers(1, 30)) if idle else None,
    )


@st.composite
def streams(draw: st.DrawFn, partitions: int, max_events: int = 40) -> list[Event]:
    """Times drift forwards from a random start by steps in [-6, 4]: disorder and ties."""
    # With several partitions, sometimes the last one never sends.
    senders = partitions - 1 if partitions > 1 and draw(st.booleans()) else partitions
    n = draw(st.integers(0, max_events))
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.integers(-6, 4),
                st.sampled_from(AMOUNTS),
                st.integers(0, 3),
                st.integers(0, senders - 1),
            ),
            min_size=n,
            max_size=n,
        )
    )
    t = draw(st.sampled_from(BASES)) + draw(st.integers(0, 8))
    events = []
    for key, step, amount, country, part in raw:
        t = max(0, t + step)
        events.append((key, t, amount, country, part))
    return events


@st.composite
def scenarios(
    draw: st.DrawFn, windows: st.SearchStrategy[Any] = WINDOWS, idle: bool = False
) -> tuple[Config, list[Event], list[Op]]:
    """A config, a stream and the calls that feed it: batches, advance_to and (idle) ticks."""
    cfg = draw(configs(windows, idle))
    events = draw(streams(cfg.partitions))
    ops: list[Op] = []
    now = draw(st.integers(0, 5))
    i = 0
    while i < len(events):
        stop = min(len(events), i + draw(st.integers(1, 6)))
        if idle:
            now += draw(st.integers(0, 25))
        ops.append(("process", i, stop, now if idle else None))
        i = stop
        if draw(st.integers(0, 9)) == 0:
            ops.append(("process", i, i, now if idle else None))  # an empty batch
        extra = draw(st.integers(0, 5))
        if extra == 0:
            ops.append(("advance", events[stop - 1][1] + draw(st.integers(-8, 8))))
        elif extra == 1 and idle:
            now += draw(st.integers(0, 40))
            ops.append(("tick", now))
    return cfg, events, ops


# ---------------------------------------------------------------------------- comparison


def same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


def same_multiset(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    if len(got) != len(want):
        return False
    unused = list(got)
    for row in want:
        match = next((i for i, g in enumerate(unused) if same_row(g, row)), None)
        if match is None:
            return False
        unused.pop(match)
    return True


def fmt(rows: list[dict[str, Any]]) -> str:
    return "\n".join(f"    {r}" for r in rows) or "    (none)"


def check_call(
    what: str, out: Any, oracle: Oracle, late: list[int], history: list[str], strict_order: bool = False
) -> None:
    # Output: key, window_start, window_end, kind, then the aggregations as configured;
    # counts are int64 columns, the rest float64.
    assert list(out.columns) == ["key", "window_start", "window_end", "kind", *AGGREGATIONS]
    for name, spec in AGGREGATIONS.items():
        counts = spec == "count" or spec[0] == "count_distinct"
        assert out[name].dtype == (np.int64 if counts else np.float64), (name, out[name].dtype)
    assert out["key"].dtype == out["window_start"].dtype == out["window_end"].dtype == np.int64
    got = list(out.rows())
    want = [r for g in oracle.last_groups for r in g]
    context = "calls so far:\n  " + "\n  ".join(history)
    assert list(out.late_rows.tolist()) == late, (
        f"{what}: late rows differ: engine {out.late_rows.tolist()}, oracle {late}\n{context}"
    )
    assert same_multiset(got, want), (
        f"{what}: rows differ\n  engine:\n{fmt(got)}\n  oracle:\n{fmt(want)}\n{context}"
    )
    # Order fixed by the contract: per cause, increasing window end (keys sharing an end may
    # come in any order here).
    i = 0
    for group in oracle.last_groups:
        chunk, i = got[i : i + len(group)], i + len(group)
        assert same_multiset(chunk, group), (
            f"{what}: row order differs\n  engine:\n{fmt(got)}\n  oracle:\n{fmt(want)}\n{context}"
        )
    # Each row names the input row whose processing emitted it (-1: advance_to/tick/flush).
    assert out.trigger_rows.tolist() == oracle.last_triggers, (
        f"{what}: trigger rows differ: engine {out.trigger_rows.tolist()}, "
        f"oracle {oracle.last_triggers}\n  rows:\n{fmt(want)}\n{context}"
    )
    if strict_order:
        # Keys sharing a window end: "in the order keys first got a pending window at that
        # time" (docs/semantics.md, Emission order).
        assert all(same_row(g, w) for g, w in zip(got, want, strict=True)), (
            f"{what}: order of keys sharing a window end differs\n"
            f"  engine:\n{fmt(got)}\n  oracle:\n{fmt(want)}\n{context}"
        )


def run_against_oracle(cfg: Config, events: list[Event], ops: list[Op], strict_order: bool = False) -> None:
    engine, oracle = cfg.engine(), cfg.oracle()
    history = [repr(cfg)]
    for op in [*ops, ("flush",)]:
        if op[0] == "process":
            _, first, stop, now = op
            batch = columns(events[first:stop])
            history.append(f"process({events[first:stop]}, now_ms={now})")
            out = engine.process(batch, now_ms=now)
            _, late = oracle.process(batch, now_ms=now)
        elif op[0] == "advance":
            history.append(f"advance_to({op[1]})")
            out, (_, late) = engine.advance_to(op[1]), oracle.advance_to(op[1])
        elif op[0] == "tick":
            history.append(f"tick({op[1]})")
            out, (_, late) = engine.tick(op[1]), oracle.tick(op[1])
        else:
            history.append("flush()")
            out, (_, late) = engine.flush(), oracle.flush()
        check_call(history[-1], out, oracle, late, history, strict_order)
        if op[0] != "flush":
            assert engine.watermark == oracle.watermark, (
                f"watermark: engine {engine.watermark}, oracle {oracle.watermark}\n{history}"
            )
            assert engine.idle_partitions == oracle.idle_partitions, history
    # After flush() the input has ended: process() raises and changes nothing (issue 15; it
    # used to take every further event as late, silently).
    before = engine.snapshot()
    with pytest.raises(FlushedError):
        engine.process(columns(events[-3:]))
    assert engine.snapshot() == before
    assert engine.counters() == oracle.counters, history
    size = engine.state_size()
    assert (size["keys"], size["windows"]) == (0, 0), f"state after flush: {size}\n{history}"


# ---------------------------------------------------------------------------- engine vs oracle


@settings(BASE, max_examples=400)
@given(scenarios(st.one_of(tumbling_windows(), hopping_windows(), UNEVEN_HOPS)))
def test_tumbling_and_hopping_match_oracle(scenario: tuple[Config, list[Event], list[Op]]) -> None:
    run_against_oracle(*scenario)


@settings(BASE, max_examples=300)
@given(scenarios(SESSIONS))
def test_sessions_match_oracle(scenario: tuple[Config, list[Event], list[Op]]) -> None:
    run_against_oracle(*scenario)


@settings(BASE, max_examples=250)
@given(scenarios(WINDOWS, idle=True))
def test_idle_partitions_match_oracle(scenario: tuple[Config, list[Event], list[Op]]) -> None:
    run_against_oracle(*scenario)


@settings(BASE, max_examples=60)
@given(
    window=WINDOWS,
    out_of_orderness=st.integers(0, 5),
    allowed_lateness=st.integers(0, 5),
    events=streams(2),
)
def test_silent_partition_holds_watermark_until_advance(
    window: Any, out_of_orderness: int, allowed_lateness: int, events: list[Event]
) -> None:
    """Partition 1 never sends: nothing fires on events alone; advance_to releases windows."""
    events = [(k, t, a, c, 0) for k, t, a, c, _ in events]
    cfg = Config(window, out_of_orderness, allowed_lateness, partitions=2)
    engine = cfg.engine()
    out = engine.process(columns(events))
    assert engine.watermark is None
    assert len(out.late_rows) == 0
    assert len(out) == 0
    top = max((e[1] for e in events), default=0)
    run_against_oracle(
        cfg, events, [("process", 0, len(events), None), ("advance", top // 2), ("advance", top + 20)]
    )


@settings(BASE, max_examples=150)
@given(scenarios())
def test_keys_sharing_a_window_end_fire_in_key_order(
    scenario: tuple[Config, list[Event], list[Op]],
) -> None:
    """The exact emission order, including keys whose windows end at the same time."""
    run_against_oracle(*scenario, strict_order=True)


# ---------------------------------------------------------------------------- engine only


Concatenated = tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def concat(outputs: list[tuple[Any, int]]) -> Concatenated:
    """All rows of several calls in order (with their trigger rows as a column), and the late
    rows; row numbers are made global by adding each call's first event number."""
    cols = {name: np.concatenate([o.columns[name] for o, _ in outputs]) for name in outputs[0][0].columns}
    cols["trigger_rows"] = np.concatenate(
        [np.where(o.trigger_rows >= 0, o.trigger_rows + base, -1) for o, base in outputs]
    )
    late = np.concatenate([o.late_rows + base for o, base in outputs])
    return cols, late


def assert_identical(a: Concatenated, b: Concatenated, what: str) -> None:
    cols_a, late_a = a
    cols_b, late_b = b
    assert list(cols_a) == list(cols_b)
    for name in cols_a:
        assert cols_a[name].dtype == cols_b[name].dtype, (what, name)
        assert cols_a[name].tobytes() == cols_b[name].tobytes(), (
            f"{what}: column {name!r} differs:\n{cols_a[name]}\n{cols_b[name]}"
        )
    assert late_a.tolist() == late_b.tolist(), f"{what}: late rows {late_a} vs {late_b}"


def run_batched(cfg: Config, events: list[Event], cuts: list[int]) -> Concatenated:
    engine = cfg.engine()
    outputs: list[tuple[Any, int]] = []
    bounds = [0, *sorted(set(cuts)), len(events)]
    for first, stop in itertools.pairwise(bounds):
        if first < stop:
            outputs.append((engine.process(columns(events[first:stop])), first))
    outputs.append((engine.flush(), len(events)))
    return concat(outputs)


@settings(BASE, max_examples=200)
@given(cfg=configs(), data=st.data())
def test_any_batching_gives_identical_output(cfg: Config, data: st.DataObject) -> None:
    events = data.draw(streams(cfg.partitions), label="events")
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=8), label="cuts")
    whole = run_batched(cfg, events, [])
    assert_identical(run_batched(cfg, events, list(range(len(events)))), whole, "one by one")
    assert_identical(run_batched(cfg, events, cuts), whole, f"cut at {sorted(set(cuts))}")


@settings(BASE, max_examples=200)
@given(scenario=scenarios(), data=st.data())
def test_snapshot_restore_mid_stream_is_invisible(
    scenario: tuple[Config, list[Event], list[Op]], data: st.DataObject
) -> None:
    cfg, events, ops = scenario
    cut = data.draw(st.integers(0, len(ops)), label="snapshot after op")

    def call(engine: WindowedAggregation, op: Op) -> Any:
        if op[0] == "process":
            return engine.process(columns(events[op[1] : op[2]]))
        if op[0] == "advance":
            return engine.advance_to(op[1])
        return engine.flush()

    straight = cfg.engine()
    expected = [call(straight, op) for op in [*ops, ("flush",)]]

    first = cfg.engine()
    for op in ops[:cut]:
        call(first, op)
    restored = cfg.engine()
    restored.restore(first.snapshot())
    assert restored.watermark == first.watermark
    assert restored.state_size()["windows"] == first.state_size()["windows"]
    for i, op in enumerate([*ops[cut:], ("flush",)]):
        got = call(restored, op)
        want = expected[cut + i]
        assert_identical(concat([(got, 0)]), concat([(want, 0)]), f"op {cut + i} {op}")
    assert restored.counters() == straight.counters()
    assert restored.state_size()["keys"] == 0


@settings(BASE, max_examples=200)
@given(scenario=st.one_of(scenarios(), scenarios(idle=True)))
def test_without_final_rows_only_early_rows_are_built_and_the_state_is_the_same(
    scenario: tuple[Config, list[Event], list[Op]],
) -> None:
    """``final_rows=False``: every call returns the EARLY rows (and the late rows, trigger rows)
    of an engine with final rows, bit for bit; snapshots, changes and counters are equal after
    every call, so state moves between the two (the option is not state)."""
    cfg, events, ops = scenario
    on, off = cfg.engine(), cfg.engine(final_rows=False)
    on.track_changes()
    off.track_changes()

    def call(engine: WindowedAggregation, op: Op) -> Any:
        if op[0] == "process":
            return engine.process(columns(events[op[1] : op[2]]), now_ms=op[3])
        if op[0] == "advance":
            return engine.advance_to(op[1])
        if op[0] == "tick":
            return engine.tick(op[1])
        return engine.flush()

    for i, op in enumerate([*ops, ("flush",)]):
        want, got = call(on, op), call(off, op)
        early = want.select(want["kind"] == EmitKind.EARLY)
        assert_identical(concat([(got, 0)]), concat([(early, 0)]), f"op {i} {op}")
        assert got.trigger_rows.tolist() == early.trigger_rows.tolist(), f"op {i} {op}"
        assert off.counters() == on.counters(), f"op {i} {op}: a row not built counts as emitted"
        assert off.snapshot() == on.snapshot(), f"op {i} {op}: snapshot bytes differ"
        assert off.changes() == on.changes(), f"op {i} {op}: changes differ"
    assert (off.state_size()["keys"], off.state_size()["windows"]) == (0, 0)
    swapped = cfg.engine()  # final rows on, restored from a state written with them off
    swapped.restore(off.snapshot())
    assert swapped.snapshot() == on.snapshot()
