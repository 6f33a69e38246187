"""The fraud detector's cap on live cards (``max_cards``): one eviction order over all of its
state (card features, rule windows, cool-down), bounded state whatever the number of cards,
evictions counted, and the same evictions whatever the batch cuts, after a restore or a replay.

The oracle: a capped detector gives the outputs of an uncapped one over the same rows in which
each evicted card's later rows carry a new card number (a card that starts afresh), with the
evictions decided by a plain model of the documented order (the card whose latest transaction
is the oldest by the event clock, ties in arrival order; a card idle for the state horizon is
no longer live)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from handmade import habit_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.demo import generate_stream
from fraudstream.errors import SnapshotError
from fraudstream.fraud.detector import SCORE_COLUMNS, FraudDetector
from fraudstream.fraud.rules import default_rules

Columns = dict[str, np.ndarray[Any, Any]]

# ~2,000 cards with the story's incident, bursts and sprees (alerts from rules and the model)
STREAM = generate_stream(4_000, seed=11, disorder_ms=30_000, bursts=4, sprees=4).columns
N = len(STREAM["txn_id"])
GENERATION = 1_000_000_000_000
"""A relabelled card: card + generation * GENERATION (card numbers here stay far below it)."""


def detector(max_cards: int | None) -> FraudDetector:
    return FraudDetector(
        rules=default_rules(habit_column="CUSTOMER_ID_AMOUNT_RATIO", horizons=True),
        model=habit_model(),
        cooldown="1h",
        wall_clock_time=False,
        max_cards=max_cards,
    )


def run(det: FraudDetector, cols: Columns, cuts: list[int]) -> tuple[list[Any], Columns]:
    """(card, rule, txn, event time) of the alerts, and the score columns, over ``cols`` cut at
    ``cuts``."""
    points = sorted({c for c in cuts if 0 < c < N})
    alerts: list[Any] = []
    scores: list[Columns] = []
    for lo, hi in zip([0, *points], [*points, N], strict=True):
        out = det.process({k: v[lo:hi] for k, v in cols.items()})
        alerts += [(a.card_id % GENERATION, a.rule, a.trigger_txn_id, a.event_time) for a in out.alerts]
        assert out.scores is not None
        scores.append({**out.scores, "card_id": out.scores["card_id"] % GENERATION})
    det.flush()
    return alerts, {k: np.concatenate([s[k] for s in scores]) for k in SCORE_COLUMNS if k != "row"}


def evictions(max_cards: int, horizon: int) -> tuple[list[tuple[int, int]], np.ndarray[Any, Any]]:
    """The plain model: (row, card) of each eviction, and the card column relabelled."""
    cards = STREAM["card_id"].tolist()
    clock = np.maximum.accumulate(STREAM["event_time"]).tolist()
    live: dict[int, tuple[int, int]] = {}  # card -> (event clock, row) of its latest transaction
    generation: dict[int, int] = {}
    out: list[tuple[int, int]] = []
    relabelled = np.empty(N, np.int64)
    for row, (card, now) in enumerate(zip(cards, clock, strict=True)):
        live = {c: v for c, v in live.items() if v[0] > now - horizon}
        if card not in live and len(live) >= max_cards:
            victim = min(live, key=lambda c: live[c])
            del live[victim]
            generation[victim] = generation.get(victim, 0) + 1
            out.append((row, victim))
        live[card] = (now, row)
        relabelled[row] = card + generation.get(card, 0) * GENERATION
    return out, relabelled


def same(a: tuple[list[Any], Columns], b: tuple[list[Any], Columns]) -> None:
    assert a[0] == b[0]
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=k)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_cards=st.sampled_from([1, 7, 60, 400]), cuts=st.lists(st.integers(0, N), max_size=20))
def test_a_capped_detector_is_the_uncapped_one_with_evicted_cards_started_afresh(
    max_cards: int, cuts: list[int]
) -> None:
    capped = detector(max_cards)
    got = run(capped, STREAM, cuts)
    want_evictions, relabelled = evictions(max_cards, capped.card_horizon)
    want = run(detector(None), {**STREAM, "card_id": relabelled}, [])
    same(got, want)
    assert capped.counters()["evicted"] == capped.metrics()["evicted"] == len(want_evictions) > 0


def test_the_oracle_sees_alerts_and_evictions_that_change_outputs() -> None:
    """The property above compares runs that differ: at 60 cards the capped detector's alerts
    are not the uncapped one's (evicted histories), and both raise alerts."""
    capped, plain = run(detector(60), STREAM, []), run(detector(None), STREAM, [])
    assert capped[0] and plain[0] and capped[0] != plain[0]


