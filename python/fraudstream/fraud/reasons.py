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
import numpy.typing as npt

from fraudstream.fraud.model import Model, ModelInput


def explain(model: Model, feats: Mapping[str, Any], row: int, top: int = 3) -> list[tuple[str, float]]:
    """The inputs that raised the score of ``row`` most, with their weights, best first."""
    return explain_rows(model, feats, np.array([row], np.int64), top)[0]


def explain_rows(
    model: Model, feats: Mapping[str, Any], rows: npt.ArrayLike, top: int = 3
) -> list[list[tuple[str, float]]]:
    """:func:`explain` for each of ``rows``, computed together: the detector explains every
    model alert of a batch with one scoring call (one call per alert was 7% of the Kafka loop)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return []
    raw = np.column_stack([np.asarray(feats[i.name], np.float64)[rows] for i in model.inputs])
    linear = model.kind == "logistic_regression"
    weights = _linear_weights(model, raw) if linear else _occlusion(model, raw)
    names = [i.name for i in model.inputs]
    out = []
    for w in weights.tolist():
        parts = [(name, x) for name, x in zip(names, w, strict=True) if math.isfinite(x) and x > 0]
        parts.sort(key=lambda p: -p[1])
        out.append(parts[:top])
    return out


def _linear_weights(model: Model, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``coef * standardized input`` per row and input."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.column_stack([inp.apply(raw[:, i]) for i, inp in enumerate(model.inputs)])
        coef = np.asarray(model.params["coef"], np.float64)
        weights: np.ndarray[Any, Any] = (z - np.asarray(model.mean)) / np.asarray(model.scale) * coef
    return weights


def _occlusion(model: Model, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per row and input, the row's score less its score with that input at the training mean
    (inverse-transformed to a raw value): one scoring call for all rows."""
    n, k = raw.shape
    at_mean = np.array([raw_value(inp, m) for inp, m in zip(model.inputs, model.mean, strict=True)])
    x = np.repeat(raw[:, None, :], k + 1, axis=1)  # (rows, 1 + inputs, inputs)
    diag = np.arange(k)
    x[:, diag + 1, diag] = at_mean
    scores = model.score_matrix(np.ascontiguousarray(x.reshape(n * (k + 1), k))).reshape(n, k + 1)
    return scores[:, :1] - scores[:, 1:]


def raw_value(inp: ModelInput, transformed: float) -> float:
    """The raw feature value whose transform by ``inp`` is ``transformed``."""
    if inp.transform == "log":
        return math.exp(transformed)
    return math.expm1(transformed) if inp.transform == "log1p" else transformed


def describe(name: str, value: float) -> str:
    """A feature value in words (for the reasons of model alerts)."""
    if name.startswith("CUSTOMER_ID_NB_COUNTRIES_"):
        return f"{value:.0f} countries in {_window_words(name)}"
    if name.startswith("CUSTOMER_ID_NB_TX_"):
        return f"{value:.0f} transactions in {_window_words(name)}"
    if name == "CUSTOMER_ID_AMOUNT_RATIO":
        return f"amount {_times(value)} the card's usual"
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
        return f"amount {_times(math.exp(value))} the card's habit"
    if name.startswith("CARD_SPEND_") and name.endswith("_VS_HABIT"):
        return f"{_times(math.expm1(value))} the card's usual amount spent in 6 h"
    if name.startswith("CARD_SPEND_"):
        return f"{value:.2f} spent in {_window_words(name + '_')}"
    if name == "CARD_COUNTRIES_6HOUR_VS_30DAY":
        return f"{value:.0%} of the card's countries of 30 d used in the last 6 h"
    if name.startswith("CARD_SPREAD_"):
        n, c, w = name.removeprefix("CARD_SPREAD_").split("_")
        words = f"{n}+ transactions in {c}+ countries within {_window_words(f'X_{w}_')}"
        return words if value else f"not {words}"
    return f"{name} = {value:g}"


def _times(ratio: float) -> str:
    """A ratio as an analyst reads it: ``8.1x``, ``45% of``, ``1/80 of`` (a tiny amount, as in
    card testing, is not ``0.0x``), ``none of``."""
    if not math.isfinite(ratio) or ratio >= 0.95:
        return f"{ratio:.1f}x"
    if ratio >= 0.1:
        return f"{ratio:.0%} of"
    return f"1/{1 / ratio:,.0f} of" if ratio > 0 else "none of"


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
