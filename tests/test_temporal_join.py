"""The temporal join (``fraudstream.tables``) against an obviously correct Python oracle.

The oracle reads the rules of ``docs/semantics.md`` ("Temporal join") literally, one row at a
time: watermarks are ``max time - disorder``; a table update behind the table watermark is
late (counted, dropped); a probe behind the probe watermark is late; a probe is emitted once
the table watermark is past its time, waiting probes in (time, arrival) order. The value it
gets is computed at the end, from *every* accepted update: the one with the greatest version
time <= the probe's time (ties: the later arrival), a delete meaning no match. Equality with
the engine therefore also checks that no accepted update can arrive too late to matter.

Streams are small and disordered on purpose: few keys, times drifting forward with jitter
behind the maximum, so updates and probes are late, wait, overtake each other and hit deletes.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.errors import ConfigError, InvalidBatchError, SnapshotError
from fraudstream.processor import Processor
from fraudstream.tables import JoinOutput, LookupJoinProcessor, TemporalJoinProcessor

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import libcst  # noqa: F401

COLUMNS = ["avg_amount", "account_age_days"]
Row = tuple[int, int, int, bool, int | None, float | None, float | None]


@dataclass(frozen=True)
class Op:
    table: bool  # a table update (else a probe)
    key: int
    time: int
    value: int  # avg_amount; account_age_days is -value; the probe's id for a probe
    delete: bool = False
    advance: bool = False  # advance(time): an idle table side's watermark raised to `time`


# ---------------------------------------------------------------------------------------------
# The oracle


def oracle(ops: list[Op], table_d: int, probe_d: int, inner: bool) -> tuple[list[Row], int, int]:
    """Joined rows (in emission order, ending with flush), late updates, late probes."""
    neg_inf = -(2**63)
    table_wm = probe_wm = neg_inf
    accepted: list[tuple[int, int, int, Op]] = []  # (key, version time, arrival, op)
    waiting: list[tuple[int, int, int, int]] = []  # (time, arrival, key, id)
    emitted: list[tuple[int, int, int]] = []  # (key, time, id)
    late_updates = late_probes = 0

    def release() -> None:
        ready = sorted(w for w in waiting if w[0] < table_wm)
        for w in ready:
            waiting.remove(w)
            emitted.append((w[2], w[0], w[3]))

    for arrival, op in enumerate(ops):
        if op.advance:
            table_wm = max(table_wm, op.time)
            release()
        elif op.table:
            if op.time < table_wm:
                late_updates += 1
                continue
            accepted.append((op.key, op.time, arrival, op))
            table_wm = max(table_wm, op.time - table_d)
            release()
        else:
            if op.time < probe_wm:
                late_probes += 1
                continue
            probe_wm = max(probe_wm, op.time - probe_d)
            if op.time < table_wm:
                emitted.append((op.key, op.time, op.value))
            else:
                waiting.append((op.time, arrival, op.key, op.value))
    table_wm = 2**63 - 1
    release()

    rows: list[Row] = []
    for key, time, ident in emitted:
        versions = [(vt, arr, o) for (k, vt, arr, o) in accepted if k == key and vt <= time]
        best = max(versions, key=lambda v: (v[0], v[1]), default=None)
        if best is None or best[2].delete:
            if not inner:
                rows.append((key, time, ident, False, None, None, None))
        else:
            o = best[2]
            rows.append((key, time, ident, True, best[0], float(o.value), float(-o.value)))
    return rows, late_updates, late_probes


# ---------------------------------------------------------------------------------------------
# Running the engine with batch cuts, snapshots and changes


def rows_of(out: JoinOutput) -> list[Row]:
    j = out.joined
    rows: list[Row] = []
    for i in range(len(j.get("key", ()))):
        matched = bool(j["matched"][i])
        a, b = float(j["avg_amount"][i]), float(j["account_age_days"][i])
        assert matched or (math.isnan(a) and math.isnan(b)), "unmatched values are NaN"
        rows.append(
            (
                int(j["key"][i]),
                int(j["time"][i]),
                int(j["id"][i]),
                matched,
                int(j["version_time"][i]) if matched else None,
                a if matched else None,
                b if matched else None,
            )
        )
    return rows


def make(table_d: int, probe_d: int, inner: bool) -> TemporalJoinProcessor:
    return TemporalJoinProcessor(
        COLUMNS,
        key="card_id",
        time="event_time",
        id="txn_id",
        table_disorder_ms=table_d,
        probe_disorder_ms=probe_d,
        inner=inner,
        table_idle_lag_ms=0,
    )


def batches(ops: list[Op], cuts: list[bool]) -> list[list[Op]]:
    """Consecutive same-side ops, cut further where ``cuts`` says."""
    out: list[list[Op]] = []
    for i, op in enumerate(ops):
        same = out and (out[-1][0].table, out[-1][0].advance) == (op.table, op.advance)
        if same and not op.advance and not cuts[i % len(cuts)]:
            out[-1].append(op)
        else:
            out.append([op])
    return out


def feed(join: TemporalJoinProcessor, batch: list[Op]) -> JoinOutput:
    keys = np.array([o.key for o in batch], np.int64)
    times = np.array([o.time for o in batch], np.int64)
    if batch[0].advance:
        return join.advance(batch[0].time)
    if batch[0].table:
        values = np.array([o.value for o in batch], np.float64)
        return join.update_table(
            {
                "key": keys,
                "time": times,
                "avg_amount": values,
                "account_age_days": -values,
                "deleted": np.array([o.delete for o in batch]),
            }
        )
    ids = np.array([o.value for o in batch], np.int64)
    return join.process({"card_id": keys, "event_time": times, "txn_id": ids})


def _build(raw: list[tuple[int, int, int, int, int, int]]) -> list[Op]:
    """side 0-3: a table update or a probe, 4: an advance of the table side (an idle tick)."""
    ops, clock = [], 0
    for i, (side, key, step, jitter, value, d) in enumerate(raw):
        clock += step
        table, advance = side < 2, side == 4
        time = max(0, clock - jitter)
        ops.append(Op(table, key, time, value if table else i, table and d == 0, advance))
    return ops


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 3),
        st.integers(0, 15),
        st.integers(0, 40),
        st.integers(1, 9),
        st.integers(0, 5),
    ),
    max_size=60,
).map(_build)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops_strategy,
    cuts=st.lists(st.booleans(), min_size=1, max_size=16),
    table_d=st.integers(0, 30),
    probe_d=st.integers(0, 30),
    inner=st.booleans(),
    at=st.integers(0, 60),
)
def test_matches_the_oracle_whatever_the_cuts_with_a_restart(
    ops: list[Op], cuts: list[bool], table_d: int, probe_d: int, inner: bool, at: int
) -> None:
    expected, late_updates, late_probes = oracle(ops, table_d, probe_d, inner)

    # one run cut at `cuts`, restarted at batch `at` from a snapshot plus changes
    join = make(table_d, probe_d, inner)
    replica = make(table_d, probe_d, inner)
    replica.restore(join.snapshot())
    got: list[Row] = []
    late_counts = [0, 0]
    parts = batches(ops, cuts)
    for n, batch in enumerate(parts):
        if n == at:
            replica.apply_changes(join.changes())
            assert replica.snapshot() == join.snapshot()
            join = make(table_d, probe_d, inner)
            join.restore(replica.snapshot())
        out = feed(join, batch)
        got += rows_of(out)
        if not batch[0].advance:
            late_counts[0 if batch[0].table else 1] += len(out.late_rows)
    got += rows_of(join.flush())
    assert got == expected
    assert late_counts == [late_updates, late_probes]
    counters = join.counters()
    assert (counters["late_updates"], counters["late_probes"]) == (late_updates, late_probes)

    # and row by row, each row its own call (freeing then runs after every row)
    single = make(table_d, probe_d, inner)
    one_by_one: list[Row] = []
    for op in ops:
        one_by_one += rows_of(feed(single, [op]))
    one_by_one += rows_of(single.flush())
    assert one_by_one == expected


@settings(max_examples=100, deadline=None)
@given(ops=ops_strategy, cuts=st.lists(st.booleans(), min_size=1, max_size=16))
def test_state_bytes_do_not_depend_on_the_cuts(ops: list[Op], cuts: list[bool]) -> None:
    a, b = make(5, 5, False), make(5, 5, False)
    for op in ops:
        feed(a, [op])
    for batch in batches(ops, cuts):
        feed(b, batch)
    assert a.snapshot() == b.snapshot()


# ---------------------------------------------------------------------------------------------
# Plain examples: the contract, freeing, idleness, bad input


def test_is_a_processor_and_waits_for_the_table() -> None:
    join = make(0, 0, False)
    assert isinstance(join, Processor)
    join.update_table({"key": [1], "time": [100], "avg_amount": [50.0], "account_age_days": [400.0]})
    out = join.process({"card_id": [1, 1], "event_time": [99, 100], "txn_id": [7, 8]})
    assert rows_of(out) == [(1, 99, 7, False, None, None, None)], "99 is before the version"
    out = join.update_table({"key": [2], "time": [101], "avg_amount": [0.0], "account_age_days": [0.0]})
    assert rows_of(out) == [(1, 100, 8, True, 100, 50.0, 400.0)]


def test_a_late_table_update_is_counted_and_dropped() -> None:
    join = make(10, 0, False)
    join.update_table(
        {"key": [1, 1], "time": [100, 89], "avg_amount": [1.0, 2.0], "account_age_days": [0.0, 0.0]}
    )
    assert join.counters()["late_updates"] == 1
    out = join.flush()
    assert len(out.joined["key"]) == 0
    out = join.update_table({"key": [1], "time": [10**9], "avg_amount": [1.0], "account_age_days": [0.0]})
    assert out.late_rows.tolist() == [0], "after flush every update is late"


def test_versions_are_freed_behind_the_probes_and_the_table_watermark() -> None:
    join = make(0, 0, False)
    for t in range(0, 100, 10):
        join.update_table({"key": [1], "time": [t], "avg_amount": [float(t)], "account_age_days": [0.0]})
    assert join.state_size()["versions"] == 10, "no probe yet: nothing freed"
    out = join.process({"card_id": [1], "event_time": [55], "txn_id": [1]})
    assert rows_of(out) == [(1, 55, 1, True, 50, 50.0, 0.0)]
    assert join.state_size()["versions"] == 5, "50 (valid at 55) and the four after it"
    slow = make(1000, 0, False)
    for t in range(0, 100, 10):
        slow.update_table({"key": [1], "time": [t], "avg_amount": [float(t)], "account_age_days": [0.0]})
    slow.process({"card_id": [1], "event_time": [55], "txn_id": [1]})
    assert slow.state_size()["versions"] == 10, "updates at -910.. may still come: nothing freed"


def test_idle_table_side_is_released_by_advance() -> None:
    join = TemporalJoinProcessor(COLUMNS, table_idle_lag_ms=1000)
    join.update_table({"key": [1], "time": [100], "avg_amount": [3.0], "account_age_days": [1.0]})
    assert not len(join.process({"card_id": [1], "event_time": [500], "txn_id": [1]}).joined["key"])
    assert not len(join.advance(1500).joined["key"]), "table watermark 500 does not pass 500"
    assert rows_of(join.advance(1501)) == [(1, 500, 1, True, 100, 3.0, 1.0)]
    no_lag = TemporalJoinProcessor(COLUMNS)
    no_lag.process({"card_id": [1], "event_time": [500], "txn_id": [1]})
    assert not no_lag.advance(10**12).joined, "no idle lag: advance does nothing"
    assert no_lag.state_size()["waiting"] == 1


def test_bad_input_raises_and_changes_nothing() -> None:
    join = make(0, 0, False)
    join.update_table({"key": [1], "time": [100], "avg_amount": [3.0], "account_age_days": [1.0]})
    before = join.snapshot()
    with pytest.raises(InvalidBatchError):
        join.process({"card_id": [1, 2], "event_time": [5, -1], "txn_id": [1, 2]})
    with pytest.raises(InvalidBatchError):
        join.process({"card_id": [1, 2], "event_time": [5], "txn_id": [1, 2]})
    with pytest.raises(KeyError, match="account_age_days"):
        join.update_table({"key": [1], "time": [100], "avg_amount": [3.0]})
    with pytest.raises(InvalidBatchError):
        join.update_table(
            {"key": [1, 2], "time": [200, 300], "avg_amount": [3.0], "account_age_days": [1.0, 2.0]}
        )
    assert join.snapshot() == before
    with pytest.raises(TypeError, match="event_time"):
        join.process({"card_id": [1], "event_time": [5.5], "txn_id": [1]})
    with pytest.raises(TypeError, match="card_id"):
        join.process({"card_id": ["1"], "event_time": [5], "txn_id": [1]})
    with pytest.raises(ValueError, match="key"):
        join.update_table(
            {
                "key": np.array([2**64 - 1], np.uint64),
                "time": [200],
                "avg_amount": [3.0],
                "account_age_days": [1.0],
            }
        )
    assert join.snapshot() == before
    with pytest.raises(ConfigError):
        TemporalJoinProcessor(["matched"])
    with pytest.raises(ConfigError):
        TemporalJoinProcessor(COLUMNS, table_disorder_ms=-1)
    with pytest.raises(SnapshotError):
        make(0, 0, True).restore(before)
    with pytest.raises(SnapshotError):
        join.restore(before[:-3])
    assert join.snapshot() == before


# ---------------------------------------------------------------------------------------------
# The processing-time lookup join


@settings(max_examples=100, deadline=None)
@given(ops=ops_strategy, inner=st.booleans())
def test_lookup_join_is_the_latest_value_by_arrival(ops: list[Op], inner: bool) -> None:
    join = LookupJoinProcessor(COLUMNS, inner=inner)
    table: dict[int, float] = {}
    for n, op in enumerate(ops):
        if op.table:
            v = np.array([float(op.value)])
            join.update_table(
                {"key": [op.key], "avg_amount": v, "account_age_days": -v, "deleted": [op.delete]}
            )
            if op.delete:
                table.pop(op.key, None)
            else:
                table[op.key] = float(op.value)
        else:
            got = join.process({"card_id": [op.key], "event_time": [op.time], "txn_id": [op.value]}).joined
            if op.key in table:
                assert got["matched"].tolist() == [True]
                assert got["avg_amount"].tolist() == [table[op.key]]
            elif inner:
                assert len(got["key"]) == 0
            else:
                assert got["matched"].tolist() == [False]
        if n == len(ops) // 2:
            copy = LookupJoinProcessor(COLUMNS, inner=inner)
            copy.restore(join.snapshot())
            copy.apply_changes(join.changes())
            join = copy
    assert len(join.core) == len(table)


def test_lookup_join_shapes() -> None:
    join: Any = LookupJoinProcessor(["x"], key="k", time="t", id="i")
    join.update_table({"key": [1, 2], "x": [1.5, 2.5]})
    out = join.process({"k": [2, 3, 1], "t": [0, 0, 0], "i": [10, 11, 12]})
    assert out.joined["x"][[0, 2]].tolist() == [2.5, 1.5]
    assert out.joined["matched"].tolist() == [True, False, True]


def test_runs_in_the_pipeline_like_any_processor() -> None:
    from fraudstream.pipeline import ArraySource, CollectSink, Pipeline

    rng = np.random.default_rng(3)
    n = 5_000
    columns = {
        "card_id": rng.integers(0, 50, n).astype(np.int64),
        "event_time": np.sort(rng.integers(0, 100_000, n)).astype(np.int64),
        "txn_id": np.arange(n, dtype=np.int64),
    }
    table = {
        "key": np.arange(40, dtype=np.int64),
        "time": np.full(40, 50_000, np.int64),
        "avg_amount": np.arange(40, dtype=np.float64),
        "account_age_days": np.zeros(40),
    }

    def build() -> TemporalJoinProcessor:
        join = TemporalJoinProcessor(COLUMNS, probe_disorder_ms=1_000)
        join.update_table(table)
        return join

    direct = build()
    expected = rows_of(direct.process(columns)) + rows_of(direct.flush())
    sink = CollectSink()
    stats = Pipeline(ArraySource(columns, batch_size=700), build(), sink).run()
    got = [row for item in sink.items for row in rows_of(item)]
    assert got == expected, "the pipeline's batches of 700 give the rows of one batch, in order"
    assert len(got) == n
    assert stats["events_in"] == n and not stats["errors"]


def test_repeated_calls_do_not_leak_and_state_stays_bounded() -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    join = make(10, 10, False)
    keys = np.arange(64, dtype=np.int64) % 8
    values = np.ones(64)

    def run(start: int, rounds: int) -> None:
        for i in range(start, start + rounds):
            times = np.arange(64, dtype=np.int64) + i * 64
            join.update_table({"key": keys, "time": times, "avg_amount": values, "account_age_days": values})
            join.process({"card_id": keys, "event_time": times, "txn_id": times})
            join.snapshot()
            join.changes()

    run(0, 2_000)
    before = proc.memory_info().rss
    run(2_000, 10_000)
    grown = proc.memory_info().rss - before
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 rounds"
    size = join.state_size()
    assert size["keys"] == 8 and size["versions"] <= 8 * 4, f"versions are freed: {size}"