def test_many_cards_leave_the_state_bounded_and_counted() -> None:
    det = detector(100)
    keys = []
    for lo in range(0, N, 500):
        det.process({k: v[lo : lo + 500] for k, v in STREAM.items()})
        keys.append(det.state_size()["keys"])
    cards = len(np.unique(STREAM["card_id"]))
    assert cards > 1_000 and max(keys) <= 100, keys
    assert det.counters()["evicted"] >= cards - 100
    unbounded = detector(None)
    unbounded.process(STREAM)
    assert unbounded.state_size()["keys"] > 1_000 and unbounded.counters()["evicted"] == 0
    assert unbounded.state_size()["bytes"] > 2 * det.state_size()["bytes"]  # (terminals are not capped)


def rows(lo: int, hi: int) -> Columns:
    return {k: v[lo:hi] for k, v in STREAM.items()}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(1, N - 1))
def test_a_restore_or_a_replay_evicts_the_same_cards(at: int) -> None:
    whole = detector(60)
    whole.process(rows(0, at))
    want = [a.identity() for a in whole.process(rows(at, N)).alerts]
    first = detector(60)
    first.process(rows(0, at))
    snapshot = first.snapshot()
    first.changes()  # what the changelog writer does: the snapshot includes them
    first.process(rows(at, N))
    # a restore, then the rest of the rows
    second = detector(60)
    second.restore(snapshot)
    assert [a.identity() for a in second.process(rows(at, N)).alerts] == want
    # a replay of the changes after the snapshot
    third = detector(60)
    third.restore(snapshot)
    third.apply_changes(first.changes())
    assert third.snapshot() == second.snapshot() == first.snapshot() == whole.snapshot()
    assert third.counters() == second.counters() == whole.counters()
    assert whole.counters()["evicted"] > 0


def test_a_cap_set_on_a_running_detector_takes_its_state_and_applies_from_then_on() -> None:
    """A deployment whose changelog was written without a cap restores into a capped detector
    (the default of ``fraudstream run``): the cards held are its live cards, by their latest
    transaction; the cap then holds. A capped state does not go back to an uncapped detector."""
    plain = detector(None)
    plain.process(rows(0, 2_000))
    held = plain.state_size()["keys"]
    capped = detector(60)
    capped.restore(plain.snapshot())
    assert capped.state_size()["keys"] == held > 60 and capped.counters()["evicted"] == 0
    capped.process(rows(2_000, N))
    assert capped.state_size()["keys"] <= 60 and capped.counters()["evicted"] > held - 60
    again = detector(60)
    again.restore(plain.snapshot())
    again.process(rows(2_000, N))
    assert again.snapshot() == capped.snapshot(), "the same cards evicted after the same restore"
    with pytest.raises(SnapshotError):
        detector(None).restore(capped.snapshot())


def test_an_evicted_card_starts_afresh_in_the_cool_down_too() -> None:
    """Card 1 alerts, card 2 evicts it (a cap of one card), card 1 alerts again within the
    cool-down: kept, as for a card never seen; without the cap the cool-down suppresses it."""
    batch = {
        "txn_id": np.array([1, 2, 3]),
        "card_id": np.array([1, 2, 1]),
        "terminal_id": np.array([5, 6, 5]),
        "amount": np.array([1e6, 10.0, 1e6]),  # the model fires on a huge amount
        "country": np.array([0, 0, 0]),
        "event_time": 1_700_000_000_000 + np.array([0, 1_000, 2_000]),
    }
    for cap, alerts, suppressed in ((1, [1, 3], 0), (None, [1], 1)):
        det = detector(cap)
        out = det.process(batch)
        assert [a.trigger_txn_id for a in out.alerts] == alerts, cap
        assert out.suppressed == suppressed
    forgetful = detector(1)
    for row in range(3):  # one row per call: the same
        out = forgetful.process({k: v[row : row + 1] for k, v in batch.items()})
        assert len(out.alerts) == (row != 1)
