"""Model alerts in words: the inputs that pushed a fraud score up, as an analyst reads them.

:func:`explain` ranks a model's inputs by their contribution to one row's score
(``coef * standardized value`` for a logistic regression; for trees, how much the score
drops when that input alone is set to its training mean); :func:`describe` turns a feature value into a phrase
(``"4 countries in 1 d"``, ``"amount 8.1x the card's usual"``); :func:`reasons` picks an
alert's sentences from the ranked inputs, read with the rest of the row (a figure that means
nothing for the card left out, one figure over several windows said once). Pure functions of
their arguments: the same row always gives the same words.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    """A feature value in words, alone (:func:`reasons` reads it with the rest of its row)."""
    head, window = _parts(name, value)
    return f"{head} {window}" if window else head


def _parts(name: str, value: float) -> tuple[str, str]:
    """:func:`describe` as ``(head, window)``: the window words apart (``""`` when the phrase
    has none), so that one figure over several windows can be said once."""
    if name.startswith("CUSTOMER_ID_NB_COUNTRIES_"):
        return f"{value:.0f} {'country' if value == 1 else 'countries'} in", _window_words(name)
    if name.startswith("CUSTOMER_ID_NB_TX_"):
        return f"{value:.0f} {'transaction' if value == 1 else 'transactions'} in", _window_words(name)
    if name == "CUSTOMER_ID_AMOUNT_RATIO":
        return f"amount {_times(value)} the card's usual", ""
    if name.startswith("CUSTOMER_ID_AMOUNT_ZSCORE_"):
        return f"amount {value:+.1f} sd from the card's", _window_words(name)
    if name.startswith("CUSTOMER_ID_AVG_AMOUNT_"):
        return f"average {value:.2f} over", _window_words(name)
    if name == "CUSTOMER_ID_MS_SINCE_PREV_TX":
        return f"{_duration_words(value)} since the card's previous transaction", ""
    if name == "CUSTOMER_ID_NEW_TERMINAL":
        return ("a terminal new to the card" if value else "a terminal the card knows"), ""
    if name == "TX_AMOUNT":
        return f"{value:.2f} paid", ""
    if name == "TX_DURING_NIGHT":
        return ("at night" if value else "by day"), ""
    if name.startswith("CARD_SPEND_") and not name.endswith("_VS_HABIT"):
        return f"{value:.2f} spent in", _window_words(name + "_")
    return _describe_derived(name, value), ""


def _describe_derived(name: str, value: float) -> str:
    """The columns of :mod:`fraudstream.fraud.derived` in words."""
    if name == "CARD_HISTORY_NB_TX":
        return NO_HISTORY if value == 0 else f"{value:.0f} transactions in the 30 d before the last 6 h"
    if name == "CARD_HAS_HISTORY":
        return "a card with history before the last 6 h" if value else NO_HISTORY
    if name == "CARD_HABIT_AMOUNT":
        return f"usual amount {value:.2f}" if value else NO_HISTORY
    if name == "CARD_AMOUNT_VS_HABIT":
        return f"amount {_times(math.exp(value))} the card's habit"
    if name.startswith("CARD_SPEND_") and name.endswith("_VS_HABIT"):
        return f"{_times(math.expm1(value))} the card's usual amount spent in 6 h"
    if name == "CARD_COUNTRIES_6HOUR_VS_30DAY":
        return f"{value:.0%} of the card's countries of 30 d used in the last 6 h"
    if name.startswith("CARD_SPREAD_"):
        return _spread_words(name, value)
    return f"{name} = {value:g}"


NO_HISTORY = "no card history before the last 6 h"
"""What the derived history columns say of a card without history (``CARD_HAS_HISTORY`` 0:
no transaction in the 30 days before the last 6 h; it may have some within them)."""


def _spread_words(name: str, value: float) -> str:
    n, c, w = name.removeprefix("CARD_SPREAD_").split("_")
    words = f"{n}+ transactions in {c}+ countries within {_window_words(f'X_{w}_')}"
    return words if value else f"not {words}"


def reasons(
    ranked: Sequence[tuple[str, float]], row: Mapping[str, float], top: int = 3
) -> list[tuple[str, tuple[str, ...]]]:
    """The sentences of a model alert: ``ranked`` (an :func:`explain_rows` row, every positive
    input best first) read with the rest of the row's features (``row``: name -> value), as
    ``(sentence, the inputs it states)``, at most ``top``, best first.

    An input is read in its row's context before it is given a place:

    - a figure that means nothing for this card is left out and the next input takes its
      place: a ratio to the card's habit or usual amount, or a share of its countries, when it
      has none yet (the feature is then a constant by definition), a z-score over fewer than
      two earlier amounts;
    - a figure that only restates something plainer is said as that: an average or a spend
      over a window holding this transaction alone is the amount paid; the 6-hour spend
      against the habit with one transaction in 6 h is the amount against the habit, and so is
      the amount against the card's usual amount (its earlier amounts are the habit's); for the
      card's first transaction within the longest card window, "1 transaction in 1 h", "30 d
      since the previous transaction" (the cap), "a terminal new to the card" and "no
      history" all say that;
    - inputs that then say the same thing share one sentence: the same figure over several
      windows reads once (``"average 2.14 over 1 h and 6 h"``), identical sentences once, the
      weaker of two spread indicators of one window goes into the stronger.

    Merging gives no place away: the next inputs fill the places freed, until ``top``
    sentences are given (what ranks below the last of them is not read).
    """
    chosen: list[_Reason] = []
    first = _first_transaction(row)
    for name, _ in ranked:
        if len(chosen) == top:
            break
        phrase = _phrase(name, float(row[name]), row, first)
        if phrase is None:
            continue
        key, head, window, strength = phrase
        same = next((r for r in chosen if r.key == key), None)
        if same is not None:
            same.names.append(name)
            if window and window not in same.windows:
                same.windows.append(window)
            if strength > same.strength:
                same.head, same.strength = head, strength
            continue
        chosen.append(_Reason(key, head, [window] if window else [], [name], strength))
    return [(r.text(), tuple(r.names)) for r in chosen]


@dataclass
class _Reason:
    key: str
    head: str
    windows: list[str]
    names: list[str]
    strength: int

    def text(self) -> str:
        if not self.windows:
            return self.head
        ws = sorted(self.windows, key=_window_sort)
        return f"{self.head} {ws[0] if len(ws) == 1 else ', '.join(ws[:-1]) + ' and ' + ws[-1]}"


def _phrase(
    name: str, value: float, row: Mapping[str, float], first: str | None
) -> tuple[str, str, str, int] | None:
    """``(merge key, head, window words, strength)`` of one input in its row, None when it says
    nothing for this card (see :func:`reasons`)."""
    history = row.get("CARD_HAS_HISTORY")
    if first is not None and (
        (name.startswith("CUSTOMER_ID_NB_TX_") and value <= 1)
        or name == "CUSTOMER_ID_MS_SINCE_PREV_TX"
        or (name == "CUSTOMER_ID_NEW_TERMINAL" and value)
        or (name in ("CARD_HAS_HISTORY", "CARD_HISTORY_NB_TX", "CARD_HABIT_AMOUNT") and not value)
    ):
        return first, first, "", 0
    if name == "CUSTOMER_ID_AMOUNT_RATIO" and first is not None:
        return None  # 1 by definition without an earlier amount
    if history == 0 and (
        name in ("CARD_AMOUNT_VS_HABIT", "CARD_COUNTRIES_6HOUR_VS_30DAY")
        or (name.startswith("CARD_SPEND_") and name.endswith("_VS_HABIT"))
    ):
        return None  # constants without history
    count = row.get(_count_column(name))
    if name.startswith("CUSTOMER_ID_AMOUNT_ZSCORE_") and count is not None and count <= 2:
        return None  # 0 by definition with fewer than two earlier amounts
    if count is not None and count <= 1:
        if name.startswith("CUSTOMER_ID_AVG_AMOUNT_") or (
            name.startswith("CARD_SPEND_") and not name.endswith("_VS_HABIT")
        ):
            name = "TX_AMOUNT"  # the mean or sum of this one amount
        elif name.startswith("CUSTOMER_ID_NB_TX_"):
            return "no other transaction in", "no other transaction in", _window_words(name), 0
    if name == "CARD_SPEND_6HOUR_VS_HABIT" and row.get("CUSTOMER_ID_NB_TX_6HOUR_WINDOW") == 1:
        return _plain(f"amount {_times(math.expm1(value))} the card's habit")  # as CARD_AMOUNT_VS_HABIT
    if name == "CUSTOMER_ID_AMOUNT_RATIO" and history == 1 and row.get("CUSTOMER_ID_NB_TX_6HOUR_WINDOW") == 1:
        # the earlier amounts are the habit's: the same figure as CARD_AMOUNT_VS_HABIT
        return _plain(f"amount {_times(value)} the card's habit")
    if name.startswith("CARD_SPREAD_") and value:
        n, c, w = name.removeprefix("CARD_SPREAD_").split("_")
        return f"spread {w}", _spread_words(name, value), "", int(n) * 1000 + int(c)
    if name == "TX_AMOUNT":
        value = float(row.get("TX_AMOUNT", value))
    head, window = _parts(name, value)
    return (head, head, window, 0) if window else _plain(head)


def _plain(words: str) -> tuple[str, str, str, int]:
    return words, words, "", 0


def _first_transaction(row: Mapping[str, float]) -> str | None:
    """``"the card's first transaction in 30 d"`` when no earlier transaction of the card is in
    its longest window (every card count is 1), else None."""
    counts, phrase = _card_counts(tuple(row))
    if not counts or any(row[k] > 1 for k in counts):
        return None
    return phrase


@functools.cache
def _card_counts(names: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """The card count columns among ``names`` and the first-transaction phrase of the longest
    (cached: every model alert of a detector reads the same names)."""
    counts = tuple(k for k in names if k.startswith("CUSTOMER_ID_NB_TX_"))
    if not counts:
        return counts, ""
    longest = max(counts, key=lambda k: _window_sort(_window_words(k)))
    return counts, f"the card's first transaction in {_window_words(longest)}"


@functools.cache
def _count_column(name: str) -> str:
    """The card count column of the window of ``name`` (``""`` when it has none)."""
    for prefix in ("CUSTOMER_ID_AMOUNT_ZSCORE_", "CUSTOMER_ID_AVG_AMOUNT_", "CUSTOMER_ID_NB_TX_"):
        if name.startswith(prefix):
            return "CUSTOMER_ID_NB_TX_" + name.removeprefix(prefix)
    if name.startswith("CARD_SPEND_") and not name.endswith("_VS_HABIT"):
        return f"CUSTOMER_ID_NB_TX_{name.removeprefix('CARD_SPEND_')}_WINDOW"
    return ""


class RowValues(Mapping[str, float]):
    """One row of feature columns as a mapping of floats (read on demand: an alert reads few)."""

    def __init__(self, columns: Mapping[str, Any], row: int) -> None:
        self._columns, self._row = columns, row

    def __getitem__(self, name: str) -> float:
        return float(self._columns[name][self._row])

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _times(ratio: float) -> str:
    """A ratio as an analyst reads it: ``8.1x``, ``45% of``, ``1/80 of`` (a tiny amount, as in
    card testing, is not ``0.0x``), ``none of``."""
    if not math.isfinite(ratio) or ratio >= 0.95:
        return f"{ratio:.1f}x"
    if ratio >= 0.1:
        return f"{ratio:.0%} of"
    return f"1/{1 / ratio:,.0f} of" if ratio > 0 else "none of"


_UNITS = (
    ("DAY", "d", 86_400_000),
    ("HOUR", "h", 3_600_000),
    ("MIN", "min", 60_000),
    ("SEC", "s", 1_000),
    ("MS", "ms", 1),
)


@functools.cache
def _window_sort(words: str) -> float:
    """Milliseconds of window words (``"6 h"``), for ordering; unknown words last."""
    n, _, unit = words.partition(" ")
    size = next((ms for _, word, ms in _UNITS if word == unit), None)
    return int(n) * size if n.isdigit() and size is not None else math.inf


@functools.cache
def _window_words(name: str) -> str:
    label = name.rsplit("_", 2)[-2]  # ..._1HOUR_WINDOW -> 1HOUR
    for unit, word, _ in _UNITS:
        if label.endswith(unit) and label[: -len(unit)].isdigit():
            return f"{label[: -len(unit)]} {word}"
    return label


def _duration_words(ms: float) -> str:
    for size, unit in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


__all__ = ["RowValues", "describe", "explain", "explain_rows", "reasons"]
