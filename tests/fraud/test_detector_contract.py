"""The fraud detector and the rule set under the processor contract.

What the exactly-once Kafka pipeline relies on: outputs (alerts, scores, decisions) and state
are a function of the arrival-ordered input, never of how it is cut into batches; a snapshot
plus the changes after it rebuilds the state exactly; one alert per card per incident across
rules, feature rules and the model; a bad batch changes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from handmade import habit_model
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fraudstream.alerts import Alert, Cooldown
from fraudstream.demo import generate_stream
from fraudstream.errors import InvalidBatchError, SnapshotError
from fraudstream.fraud.detector import SCORE_COLUMNS, FraudDetector
from fraudstream.fraud.features import StreamingFeatures
from fraudstream.fraud.model import default_model
from fraudstream.fraud.rules import RuleSet, default_rules
from fraudstream.processor import ALERT, FLAGGED, PASS, Processor

Columns = dict[str, np.ndarray[Any, Any]]

# a disordered stream (30 s) with the story's incident, fast bursts and spend sprees
STREAM = generate_stream(4_000, seed=5, disorder_ms=30_000, bursts=3, sprees=3)
N = len(STREAM)
HOUR, DAY = 3_600_000, 86_400_000
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


MODEL = habit_model()


def detector(**kw: Any) -> FraudDetector:
    kw.setdefault("rules", default_rules(habit_column="CUSTOMER_ID_AMOUNT_RATIO", horizons=True))
    kw.setdefault("model", MODEL)
    kw.setdefault("cooldown", "1h")
    return FraudDetector(**kw)


def bounds(cuts: list[int], n: int = N) -> list[tuple[int, int]]:
    points = sorted(set(cuts) - {0, n})
    return list(zip([0, *points], [*points, n], strict=True))


def part(lo: int, hi: int, cols: Columns | None = None) -> Columns:
    return {k: v[lo:hi] for k, v in (cols or STREAM.columns).items()}


def run(det: Any, spans: list[tuple[int, int]], cols: Columns | None = None) -> tuple[list[Any], Columns]:
    """Alerts (identity) and the concatenated score columns of processing ``spans``."""
    alerts: list[Any] = []
    scores: list[Columns] = []
    for lo, hi in spans:
        out = det.process(part(lo, hi, cols))
        alerts += [a.identity() for a in out.alerts]
        if out.scores is not None:
            scores.append({**out.scores, "row": out.scores["row"] + lo})
    alerts += [a.identity() for a in det.flush().alerts]
    joined = {k: np.concatenate([s[k] for s in scores]) for k in SCORE_COLUMNS} if scores else {}
    return alerts, joined


def same_scores(a: Columns, b: Columns) -> None:
    assert set(a) == set(b) == set(SCORE_COLUMNS)
    for k in SCORE_COLUMNS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


REFERENCE = run(detector(), [(0, N)])


def test_the_reference_run_exercises_every_source_and_the_cooldown() -> None:
    alerts, scores = REFERENCE
    rules = {a[1] for a in alerts}
    assert "model" in rules and "spread_6h" in rules, rules
    assert scores["row"].tolist() == list(range(N)), "one score row per transaction, in order"
    assert scores["score"].dtype == np.float64 and scores["decision"].dtype == np.int8
    decisions = np.bincount(scores["decision"], minlength=3)
    assert decisions[ALERT] == len(alerts) and decisions[FLAGGED] > 0 and decisions[PASS] > 0
    d = detector()
    run(d, [(0, N)])
    m = d.metrics()
    assert m["clamped"] > 0 and m["suppressed"] > 0 and m["alerts"] == len(alerts)
    assert sum(m["alerts_by_rule"].values()) == len(alerts)
    assert isinstance(d, Processor) and isinstance(RuleSet(), Processor)


# -- (a) batch independence --------------------------------------------------------------


@SLOW
@given(st.lists(st.integers(0, N), max_size=40))
def test_batch_cuts_change_no_alert_score_or_state(cuts: list[int]) -> None:
    det = detector()
    alerts, scores = run(det, bounds(cuts))
    assert alerts == REFERENCE[0]
    same_scores(scores, REFERENCE[1])
    whole = detector()
    run(whole, [(0, N)])
    assert det.snapshot() == whole.snapshot()


def test_the_default_detector_keeps_the_contract() -> None:
    """The shipped model reads the derived columns (per-row numpy over the streaming features):
    alerts, scores and state bytes still depend on the rows only, and a snapshot plus the
    changes since rebuilds the state exactly."""

    def default() -> FraudDetector:
        return FraudDetector(model=default_model(), cooldown="1h")

    reference = run(default(), [(0, N)])
    assert reference[1]["score"].min() >= 0.0 and reference[0], "the model alerts on the injected fraud"
    for cuts in (list(range(0, N, 333)), [1, 2, 3, 700, 2_222, N - 1]):
        det = default()
        alerts, scores = run(det, bounds(cuts))
        assert alerts == reference[0]
        same_scores(scores, reference[1])
    first, second = default(), default()
    first.process(part(0, 1_500))
    second.restore(first.snapshot())
    first.changes()
    first.process(part(1_500, 2_600))
    first.process(part(2_600, 3_100))
    second.apply_changes(first.changes())
    assert second.snapshot() == first.snapshot()
    a1, a2 = first.process(part(3_100, N)), second.process(part(3_100, N))
    assert [a.identity() for a in a1.alerts] == [a.identity() for a in a2.alerts]
    assert a1.scores is not None and a2.scores is not None
    same_scores(a1.scores, a2.scores)


def test_features_that_expire_keep_outputs_independent_of_cuts() -> None:
    """With one-minute feature windows the feature engine frees expired cards and terminals
    while running; features, alerts and scores still never depend on the cuts."""
    small = StreamingFeatures(customer_windows=("1m",), terminal_windows=("1m",), label_delay="1m")
    runs = [
        run(detector(features=small), bounds(cuts))
        for cuts in ([], list(range(0, N, 7)), [1, 2, 3, 500, 2_222, N - 1])
    ]
    for alerts, scores in runs[1:]:
        assert alerts == runs[0][0]
        same_scores(scores, runs[0][1])


def test_feature_snapshot_bytes_once_state_expires() -> None:
    """The feature engine frees expired cards and terminals by a sweep per batch, but its
    snapshot writes the keys live at its time in key order: the bytes depend on the rows only."""
    small = StreamingFeatures(customer_windows=("1m",), terminal_windows=("1m",), label_delay="1m")
    a, b = detector(features=small), detector(features=small)
    run(a, [(0, N)])
    run(b, bounds(list(range(0, N, 7))))
    assert a.features.state_size() != b.features.state_size(), "the sweeps freed different keys"
    assert a.snapshot() == b.snapshot()


# -- (b) snapshot, changes, restore -----------------------------------------------------


@SLOW
@given(
    st.lists(st.integers(1, N - 1), min_size=4, max_size=30, unique=True),
    st.data(),
)
def test_snapshot_then_changes_rebuild_the_state_exactly(cuts: list[int], data: st.DataObject) -> None:
    spans = bounds(cuts)
    at_snapshot = data.draw(st.integers(0, len(spans) - 2), "snapshot after")
    at_changes = data.draw(st.integers(at_snapshot, len(spans) - 1), "changes after")
    idle = data.draw(st.sets(st.integers(0, len(spans) - 1), max_size=4), "advance after")

    def step(det: FraudDetector, i: int) -> tuple[list[Any], Columns | None]:
        lo, hi = spans[i]
        out = det.process(part(lo, hi))
        if i in idle:  # idle time: an hour past the newest event (a wall clock, as in production)
            det.advance(int(STREAM.columns["event_time"][:hi].max()) + HOUR)
        return [a.identity() for a in out.alerts], out.scores

    first = detector()
    for i in range(at_snapshot + 1):
        step(first, i)
    snapshot = first.snapshot()
    first.changes()  # what the changelog writer does: the snapshot includes them
    changes = []
    for i in range(at_snapshot + 1, at_changes + 1):
        step(first, i)
        if i % 2:
            changes.append(first.changes())
    changes.append(first.changes())

    second = detector()
    second.restore(snapshot)
    for c in changes:
        second.apply_changes(c)
    assert second.snapshot() == first.snapshot()
    assert second.metrics() == first.metrics()
    for i in range(at_changes + 1, len(spans)):
        (a1, s1), (a2, s2) = step(first, i), step(second, i)
        assert a1 == a2
        assert s1 is not None and s2 is not None
        same_scores(s1, s2)
    first.flush()
    second.flush()
    assert second.snapshot() == first.snapshot()


def test_restore_refuses_state_of_other_rules_or_garbage() -> None:
    det = detector()
    det.process(part(0, 500))
    state = det.snapshot()
    with pytest.raises(SnapshotError, match="other rules"):
        detector(rules=default_rules()).restore(state)
    with pytest.raises(SnapshotError):
        detector().restore(b"not a snapshot at all")
    with pytest.raises(SnapshotError):
        detector().restore(state[: len(state) // 2])
    other_model = detector(model=None, cooldown="2h")  # a new model or cool-down may take over
    other_model.restore(state)
    assert other_model.metrics()["events"] == 500


def test_only_advances_that_move_the_watermark_are_logged() -> None:
    det = detector()
    det.process(part(0, 300))
    det.changes()
    top = int(STREAM.columns["event_time"][:300].max())
    det.advance(top)  # behind the watermark already: nothing to do
    assert det.changes() == b""
    det.advance(top + DAY)
    logged = det.changes()
    assert logged != b""
    replayed = detector()
    replayed.process(part(0, 300))
    replayed.apply_changes(logged)
    assert replayed.snapshot() == det.snapshot()
    assert replayed.metrics()["watermark"] == top + DAY - 5_000


# -- (c) one alert per card per incident ------------------------------------------------


def incident(card: int, t0: int, big_from: int) -> Columns:
    """A card's quiet history, then 10 transactions in 4 countries within 4.5 minutes, the
    ones from ``big_from`` on at 20 times its usual amount."""
    history = t0 - 10 * HOUR + np.arange(6) * HOUR
    burst = t0 + np.arange(10) * 30_000
    amount = np.r_[np.full(6, 20.0), np.where(np.arange(10) >= big_from, 400.0, 20.0)]
    return {
        "txn_id": card * 100 + np.arange(16),
        "card_id": np.full(16, card),
        "terminal_id": np.arange(16) + 1_000,
        "amount": amount,
        "country": np.r_[np.full(6, 1), np.array([1, 2, 3, 4, 1, 2, 3, 4, 1, 2])],
        "event_time": np.r_[history, burst],
    }


def test_one_alert_per_card_per_incident_across_rules_and_model() -> None:
    t0 = 1_700_000_000_000
    det = detector(cooldown="24h")
    out = det.process(incident(7, t0, big_from=4))
    # the fifth burst transaction (row 10) makes velocity_5m fire and is the first big amount,
    # so the spend_vs_habit rules and the model fire on it too: rules come first
    assert [(a.card_id, a.rule, a.trigger_row) for a in out.alerts] == [(7, "velocity_5m", 10)]
    assert out.scores is not None
    decisions = out.scores["decision"]
    assert decisions[10] == ALERT and (decisions[:10] == PASS).all()
    assert decisions[11] == FLAGGED, "the model again, held back"
    assert decisions[13] == FLAGGED, "burst_1h: 8 transactions in 4 countries"
    assert out.suppressed >= 6, "3 spend rules and the model on row 10, the model on 11, burst_1h"
    m = det.metrics()
    assert m["suppressed"] == out.suppressed and m["alerts_by_rule"] == {"velocity_5m": 1}

    # a big amount before any rule can fire: the model's alert is the one
    det2 = detector(rules=default_rules(), cooldown="24h")
    out2 = det2.process(incident(8, t0, big_from=1))
    assert [(a.rule, a.trigger_row) for a in out2.alerts] == [("model", 7)]
    a = out2.alerts[0]
    assert a.score is not None and a.score >= MODEL.threshold and a.model_version == MODEL.version
    assert a.reasons[0].startswith("fraud score ") and len(a.reasons) > 1
    assert out2.scores is not None and out2.scores["score"][7] == a.score

    # a second incident an hour later is the same incident; two days later a new one
    again = {**incident(8, t0 + HOUR, big_from=0), "txn_id": 9_000 + np.arange(16)}
    out3 = det2.process(again)
    assert out3.alerts == [] and out3.suppressed > 0
    later = {**incident(8, t0 + 2 * DAY, big_from=0), "txn_id": 9_100 + np.arange(16)}
    assert [a.card_id for a in det2.process(later).alerts] == [8]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 30_000)), min_size=1, max_size=300),
    st.lists(st.integers(0, 300), max_size=10),
)
@example(candidates=[(50, 100), (3, 200)], cuts=[1])  # a new card below a known one
@example(candidates=[(2, 30_000), (1, 1_000), (1, 1_500)], cuts=[2])  # pruned, then a very late one
def test_the_cooldown_depends_only_on_the_candidates_given(
    candidates: list[tuple[int, int]], cuts: list[int]
) -> None:
    cards = np.array([c for c, _ in candidates], np.int64)
    times = np.array([t for _, t in candidates], np.int64)
    whole = Cooldown(5_000)
    keep = whole.decide(cards, times)
    split = Cooldown(5_000)
    parts = []
    for lo, hi in bounds(cuts, len(cards)):
        split.prune_above(0)  # prune after every call: pruning must change no decision, no byte
        parts.append(split.decide(cards[lo:hi], times[lo:hi]))
    np.testing.assert_array_equal(np.concatenate(parts), keep)
    assert split.snapshot() == whole.snapshot() and split.suppressed == whole.suppressed


# -- (d) a bad batch changes nothing ----------------------------------------------------


def test_a_bad_batch_changes_nothing() -> None:
    det = detector()
    det.process(part(0, 1_000))
    det.changes()
    before = det.snapshot()
    bad = part(1_000, 1_200)
    amounts = bad["amount"].copy()
    amounts[150] = np.nan
    far = bad["event_time"].copy()
    far[:] += 30 * DAY  # would move the event clock, were the batch accepted
    with pytest.raises(InvalidBatchError, match="column 'amount' row 150"):
        det.process({**bad, "amount": amounts, "event_time": far})
    with pytest.raises(InvalidBatchError, match="missing column 'country'"):
        det.process({k: v for k, v in bad.items() if k != "country"})
    with pytest.raises(InvalidBatchError, match="column 'card_id' has 199 rows, expected 200"):
        det.process({**bad, "card_id": bad["card_id"][:-1]})
    assert det.snapshot() == before and det.changes() == b""
    straight = detector()
    straight.process(part(0, 1_000))
    alerts, scores = run(det, [(1_000, N)])
    want_alerts, want_scores = run(straight, [(1_000, N)])
    assert alerts == want_alerts
    same_scores(scores, want_scores)
    assert det.snapshot() == straight.snapshot()


# -- (e) the rule set -------------------------------------------------------------------

RULE_COLS = {
    "txn_id": STREAM.columns["txn_id"],
    "card": STREAM.columns["card_id"],
    "ts": STREAM.columns["event_time"],
    "amount": STREAM.columns["amount"],
    "country": STREAM.columns["country"],
}


def rule_set() -> RuleSet:
    return RuleSet(default_rules(horizons=True), cooldown="1h")


@SLOW
@given(st.lists(st.integers(1, N - 1), min_size=3, max_size=30, unique=True), st.data())
def test_rule_set_round_trip(cuts: list[int], data: st.DataObject) -> None:
    spans = bounds(cuts)
    k = data.draw(st.integers(0, len(spans) - 2), "snapshot after")
    m = data.draw(st.integers(k, len(spans) - 1), "changes after")

    whole = rule_set()
    reference = [a.identity() for a in whole.process(RULE_COLS).alerts]
    assert reference, "the stream's incidents fire rules"

    first = rule_set()
    alerts: list[Alert] = []
    for lo, hi in spans[: k + 1]:
        alerts += first.process(part(lo, hi, RULE_COLS)).alerts
    snapshot = first.snapshot()
    first.changes()
    for lo, hi in spans[k + 1 : m + 1]:
        alerts += first.process(part(lo, hi, RULE_COLS)).alerts
    changes = first.changes()

    second = rule_set()
    second.restore(snapshot)
    second.apply_changes(changes)
    assert second.snapshot() == first.snapshot()
    for lo, hi in spans[m + 1 :]:
        a, b = first.process(part(lo, hi, RULE_COLS)), second.process(part(lo, hi, RULE_COLS))
        assert [x.identity() for x in a.alerts] == [x.identity() for x in b.alerts]
        assert a.suppressed == b.suppressed
        alerts += a.alerts
    assert [a.identity() for a in alerts] == reference, "cuts change no alert"
    assert first.snapshot() == second.snapshot() == whole.snapshot(), "nor a byte of state"


def test_rule_set_refuses_bad_batches_and_other_states() -> None:
    rules = rule_set()
    rules.process(part(0, 500, RULE_COLS))
    before = rules.snapshot()
    bad = part(500, 600, RULE_COLS)
    amounts = bad["amount"].copy()
    amounts[3] = np.inf
    with pytest.raises(InvalidBatchError, match="column 'amount' row 3"):
        rules.process({**bad, "amount": amounts})
    assert rules.snapshot() == before
    with pytest.raises(SnapshotError, match="other rules"):
        RuleSet(default_rules(horizons=True)[:2]).restore(before)
    with pytest.raises(SnapshotError, match="other rules"):
        RuleSet(default_rules(horizons=True), cooldown="2h").restore(before)
    quiet = RuleSet(default_rules(horizons=True), track_changes=False)
    with pytest.raises(SnapshotError, match="does not track changes"):
        quiet.changes()
    rules.advance(int(RULE_COLS["ts"][:500].max()) + DAY)
    assert rules.watermark == int(RULE_COLS["ts"][:500].max()) + DAY - 5_000
    assert rules.flush().alerts == []
