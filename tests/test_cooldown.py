"""The cool-down (fraudstream.alerts.Cooldown, decided in Rust) against the plain Python it
was: a per-candidate walk over a dict, obviously what its docstring says."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fraudstream.alerts import Cooldown
from fraudstream.errors import SnapshotError


class OracleCooldown:
    """The cool-down's contract, candidate by candidate (no grouping, no pruning)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.last: dict[int, int] = {}
        self.newest: int | None = None
        self.suppressed = 0

    def decide(self, cards: list[int], times: list[int]) -> list[bool]:
        keep = []
        for card, t in zip(cards, times, strict=True):
            self.newest = t if self.newest is None else max(self.newest, t)
            if self.period == 0:
                keep.append(True)
                continue
            last = self.last.get(card)
            live = last is not None and last >= self.newest - 2 * self.period
            if live and abs(t - last) < self.period:  # type: ignore[operator]
                self.suppressed += 1
                keep.append(False)
                continue
            self.last[card] = max(last, t) if live else t  # type: ignore[type-var]
            keep.append(True)
        return keep

    def forget(self, card: int) -> None:
        self.last.pop(card, None)

    def snapshot(self) -> bytes:
        """Live entries by card, after the header (magic, newest, suppressed, count)."""
        horizon = None if self.newest is None or not self.period else self.newest - 2 * self.period
        live = sorted((c, t) for c, t in self.last.items() if horizon is None or t >= horizon)
        newest = -(2**63) if self.newest is None else self.newest
        head = struct.pack("<4sqQQ", b"FSCD", newest, self.suppressed, len(live))
        return (
            head
            + b"".join(struct.pack("<q", c) for c, _ in live)
            + b"".join(struct.pack("<q", t) for _, t in live)
        )


candidates_st = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 40_000)), max_size=250)


@settings(max_examples=150, deadline=None)
@given(
    candidates_st,
    st.lists(st.integers(0, 250), max_size=8),
    st.sampled_from([0, 1, 3_000, 10_000]),
    st.booleans(),
)
@example(candidates=[(2, 30_000), (1, 1_000), (1, 1_500)], cuts=[2], period=5_000, prune=True)
def test_the_cool_down_decides_and_writes_what_the_oracle_does(
    candidates: list[tuple[int, int]], cuts: list[int], period: int, prune: bool
) -> None:
    cards = [c for c, _ in candidates]
    times = [t for _, t in candidates]
    oracle, cooldown = OracleCooldown(period), Cooldown(period)
    bounds = [0, *sorted({min(c, len(cards)) for c in cuts}), len(cards)]
    for lo, hi in itertools.pairwise(bounds):
        if prune:
            cooldown.prune_above(0)  # prune after every call: pruning must change no decision, no byte
        got = cooldown.decide(np.array(cards[lo:hi], np.int64), np.array(times[lo:hi], np.int64))
        assert got.tolist() == oracle.decide(cards[lo:hi], times[lo:hi])
    assert cooldown.snapshot() == oracle.snapshot()
    assert cooldown.suppressed == oracle.suppressed
    restored = Cooldown(period)
    restored.restore(cooldown.snapshot())
    assert restored.snapshot() == cooldown.snapshot()


@settings(max_examples=80, deadline=None)
@given(candidates_st, st.lists(st.tuples(st.integers(0, 250), st.integers(0, 12)), max_size=6))
def test_a_forgotten_card_starts_afresh_before_the_rows_given(
    candidates: list[tuple[int, int]], forgets: list[tuple[int, int]]
) -> None:
    cards = np.array([c for c, _ in candidates], np.int64)
    times = np.array([t for _, t in candidates], np.int64)
    rows = np.arange(len(cards), dtype=np.int64)
    forgets.sort()
    at = np.array([r for r, _ in forgets], np.int64)
    gone = np.array([c for _, c in forgets], np.int64)
    oracle = OracleCooldown(5_000)
    want: list[bool] = []
    lo = 0
    for r, card in forgets:
        hi = min(r, len(cards))
        if hi > lo:
            want += oracle.decide(cards[lo:hi].tolist(), times[lo:hi].tolist())
            lo = hi
        oracle.forget(card)
    want += oracle.decide(cards[lo:].tolist(), times[lo:].tolist())
    cooldown = Cooldown(5_000)
    got = cooldown.decide(cards, times, rows=rows, forget=(at, gone))
    assert got.tolist() == want
    assert cooldown.snapshot() == oracle.snapshot()


def test_bad_cool_down_input_is_refused() -> None:
    with pytest.raises(ValueError, match="cool-down must be >= 0 ms"):
        Cooldown(-1)
    c = Cooldown(10)
    with pytest.raises(SnapshotError, match="not a cool-down snapshot"):
        c.restore(b"XXXX" + bytes(24))
    with pytest.raises(SnapshotError, match="truncated"):
        c.restore(b"FSCD")
