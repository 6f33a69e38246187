"""Hand-computed examples of the window semantics (``docs/semantics.md``).

Every example runs twice: against the Rust engine and against the pure-Python oracle
(``tests/oracle.py``), so a golden value that either one gets wrong shows up here in a readable
form. The comment above each expectation derives it from the contract.

Rows are written ``(key, window_start, window_end, kind, <aggregates...>)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream import EmitKind, WindowedAggregation, hopping, session, tumbling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import Oracle

FINAL, UPDATE, EARLY = "FINAL", "UPDATE", "EARLY"


class Run:
    """Drives the engine or the oracle with the same calls; returns rows as tuples."""

    def __init__(
        self, impl: str, *, aggregations: dict[str, Any], early_fire: Any = None, **config: Any
    ) -> None:
        self.names = list(aggregations)
        self.impl = impl
        if impl == "engine":
            early = early_fire[0] if isinstance(early_fire, tuple) else early_fire
            self.agg: Any = WindowedAggregation(
                key="card", time="ts", aggregations=aggregations, early_fire=early, **config
            )
        else:
            early = early_fire[1] if isinstance(early_fire, tuple) else early_fire
            self.agg = Oracle(key="card", time="ts", aggregations=aggregations, early_fire=early, **config)

    def _result(self, out: Any) -> tuple[list[tuple[Any, ...]], list[int]]:
        if self.impl == "engine":
            rows, late = list(out.rows()), out.late_rows.tolist()
        else:
            rows, late = out
        return [
            (
                r["key"],
                r["window_start"],
                r["window_end"],
                EmitKind(r["kind"]).name,
                *(r[n] for n in self.names),
            )
            for r in rows
        ], late

    def process(
        self,
        ts: Sequence[int],
        card: int | Sequence[int] = 1,
        amount: Sequence[float] | None = None,
        country: Sequence[int] | None = None,
        part: Sequence[int] | None = None,
        now_ms: int | None = None,
    ) -> tuple[list[tuple[Any, ...]], list[int]]:
        n = len(ts)
        cols: dict[str, Any] = {
            "card": np.array([card] * n if isinstance(card, int) else card, dtype=np.int64),
            "ts": np.array(ts, dtype=np.int64),
            "amount": np.array(amount if amount is not None else [1.0] * n, dtype=np.float64),
            "country": np.array(country if country is not None else [0] * n, dtype=np.int64),
            "part": np.array(part if part is not None else [0] * n, dtype=np.int64),
        }
        return self._result(self.agg.process(cols, now_ms=now_ms))

    def rows(self, ts: Sequence[int], **kw: Any) -> list[tuple[Any, ...]]:
        rows, late = self.process(ts, **kw)
        assert late == []
        return rows

    def advance_to(self, t: int) -> list[tuple[Any, ...]]:
        return self._result(self.agg.advance_to(t))[0]

    def tick(self, now_ms: int) -> list[tuple[Any, ...]]:
        return self._result(self.agg.tick(now_ms))[0]

    def flush(self) -> list[tuple[Any, ...]]:
        return self._result(self.agg.flush())[0]

    @property
    def watermark(self) -> int | None:
        return self.agg.watermark  # type: ignore[no-any-return]


@pytest.fixture(params=["engine", "oracle"])
def make(request: pytest.FixtureRequest) -> Callable[..., Run]:
    return lambda **config: Run(request.param, **config)


COUNT = {"n": "count"}


def test_tumbling_count_with_a_late_event(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT)
    rows, late = run.process(ts=[1, 5, 12, 3, 25])
    # t=1, t=5 -> [0,10); watermark 5.
    # t=12 -> [10,20); watermark 12 >= 10 - 1: [0,10) fires with n=2.
    # t=3 is judged against watermark 12: [0,10) is late (end - 1 + 0 = 9 <= 12) and that is its
    #     only window, so row 3 goes to the late side output and changes nothing.
    # t=25 -> [20,30); watermark 25 >= 19: [10,20) fires with n=1.
    assert rows == [(1, 0, 10, FINAL, 2), (1, 10, 20, FINAL, 1)]
    assert late == [3]
    assert run.flush() == [(1, 20, 30, FINAL, 1)]
    if run.impl == "engine":
        assert run.agg.counters() == {"events": 4, "late": 1, "emitted": 3, "evicted": 0}


@pytest.mark.parametrize(
    ("window", "t", "expected"),
    [
        # size 10, slide 5: starts are multiples of 5 with s <= 12 < s + 10 -> 5 and 10.
        (hopping(10, 5), 12, [(5, 15), (10, 20)]),
        # an event exactly on a boundary (t=10) is in [10,20) (half-open) and [5,15), not [0,10).
        (hopping(10, 5), 10, [(5, 15), (10, 20)]),
        # offset 2: starts 2 + 5k -> 7 and 12.
        (hopping(10, 5, 2), 12, [(7, 17), (12, 22)]),
        # size 10, slide 4 (panes of gcd 2): starts 0, 4, 8 hold t=9.
        (hopping(10, 4), 9, [(0, 10), (4, 14), (8, 18)]),
        # windows reaching back before the epoch: t=4 is in [-5,5) and [0,10).
        (hopping(10, 5), 4, [(-5, 5), (0, 10)]),
    ],
)
def test_hopping_windows_of_an_event(
    make: Callable[..., Run], window: Any, t: int, expected: list[tuple[int, int]]
) -> None:
    run = make(window=window, aggregations=COUNT, out_of_orderness=100)
    assert run.rows(ts=[t]) == []  # watermark t - 100: nothing closes before flush()
    assert run.flush() == [(1, s, e, FINAL, 1) for s, e in expected]


def test_hopping_combines_panes(make: Callable[..., Run]) -> None:
    run = make(
        window=hopping(10, 4), aggregations={"n": "count", "total": ("sum", "amount")}, out_of_orderness=100
    )
    run.rows(ts=[1, 3, 5, 9, 13], amount=[1.0, 2.0, 4.0, 8.0, 16.0])
    # Windows [4k-8, 4k+2) for k=-2..3 hold some of the events:
    # [-8,2): 1 | [-4,6): 1,3,5 | [0,10): 1,3,5,9 | [4,14): 5,9,13 | [8,18): 9,13 | [12,22): 13
    assert run.flush() == [
        (1, -8, 2, FINAL, 1, 1.0),
        (1, -4, 6, FINAL, 3, 7.0),
        (1, 0, 10, FINAL, 4, 15.0),
        (1, 4, 14, FINAL, 3, 28.0),
        (1, 8, 18, FINAL, 2, 24.0),
        (1, 12, 22, FINAL, 1, 16.0),
    ]


def test_allowed_lateness_update_then_dropped(make: Callable[..., Run]) -> None:
    run = make(
        window=tumbling(10), aggregations={"n": "count", "total": ("sum", "amount")}, allowed_lateness=5
    )
    rows, late = run.process(ts=[2, 11, 4, 16, 7], amount=[1.0, 2.0, 4.0, 8.0, 16.0])
    # t=2  -> [0,10); watermark 2.
    # t=11 -> [10,20); watermark 11 >= 9: [0,10) fires FINAL (n=1, total 1).
    # t=4  judged against 11: [0,10) fired but 9 + 5 = 14 > 11, so within lateness: added and
    #      re-emitted at once as UPDATE (n=2, total 5).
    # t=16 -> [10,20); watermark 16 >= 14: the state of [0,10) is dropped (no row).
    # t=7  judged against 16: 14 <= 16, late for its only window -> late row 4.
    assert rows == [(1, 0, 10, FINAL, 1, 1.0), (1, 0, 10, UPDATE, 2, 5.0)]
    assert late == [4]
    assert run.flush() == [(1, 10, 20, FINAL, 2, 10.0)]


def test_late_first_data_of_a_fired_window_is_final(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT, allowed_lateness=10)
    assert run.rows(ts=[25]) == []
    # t=15 judged against 25: [10,20) already fired empty (19 <= 25) and is within lateness
    # (19 + 10 = 29 > 25): this is its first data, so it is emitted at once as FINAL.
    assert run.rows(ts=[15]) == [(1, 10, 20, FINAL, 1)]
    # A second late event in it is an UPDATE.
    assert run.rows(ts=[12]) == [(1, 10, 20, UPDATE, 2)]
    assert run.flush() == [(1, 20, 30, FINAL, 1)]


def test_session_events_exactly_gap_apart_merge(make: Callable[..., Run]) -> None:
    run = make(window=session(5), aggregations=COUNT)
    # 0 opens [0,5); 5 opens [5,10), which touches [0,5): one session [0,10); 10 extends it to
    # [0,15). 21 opens [21,26) (15 < 21: no touch); watermark 21 >= 14 closes [0,15) with n=3.
    assert run.rows(ts=[0, 5, 10, 21]) == [(1, 0, 15, FINAL, 3)]
    assert run.flush() == [(1, 21, 26, FINAL, 1)]


def test_session_bridged_by_an_out_of_order_event(make: Callable[..., Run]) -> None:
    run = make(
        window=session(5),
        out_of_orderness=100,
        aggregations={"n": "count", "first": ("first", "amount"), "last": ("last", "amount")},
    )
    # 0 -> [0,5); 10 -> [10,15) (apart); 5 -> [5,10) touches both: one session [0,15).
    # first = amount at the earliest time (t=0), last = amount at the latest time (t=10),
    # whatever the arrival order.
    assert run.rows(ts=[0, 10, 5], amount=[1.0, 2.0, 3.0]) == []
    assert run.flush() == [(1, 0, 15, FINAL, 3, 1.0, 2.0)]


def test_first_and_last_ties_go_by_arrival(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations={"first": ("first", "amount"), "last": ("last", "amount")})
    # Three events at t=3: first takes the earliest arrival, last the latest arrival.
    run.rows(ts=[3, 3], amount=[1.0, 2.0])
    run.rows(ts=[3], amount=[4.0])
    assert run.flush() == [(1, 0, 10, FINAL, 1.0, 4.0)]


def test_late_event_updates_a_fired_session_and_a_merge_reopens_one(
    make: Callable[..., Run],
) -> None:
    run = make(window=session(5), aggregations=COUNT, allowed_lateness=20)
    # 0 -> [0,5); 9 -> [9,14), watermark 9 >= 4 closes [0,5) (n=1).
    assert run.rows(ts=[0, 9]) == [(1, 0, 5, FINAL, 1)]
    # 2 -> [2,7) merges into [0,5), which fired but is kept until 4 + 20: the session [0,7) is
    # past the watermark (6 <= 9), so it is re-emitted at once as an UPDATE (n=2).
    assert run.rows(ts=[2]) == [(1, 0, 7, UPDATE, 2)]
    # 4 -> [4,9) touches [0,7) and [9,14): one session [0,14), past the watermark no more
    # (13 > 9), so it is reopened and fires again at its new end, as an UPDATE (emitted before).
    assert run.rows(ts=[4]) == []
    assert run.advance_to(13) == [(1, 0, 14, UPDATE, 4)]
    assert run.flush() == []


def test_predicate_fires_early_once_then_final(make: Callable[..., Run]) -> None:
    aggregations = {"n": "count", "countries": ("count_distinct", "country")}
    predicate = ("countries >= 3 and n >= 5", lambda a: a["countries"] >= 3 and a["n"] >= 5)
    run = make(window=tumbling(60), aggregations=aggregations, early_fire=predicate)
    # After each event (n, countries): (1,1) (2,1) (3,2) (4,2) (5,3) <- holds first here.
    assert run.rows(ts=[1, 2, 3, 4, 5], card=7, country=[1, 1, 2, 2, 3]) == [(7, 0, 60, EARLY, 5, 3)]
    # It still holds after the 6th event, but the window already fired early: no row.
    assert run.rows(ts=[6], card=7, country=[4]) == []
    # Another key has its own window and fires on its own.
    assert run.rows(ts=[7] * 5, card=8, country=[1, 2, 3, 1, 2]) == [(8, 0, 60, EARLY, 5, 3)]
    # t=70 raises the watermark to 70 >= 59: both windows close with their final values
    # (the two keys' rows share end 60; key 7 got its window first).
    assert run.rows(ts=[70], card=9, country=[0]) == [
        (7, 0, 60, FINAL, 6, 4),
        (8, 0, 60, FINAL, 5, 3),
    ]
    assert run.flush() == [(9, 60, 120, FINAL, 1, 1)]


def test_on_update_emits_every_change_of_an_open_window(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT, early_fire="on_update")
    # Every event emits its open window as EARLY; t=12 then closes [0,10) (FINAL, after it).
    assert run.rows(ts=[1, 2, 12]) == [
        (1, 0, 10, EARLY, 1),
        (1, 0, 10, EARLY, 2),
        (1, 10, 20, EARLY, 1),
        (1, 0, 10, FINAL, 2),
    ]


def test_two_partitions_slower_one_holds_the_watermark(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT, partition="part", partitions=2)
    # Partition 1 has seen nothing: the combined watermark stays at -infinity.
    assert run.rows(ts=[5, 25], part=[0, 0]) == []
    assert run.watermark is None
    # Partition 1 at 3: watermark min(25, 3) = 3; nothing ends by 4.
    assert run.rows(ts=[3], part=[1]) == []
    assert run.watermark == 3
    # Partition 1 at 12: watermark min(25, 12) = 12 >= 9: [0,10) closes with t=5 and t=3.
    assert run.rows(ts=[12], part=[1]) == [(1, 0, 10, FINAL, 2)]
    assert run.watermark == 12
    # Partition 1 at 30: watermark min(25, 30) = 25 -> [10,20) (t=12) closes.
    assert run.rows(ts=[30], part=[1]) == [(1, 10, 20, FINAL, 1)]
    assert run.watermark == 25
    assert run.flush() == [(1, 20, 30, FINAL, 1), (1, 30, 40, FINAL, 1)]


def test_idle_partition_stops_holding_the_watermark(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT, partition="part", partitions=2, idle_timeout=100)
    # Partition 1 never sends; its idleness is counted from the first processing time seen (0).
    assert run.rows(ts=[5], part=[0], now_ms=0) == []
    assert run.rows(ts=[15], part=[0], now_ms=50) == []
    assert run.watermark is None
    # At 100 it has been silent for exactly the timeout: not yet idle.
    assert run.tick(100) == []
    # At 101 it has been silent for longer: left out, the watermark is partition 0's, 15.
    assert run.tick(101) == [(1, 0, 10, FINAL, 1)]
    assert run.watermark == 15
    assert run.agg.idle_partitions == [1]
    # Its next event makes it active again; the watermark never moves back.
    rows, late = run.process(ts=[2], part=[1], now_ms=120)
    assert (rows, late) == ([], [0])  # [0,10) closed at 15: row 0 is late
    assert run.agg.idle_partitions == []
    assert run.watermark == 15


def test_advance_to_closes_windows_without_new_events(make: Callable[..., Run]) -> None:
    run = make(window=tumbling(10), aggregations=COUNT, out_of_orderness=100)
    # Watermark 14 - 100 = -86: nothing can close on these events alone.
    assert run.rows(ts=[3, 14]) == []
    assert run.advance_to(9) == [(1, 0, 10, FINAL, 1)]  # 9 >= 10 - 1
    assert run.advance_to(5) == []  # the watermark never moves backwards
    assert run.watermark == 9
    assert run.advance_to(18) == []  # [10,20) needs 19
    assert run.advance_to(19) == [(1, 10, 20, FINAL, 1)]
    assert run.flush() == []


@pytest.mark.parametrize(
    ("window", "delay", "cards", "ts", "expected"),
    [
        # Key 1 gets [-8,2) [-4,6) [0,10) at t=0, key 0 gets [-4,6) [0,10) at t=2 (whose watermark
        # closes key 1's [-8,2) in the process call, not shown). flush: end 6 then end 10, each
        # with key 0 before key 1 although key 1 got them first.
        (
            hopping(10, 4),
            0,
            [1, 0],
            [0, 2],
            [(0, -4, 6, FINAL, 1), (1, -4, 6, FINAL, 1), (0, 0, 10, FINAL, 1), (1, 0, 10, FINAL, 1)],
        ),
        # Watermarks -7, 5, 5: nothing closes before flush. Key 2 gets [0,10) and [10,20), then key 1
        # gets [10,20): end 20 lists key 1 first.
        (
            tumbling(10),
            10,
            [2, 2, 1],
            [3, 15, 12],
            [(2, 0, 10, FINAL, 1), (1, 10, 20, FINAL, 1), (2, 10, 20, FINAL, 1)],
        ),
        # Sessions (gap 5): key 1 gets [0,5) and [10,15), then key 0 gets [10,15).
        (
            session(5),
            20,
            [1, 1, 0],
            [0, 10, 10],
            [(1, 0, 5, FINAL, 1), (0, 10, 15, FINAL, 1), (1, 10, 15, FINAL, 1)],
        ),
    ],
    ids=["hopping", "tumbling", "session"],
)
def test_keys_sharing_an_end_fire_in_key_order(
    make: Callable[..., Run],
    window: Any,
    delay: int,
    cards: list[int],
    ts: list[int],
    expected: list[tuple[Any, ...]],
) -> None:
    """docs/semantics.md: rows released by a watermark advance come "in increasing window end,
    and for one end in increasing key"."""
    run = make(window=window, aggregations=COUNT, out_of_orderness=delay)
    run.rows(ts=ts, card=cards)
    assert run.flush() == expected


def test_count_distinct_is_exact_and_folds_zeros(make: Callable[..., Run]) -> None:
    run = make(
        window=tumbling(10),
        aggregations={
            "amounts": ("count_distinct", "amount"),
            "countries": ("count_distinct", "country"),
            "lo": ("min", "amount"),
            "hi": ("max", "amount"),
            "avg": ("mean", "amount"),
        },
    )
    # amounts {2.5, 0.0 (= -0.0), 1.0} -> 3; countries {1, 2} -> 2; mean (2.5+2.5+1)/5 = 1.2.
    run.rows(ts=[1, 2, 3, 4, 5], amount=[2.5, 0.0, -0.0, 2.5, 1.0], country=[1, 2, 1, 2, 2])
    assert run.flush() == [(1, 0, 10, FINAL, 3, 2, 0.0, 2.5, 1.2)]
