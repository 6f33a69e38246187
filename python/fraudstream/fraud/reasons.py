"""Model alerts in words: the inputs that pushed a fraud score up, as an analyst reads them.

:func:`explain` ranks a model's inputs by their contribution to one row's score
(``coef * standardized value`` for a logistic regression; for trees, the distance from the
training mean); :func:`describe` turns a feature value into a phrase
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
    coef = model.params.get("coef") if model.kind == "logistic_regression" else None
    for i, inp in enumerate(model.inputs):
        z = (float(inp.apply(np.array([feats[inp.name][row]]))[0]) - model.mean[i]) / model.scale[i]
        weight = float(coef[i]) * z if coef is not None else abs(z)
        if math.isfinite(weight) and weight > 0:
            parts.append((inp.name, weight))
    parts.sort(key=lambda p: -p[1])
    return parts[:top]


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
