"""Derived features: per-row numpy expressions over the streaming features, no state of their own.

The streaming engine (:mod:`fraudstream.fraud.features`) keeps the state; these columns
recombine what it already computes for one transaction, so they are batch-independent and
snapshot nothing. They give the model what a card without history still shows, and the
card's habit without the attack's own transactions in it:

=================================  ===========================================================
``CARD_HISTORY_NB_TX``             the card's transactions in the 30 days before the last 6 h
``CARD_HAS_HISTORY``               1 when there is at least one
``CARD_HABIT_AMOUNT``              their mean amount (0 without history): the card's habit,
                                   untouched by what happened in the last 6 h
``CARD_AMOUNT_VS_HABIT``           ln(amount / habit); 0 without history
``CARD_SPEND_1HOUR``, ``_6HOUR``   the amount spent in the last 1 h / 6 h (this one included)
``CARD_SPEND_6HOUR_VS_HABIT``      ln(1 + that 6 h spend / habit); 0 without history
``CARD_COUNTRIES_6HOUR_VS_30DAY``  distinct countries in 6 h over those in 30 days: 1 when
                                   every country the card used lately is a recent one
``CARD_SPREAD_<n>_<c>_<w>``        rule indicators: at least ``n`` transactions in at least
                                   ``c`` countries within the window ``w`` (1 h or 6 h)
=================================  ===========================================================

Every expression reads the card windows 1 h, 6 h and 30 days
(``StreamingFeatures(customer_windows=(..., "1h", "6h", ..., "30d"), columns=...)`` with a
country column).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Columns = dict[str, np.ndarray[Any, Any]]

NEEDS = (
    "TX_AMOUNT",
    "CUSTOMER_ID_NB_TX_1HOUR_WINDOW",
    "CUSTOMER_ID_NB_TX_6HOUR_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "CUSTOMER_ID_NB_COUNTRIES_1HOUR_WINDOW",
    "CUSTOMER_ID_NB_COUNTRIES_6HOUR_WINDOW",
    "CUSTOMER_ID_NB_COUNTRIES_30DAY_WINDOW",
)
"""The streaming features the derived ones read."""

SPREAD_RULES = ((4, 2, "1HOUR"), (5, 3, "1HOUR"), (6, 2, "6HOUR"), (8, 3, "6HOUR"))
"""``(n, c, w)`` of the rule indicators ``CARD_SPREAD_<n>_<c>_<w>``."""

DERIVED_FEATURES: list[str] = [
    "CARD_HISTORY_NB_TX",
    "CARD_HAS_HISTORY",
    "CARD_HABIT_AMOUNT",
    "CARD_AMOUNT_VS_HABIT",
    "CARD_SPEND_1HOUR",
    "CARD_SPEND_6HOUR",
    "CARD_SPEND_6HOUR_VS_HABIT",
    "CARD_COUNTRIES_6HOUR_VS_30DAY",
    *[f"CARD_SPREAD_{n}_{c}_{w}" for n, c, w in SPREAD_RULES],
]
"""Names of the derived columns, in order."""


def can_derive(available: set[str] | frozenset[str] | Any) -> bool:
    """Whether the streaming features named ``available`` include everything needed."""
    return all(n in available for n in NEEDS)


def derive(features: Mapping[str, Any]) -> Columns:
    """The derived columns of a batch of streaming features (one value per row)."""
    f = {n: np.asarray(features[n]) for n in NEEDS}
    n1 = f["CUSTOMER_ID_NB_TX_1HOUR_WINDOW"].astype(np.float64)
    n6 = f["CUSTOMER_ID_NB_TX_6HOUR_WINDOW"].astype(np.float64)
    n30 = f["CUSTOMER_ID_NB_TX_30DAY_WINDOW"].astype(np.float64)
    spend1 = n1 * f["CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW"]
    spend6 = n6 * f["CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW"]
    spend30 = n30 * f["CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW"]
    history = np.maximum(n30 - n6, 0.0)
    has = history > 0
    habit = np.where(has, np.maximum(spend30 - spend6, 0.0) / np.maximum(history, 1.0), 0.0)
    floor = np.maximum(habit, 0.01)
    amount = np.asarray(features["TX_AMOUNT"], np.float64)
    out: Columns = {
        "CARD_HISTORY_NB_TX": history,
        "CARD_HAS_HISTORY": has.astype(np.float64),
        "CARD_HABIT_AMOUNT": habit,
        "CARD_AMOUNT_VS_HABIT": np.where(has, np.log(np.maximum(amount, 0.01) / floor), 0.0),
        "CARD_SPEND_1HOUR": spend1,
        "CARD_SPEND_6HOUR": spend6,
        "CARD_SPEND_6HOUR_VS_HABIT": np.where(has, np.log1p(spend6 / floor), 0.0),
        "CARD_COUNTRIES_6HOUR_VS_30DAY": f["CUSTOMER_ID_NB_COUNTRIES_6HOUR_WINDOW"]
        / np.maximum(f["CUSTOMER_ID_NB_COUNTRIES_30DAY_WINDOW"], 1),
    }
    for n, c, w in SPREAD_RULES:
        count = f[f"CUSTOMER_ID_NB_TX_{w}_WINDOW"]
        countries = f[f"CUSTOMER_ID_NB_COUNTRIES_{w}_WINDOW"]
        out[f"CARD_SPREAD_{n}_{c}_{w}"] = ((count >= n) & (countries >= c)).astype(np.float64)
    return out


__all__ = ["DERIVED_FEATURES", "NEEDS", "SPREAD_RULES", "can_derive", "derive"]
