"""Model alert explanations: many rows explained together equal each row explained alone, by
the definitions written out plainly here (one row, one input at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.fraud.model import Model, default_model
from fraudstream.fraud.reasons import describe, explain, explain_rows, raw_value
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
