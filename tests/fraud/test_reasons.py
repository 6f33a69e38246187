"""Model alert explanations: many rows explained together equal each row explained alone, by
the definitions written out plainly here (one row, one input at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.fraud.model import Model, default_model
from fraudstream.fraud.reasons import describe, explain, explain_rows, raw_value, reasons
from tests.toy_models import foreign_young_model


def _features(model: Model, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.gamma(2.0, 3.0, n) * rng.integers(0, 2, n) for i in model.inputs}


def _oracle(model: Model, feats: dict[str, np.ndarray], row: int, top: int) -> list[tuple[str, float]]:
    """One input at a time: its weight in a logistic regression, or how much the score drops
    when that input alone is set to its training mean (as a raw value) for trees."""
    raw = [float(feats[i.name][row]) for i in model.inputs]
    parts = []
    for i, inp in enumerate(model.inputs):
        if model.kind == "logistic_regression":
            z = (float(inp.apply(np.array([raw[i]]))[0]) - model.mean[i]) / model.scale[i]
            weight = float(model.params["coef"][i]) * z
        else:
            changed = list(raw)
            changed[i] = raw_value(inp, model.mean[i])
            both = model.score_matrix(np.array([raw, changed], np.float64))
            weight = float(both[0] - both[1])
        if math.isfinite(weight) and weight > 0:
            parts.append((inp.name, weight))
    parts.sort(key=lambda p: -p[1])
    return parts[:top]


@pytest.mark.parametrize("make", [default_model, foreign_young_model], ids=["trees", "logistic"])
def test_rows_explained_together_are_each_row_explained_alone(make) -> None:
    model = make()
    feats = _features(model, 200, seed=7)
    rows = np.array([3, 0, 199, 57, 57, 120], np.int64)  # any order, repeats allowed
    together = explain_rows(model, feats, rows, top=3)
    assert len(together) == len(rows)
    for row, got in zip(rows.tolist(), together, strict=True):
        want = _oracle(model, feats, row, 3)
        assert [name for name, _ in got] == [name for name, _ in want]
        assert [w for _, w in got] == pytest.approx([w for _, w in want], rel=1e-9, abs=1e-12)
        assert explain(model, feats, row) == got
    assert any(together), "the features must give some row a positive reason"
    assert explain_rows(model, feats, np.empty(0, np.int64)) == []


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("CUSTOMER_ID_AMOUNT_RATIO", 8.14, "amount 8.1x the card's usual"),
        ("CUSTOMER_ID_AMOUNT_RATIO", 0.45, "amount 45% of the card's usual"),
        ("CARD_AMOUNT_VS_HABIT", math.log(0.0125), "amount 1/80 of the card's habit"),
        ("CARD_SPEND_6HOUR_VS_HABIT", math.log1p(0.002), "1/500 of the card's usual amount spent in 6 h"),
        ("CARD_SPEND_6HOUR_VS_HABIT", 0.0, "none of the card's usual amount spent in 6 h"),
    ],
)
def test_ratios_read_as_an_analyst_reads_them(name: str, value: float, words: str) -> None:
    """A tiny amount (card testing) is a fraction, not "0.0x"."""
    assert describe(name, value) == words


def _row(**values: float) -> dict[str, float]:
    """A feature row: a card with an earlier transaction in every window unless told."""
    row = {f"CUSTOMER_ID_NB_TX_{w}_WINDOW": 5.0 for w in ("1HOUR", "6HOUR", "1DAY", "7DAY", "30DAY")}
    row |= {"TX_AMOUNT": 10.0, "CARD_HAS_HISTORY": 1.0, "CARD_HISTORY_NB_TX": 4.0}
    row.update(values)
    return row


def _ranked(*names: str) -> list[tuple[str, float]]:
    return [(name, 1.0 - i / 100) for i, name in enumerate(names)]


def test_one_figure_over_several_windows_reads_once_and_frees_its_place() -> None:
    row = _row(
        CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW=1.89,
        CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW=1.89,
        CUSTOMER_ID_NB_TX_1HOUR_WINDOW=2.0,
        CUSTOMER_ID_NB_TX_6HOUR_WINDOW=2.0,
        TX_AMOUNT=0.16,
        CUSTOMER_ID_NB_COUNTRIES_6HOUR_WINDOW=3.0,
        CUSTOMER_ID_NB_COUNTRIES_1HOUR_WINDOW=3.0,
    )
    ranked = _ranked(
        "CUSTOMER_ID_NB_COUNTRIES_6HOUR_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW",
        "CUSTOMER_ID_NB_COUNTRIES_1HOUR_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW",
        "TX_AMOUNT",
    )
    assert reasons(ranked, row) == [
        (
            "3 countries in 1 h and 6 h",
            ("CUSTOMER_ID_NB_COUNTRIES_6HOUR_WINDOW", "CUSTOMER_ID_NB_COUNTRIES_1HOUR_WINDOW"),
        ),
        (
            "average 1.89 over 1 h and 6 h",
            ("CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW"),
        ),
        ("0.16 paid", ("TX_AMOUNT",)),  # the fifth input takes the place the merges freed
    ]
    # different figures stay apart; once top sentences are given, what ranks below is not read
    row["CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW"] = 2.5
    assert [text for text, _ in reasons(ranked, row, top=2)] == [
        "3 countries in 6 h",
        "average 1.89 over 1 h",
    ]


def test_a_card_without_history_gets_no_habit_ratio_and_the_next_input_takes_its_place() -> None:
    # what the features give on a card's first transaction: every count 1, the ratio 1, the
    # habit ratios 0 (ln 1), the gap capped at the longest window, every terminal new
    first = {f"CUSTOMER_ID_NB_TX_{w}_WINDOW": 1.0 for w in ("1HOUR", "6HOUR", "1DAY", "7DAY", "30DAY")}
    row = _row(
        **first,
        CARD_HAS_HISTORY=0.0,
        CARD_HISTORY_NB_TX=0.0,
        CARD_AMOUNT_VS_HABIT=0.0,
        CARD_SPEND_6HOUR_VS_HABIT=0.0,
        CARD_COUNTRIES_6HOUR_VS_30DAY=1.0,
        CUSTOMER_ID_AMOUNT_RATIO=1.0,
        CUSTOMER_ID_AMOUNT_ZSCORE_7DAY_WINDOW=0.0,
        CUSTOMER_ID_MS_SINCE_PREV_TX=30 * 86_400_000.0,
        CUSTOMER_ID_NEW_TERMINAL=1.0,
        CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW=2.14,
        CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW=2.14,
        TX_AMOUNT=2.14,
        TX_DURING_NIGHT=1.0,
    )
    ranked = _ranked(
        "CARD_AMOUNT_VS_HABIT",
        "CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW",
        "CARD_SPEND_6HOUR_VS_HABIT",
        "CUSTOMER_ID_AMOUNT_RATIO",
        "CUSTOMER_ID_AMOUNT_ZSCORE_7DAY_WINDOW",
        "CARD_COUNTRIES_6HOUR_VS_30DAY",
        "CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW",
        "CARD_HAS_HISTORY",
        "CUSTOMER_ID_MS_SINCE_PREV_TX",
        "CUSTOMER_ID_NB_TX_1HOUR_WINDOW",
        "CUSTOMER_ID_NEW_TERMINAL",
        "CARD_HISTORY_NB_TX",
        "TX_AMOUNT",
        "TX_DURING_NIGHT",
    )
    said = reasons(ranked, row)
    assert [text for text, _ in said] == ["2.14 paid", "the card's first transaction in 30 d", "at night"]
    stated = {name for _, names in said for name in names}
    assert stated.isdisjoint(
        {
            "CARD_AMOUNT_VS_HABIT",
            "CARD_SPEND_6HOUR_VS_HABIT",
            "CUSTOMER_ID_AMOUNT_RATIO",
            "CUSTOMER_ID_AMOUNT_ZSCORE_7DAY_WINDOW",
            "CARD_COUNTRIES_6HOUR_VS_30DAY",
        }
    )
    # the same card a few transactions later: still no habit, and no "never seen" beside its count
    row |= {"CUSTOMER_ID_NB_TX_1HOUR_WINDOW": 7.0, "CUSTOMER_ID_NB_TX_6HOUR_WINDOW": 7.0}
    row |= {"CUSTOMER_ID_NB_TX_1DAY_WINDOW": 7.0, "CUSTOMER_ID_NB_TX_7DAY_WINDOW": 7.0}
    row["CUSTOMER_ID_NB_TX_30DAY_WINDOW"] = 7.0
    ranked = _ranked(
        "CARD_SPEND_6HOUR_VS_HABIT",
        "CUSTOMER_ID_NB_TX_1HOUR_WINDOW",
        "CARD_HAS_HISTORY",
        "CARD_HISTORY_NB_TX",
        "TX_AMOUNT",
    )
    assert reasons(ranked, row) == [
        ("7 transactions in 1 h", ("CUSTOMER_ID_NB_TX_1HOUR_WINDOW",)),
        ("no card history before the last 6 h", ("CARD_HAS_HISTORY", "CARD_HISTORY_NB_TX")),
        ("2.14 paid", ("TX_AMOUNT",)),
    ]


def test_figures_that_restate_another_read_as_it() -> None:
    # one transaction in 6 h: the 6 h spend against the habit and the ratio to the earlier
    # amounts are the amount against the habit; the weaker spread indicator goes into the stronger
    row = _row(
        CUSTOMER_ID_NB_TX_6HOUR_WINDOW=1.0,
        CUSTOMER_ID_NB_TX_1HOUR_WINDOW=1.0,
        CARD_AMOUNT_VS_HABIT=math.log(1 / 124),
        CARD_SPEND_6HOUR_VS_HABIT=math.log1p(1 / 124),
        CUSTOMER_ID_AMOUNT_RATIO=1 / 124,
        CARD_SPREAD_4_2_1HOUR=1.0,
        CARD_SPREAD_5_3_1HOUR=1.0,
        CUSTOMER_ID_AMOUNT_ZSCORE_1HOUR_WINDOW=-3.0,
    )
    ranked = _ranked(
        "CARD_SPEND_6HOUR_VS_HABIT",
        "CARD_SPREAD_4_2_1HOUR",
        "CUSTOMER_ID_AMOUNT_RATIO",
        "CUSTOMER_ID_AMOUNT_ZSCORE_1HOUR_WINDOW",
        "CARD_AMOUNT_VS_HABIT",
        "CARD_SPREAD_5_3_1HOUR",
        "CUSTOMER_ID_NB_TX_1HOUR_WINDOW",
    )
    assert reasons(ranked, row) == [
        (
            "amount 1/124 of the card's habit",
            ("CARD_SPEND_6HOUR_VS_HABIT", "CUSTOMER_ID_AMOUNT_RATIO", "CARD_AMOUNT_VS_HABIT"),
        ),
        ("5+ transactions in 3+ countries within 1 h", ("CARD_SPREAD_4_2_1HOUR", "CARD_SPREAD_5_3_1HOUR")),
        ("no other transaction in 1 h", ("CUSTOMER_ID_NB_TX_1HOUR_WINDOW",)),  # no z-score over none
    ]


def test_detector_model_alerts_state_what_their_figures_hold() -> None:
    """Every transaction alerts (threshold 0): many are a card's first; none gives a ratio to a
    habit it has not got, none repeats itself, and the figures are the stated inputs' values."""
    from fraudstream.demo import generate_stream
    from fraudstream.fraud.detector import FraudDetector

    model = default_model()
    stream = generate_stream(3_000, seed=5)
    detector = FraudDetector(model=model, model_threshold=0.0, rules=[], cooldown=0)
    out = detector.process(stream.columns)
    seen: set[int] = set()
    firsts = 0
    for a in sorted(out.alerts, key=lambda a: a.trigger_row):
        words = a.reasons[1:]
        assert len(set(words)) == len(words), a.reasons  # (a score near 0 may have no reason)
        assert set(a.figures) - {"score"} <= set(model.feature_names)
        if a.card_id not in seen:
            firsts += 1
            assert not any("habit" in w or "usual" in w or "previous" in w for w in words), a.reasons
            assert "CARD_AMOUNT_VS_HABIT" not in a.figures and "CUSTOMER_ID_AMOUNT_RATIO" not in a.figures
        seen.add(a.card_id)
    assert firsts > 100
