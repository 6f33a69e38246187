"""Model alerts in words: the inputs that pushed a fraud score up, as an analyst reads them.

:func:`explain` ranks a model's inputs by their contribution to one row's score
(``coef * standardized value`` for a logistic regression; for trees, how much the score
drops when that input alone is set to its training mean); :func:`describe` turns a feature value into a phrase
(``"4 countries in 1 d"``, ``"amount 8.1x the card's usual"``). Pure functions of their
arguments: the same row always gives the same words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fraudstream.fraud.model import Model


def explain(model: Model, feats: Mapping[str, Any], row: int, top: int = 3) -> list[tuple[str, float]]:
    """The inputs that raised the score of ``row`` most, with their weights, best first."""
    parts: list[tuple[str, float]] = []
    if model.kind != "logistic_regression":
        return _occlusion(model, feats, row)[:top]
    coef = model.params["coef"]
    for i, inp in enumerate(model.inputs):
        z = (float(inp.apply(np.array([feats[inp.name][row]]))[0]) - model.mean[i]) / model.scale[i]
        weight = float(coef[i]) * z
        if math.isfinite(weight) and weight > 0:
            parts.append((inp.name, weight))
    parts.sort(key=lambda p: -p[1])
    return parts[:top]


def _occlusion(model: Model, feats: Mapping[str, Any], row: int) -> list[tuple[str, float]]:
    """Per input, the score of ``row`` less its score with that input at the training mean
    (inverse-transformed to a raw value), positive ones, largest first: one scoring call."""
    raw = np.array([float(feats[i.name][row]) for i in model.inputs], np.float64)
    k = len(raw)
    x = np.repeat(raw[None, :], k + 1, axis=0)
    for i, inp in enumerate(model.inputs):
        m = model.mean[i]
        x[i + 1, i] = (
            math.exp(m) if inp.transform == "log" else math.expm1(m) if inp.transform == "log1p" else m
        )
    scores = model.score_matrix(np.ascontiguousarray(x))
    parts = [(inp.name, float(scores[0] - scores[i + 1])) for i, inp in enumerate(model.inputs)]
    parts = [p for p in parts if math.isfinite(p[1]) and p[1] > 0]
    parts.sort(key=lambda p: -p[1])
    return parts


def describe(name: str, value: float) -> str:
    """A feature value in words (for the reasons of model alerts)."""
    if name.startswith("CUSTOMER_ID_NB_COUNTRIES_"):
        return f"{value:.0f} countries in {_window_words(name)}"
    if name.startswith("CUSTOMER_ID_NB_TX_"):
        return f"{value:.0f} transactions in {_window_words(name)}"
    if name == "CUSTOMER_ID_AMOUNT_RATIO":
        return f"amount {value:.1f}x the card's usual"
    if name.startswith("CUSTOMER_ID_AMOUNT_ZSCORE_"):
        return f"amount {value:+.1f} sd from the card's {_window_words(name)}"
    if name.startswith("CUSTOMER_ID_AVG_AMOUNT_"):
        return f"average {value:.2f} over {_window_words(name)}"
    if name == "CUSTOMER_ID_MS_SINCE_PREV_TX":
        return f"{_duration_words(value)} since the card's previous transaction"
    if name == "CUSTOMER_ID_NEW_TERMINAL":
        return "a terminal new to the card" if value else "a terminal the card knows"
    if name == "TX_AMOUNT":
        return f"{value:.2f} paid"
    if name == "TX_DURING_NIGHT":
        return "at night" if value else "by day"
    return _describe_derived(name, value)


def _describe_derived(name: str, value: float) -> str:
    """The columns of :mod:`fraudstream.fraud.derived` in words."""
    if name == "CARD_HISTORY_NB_TX":
        return "a card with no earlier history" if value == 0 else f"{value:.0f} earlier transactions"
    if name == "CARD_HAS_HISTORY":
        return "a card with history" if value else "a card never seen before"
    if name == "CARD_HABIT_AMOUNT":
        return f"usual amount {value:.2f}" if value else "no usual amount yet"
    if name == "CARD_AMOUNT_VS_HABIT":
        return f"amount {math.exp(value):.1f}x the card's habit"
    if name.startswith("CARD_SPEND_") and name.endswith("_VS_HABIT"):
        return f"{math.expm1(value):.1f}x the card's usual amount spent in 6 h"
    if name.startswith("CARD_SPEND_"):
        return f"{value:.2f} spent in {_window_words(name + '_')}"
    if name == "CARD_COUNTRIES_6HOUR_VS_30DAY":
        return f"{value:.0%} of the card's countries of 30 d used in the last 6 h"
    if name.startswith("CARD_SPREAD_"):
        n, c, w = name.removeprefix("CARD_SPREAD_").split("_")
        words = f"{n}+ transactions in {c}+ countries within {_window_words(f'X_{w}_')}"
        return words if value else f"not {words}"
    return f"{name} = {value:g}"


def _window_words(name: str) -> str:
    label = name.rsplit("_", 2)[-2]  # ..._1HOUR_WINDOW -> 1HOUR
    for unit, word in (("DAY", "d"), ("HOUR", "h"), ("MIN", "min"), ("SEC", "s"), ("MS", "ms")):
        if label.endswith(unit) and label[: -len(unit)].isdigit():
            return f"{label[: -len(unit)]} {word}"
    return label


def _duration_words(ms: float) -> str:
    for size, unit in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


__all__ = ["describe", "explain"]
