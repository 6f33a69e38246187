"""A cap on live keys (``max_keys``) for every window type: state stays bounded, evictions
follow the documented order (the key whose latest event is the oldest, by its newest pane),
are counted, and a restored aggregation evicts exactly what the original would have."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream import WindowedAggregation, hopping, session, tumbling

WINDOWS = [tumbling(100), hopping(100, 25), session(50)]


def capped(window: Any, cap: int | None, partitions: int = 1) -> WindowedAggregation:
    return WindowedAggregation(
        key="card",
        time="ts",
        window=window,
        aggregations={"n": "count", "total": ("sum", "amount")},
        out_of_orderness=30,
        partition="p" if partitions > 1 else None,
        partitions=partitions,
        max_keys=cap,
    )


def batch(keys: list[int], times: list[int], partitions: int = 1) -> dict[str, Any]:
    n = len(keys)
    cols: dict[str, Any] = {
        "card": np.asarray(keys, np.int64),
        "ts": np.asarray(times, np.int64),
        "amount": np.arange(n, dtype=np.float64) / 4,
    }
    if partitions > 1:
        cols["p"] = np.arange(n, dtype=np.int64) % partitions
    return cols


ROW = ("key", "window_start", "window_end", "kind", "n", "total")


def rows(out: Any) -> list[tuple[Any, ...]]:
    return list(zip(*(out[c].tolist() for c in ROW), strict=True))


def test_many_keys_under_a_cap_keep_the_state_bounded_for_every_window_type() -> None:
    for window in WINDOWS:
        for partitions in (1, 2):
            agg = capped(window, 50, partitions)
            # 5,000 keys, each seen once, in time order: at most 50 live at any time
            keys = list(range(5_000))
            times = [k // 10 for k in keys]
            for lo in range(0, 5_000, 700):
                agg.process(batch(keys[lo : lo + 700], times[lo : lo + 700], partitions))
                assert agg.state_size()["keys"] <= 50, (window, partitions)
            evicted = agg.counters()["evicted"]
            closed_by_time = 5_000 - 50 - evicted
            assert evicted > 4_000 and closed_by_time >= 0, (window, evicted)
            unbounded = capped(window, None, partitions)
            unbounded.process(batch(keys, times, partitions))
            assert unbounded.state_size()["keys"] > 50


@settings(max_examples=150, deadline=None)
@given(
    window=st.sampled_from(WINDOWS),
    cap=st.integers(1, 4),
    events=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 400)), max_size=80),
    cut=st.integers(0, 80),
    partitions=st.sampled_from([1, 2]),
)
def test_a_restored_capped_aggregation_evicts_what_the_original_would_have(
    window: Any, cap: int, events: list[tuple[int, int]], cut: int, partitions: int
) -> None:
    keys, times = [e[0] for e in events], [e[1] for e in events]
    cut = min(cut, len(keys))
    whole = capped(window, cap, partitions)
    whole.process(batch(keys[:cut], times[:cut], partitions))
    state, counted = whole.snapshot(), whole.counters()
    rest = batch(keys, times, partitions)
    rest = {c: v[cut:] for c, v in rest.items()}
    want = rows(whole.process(rest)) + rows(whole.flush())
    again = capped(window, cap, partitions)
    again.restore(state)
    assert again.counters() == counted, "evictions are part of the state"
    got = rows(again.process(rest)) + rows(again.flush())
    assert got == want
    assert again.counters() == whole.counters()


def test_a_dropped_key_starts_afresh_at_its_row_without_a_row_or_an_eviction() -> None:
    """``drop=(rows, keys)``: the caller's eviction (the fraud detector's card cap)."""
    for window in WINDOWS:
        cols = batch([1, 2, 1, 1], [0, 5, 10, 15])
        agg = capped(window, None)
        out = agg.process(cols, drop=(np.array([2]), np.array([1])))
        rows_after = rows(out) + rows(agg.flush())
        renamed = capped(window, None)
        # (renamed 0: rows of one window come in key order, and 0 sorts before 2 as 1 does)
        want = rows(renamed.process({**cols, "card": np.array([1, 2, 0, 0])})) + rows(renamed.flush())
        # key 1's first event is gone without a row; its later events are a key of their own
        assert rows_after == [(1 if r[0] == 0 else r[0], *r[1:]) for r in want if r[0] != 1], window
        assert agg.counters()["evicted"] == 0
