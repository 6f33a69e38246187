"""Seeded synthetic data for the fraud layer, generated vectorized with numpy.

- :func:`handbook_like`: a small transaction table in the handbook's format (cards, terminals,
  amounts, labels with the simulator's three fraud scenarios, many equal timestamps), for
  feature tests that must run without the public dataset.
- :func:`story_incident`: the story behind the project: background card traffic from
  :func:`fraudstream.generator.card_transactions` plus one compromised card making 23 small
  transactions across 4 countries in 6 hours.

The same arguments give the same arrays on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.generator import DEFAULT_START_MS, card_transactions

DAY_MS = 86_400_000
HANDBOOK_START_MS = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def handbook_like(
    *,
    customers: int = 300,
    terminals: int = 500,
    days: int = 60,
    tx_per_day: float = 2.0,
    start_ms: int = HANDBOOK_START_MS,
    seed: int = 0,
) -> dict[str, np.ndarray[Any, Any]]:
    """A handbook-format table sorted by (time, id), ids 0..n-1 increasing with time.

    Times are whole seconds (as in the handbook), clustered so that many transactions share a
    timestamp, some of the same card or terminal. Frauds: amounts over 220 (scenario 1); all
    transactions of a few compromised terminals for 28 days (2); a third of a few compromised
    cards' transactions over 14 days with 5x amounts (3).
    """
    rng = np.random.default_rng(seed)
    n = int(customers * days * tx_per_day)
    card = rng.integers(0, customers, n)
    # each card uses terminals near its own (a band of 20), so terminals repeat per card
    terminal = (card * terminals // customers + rng.integers(0, 20, n)) % terminals
    # coarse times: many collisions at one second
    seconds = np.sort(rng.integers(0, days * 86_400 // 600, n) * 600)
    time = start_ms + seconds * 1_000
    mean = 5.0 + (card * 2_654_435_761 % 95)
    amount = np.round(np.abs(rng.normal(mean, mean / 2)), 2)
    scenario = np.zeros(n, np.int8)
    scenario[amount > 220] = 1
    day = seconds // 86_400
    for d in range(0, days, 5):
        bad = rng.integers(0, terminals)
        scenario[(terminal == bad) & (day >= d) & (day < d + 28)] = 2
        victim = rng.integers(0, customers)
        mask = (card == victim) & (day >= d) & (day < d + 14) & (rng.random(n) < 1 / 3)
        amount[mask] = np.round(amount[mask] * 5, 2)
        scenario[mask] = 3
    return {
        "TRANSACTION_ID": np.arange(n, dtype=np.int64),
        "TX_TIME_MS": time.astype(np.int64),
        "CUSTOMER_ID": card.astype(np.int64),
        "TERMINAL_ID": terminal.astype(np.int64),
        "TX_AMOUNT": amount,
        "TX_FRAUD": (scenario > 0).astype(np.int8),
        "TX_FRAUD_SCENARIO": scenario,
    }


@dataclass
class Story:
    """Background traffic with the incident merged in by event time."""

    columns: dict[str, np.ndarray[Any, Any]]
    """``card``, ``ts``, ``amount``, ``country``."""
    incident_card: int
    incident_rows: np.ndarray[Any, Any]
    """Rows of ``columns`` holding the incident's transactions, in time order."""


def story_incident(
    *,
    background: int = 200_000,
    cards: int = 50_000,
    rate_per_s: float = 5.0,
    transactions: int = 23,
    countries: tuple[int, ...] = (250, 276, 724, 380),
    hours: float = 6.0,
    start_after_ms: int = 2 * 3_600_000,
    start_ms: int = DEFAULT_START_MS,
    seed: int = 7,
) -> Story:
    """The story's slow incident: one card, ``transactions`` small transactions spread evenly
    over ``hours`` and over ``countries`` (in a shuffled order), merged into background card
    traffic (``card``, ``ts``, ``amount``, ``country`` with bounded disorder)."""
    data = card_transactions(background, cards=cards, rate_per_s=rate_per_s, start_ms=start_ms, seed=seed)
    rng = np.random.default_rng(seed + 1)
    card = cards + 1_000_000  # not a background card
    step = int(hours * 3_600_000 / transactions)
    ts = (
        start_ms
        + start_after_ms
        + np.arange(transactions, dtype=np.int64) * step
        + rng.integers(0, 60_000, transactions)
    )
    country = np.array(countries, dtype=np.int64)[rng.permutation(np.arange(transactions) % len(countries))]
    incident = {
        "card": np.full(transactions, card, np.int64),
        "ts": ts,
        "amount": np.round(rng.uniform(1.0, 15.0, transactions), 2),
        "country": country,
    }
    merged = {k: np.concatenate([data[k], incident[k]]) for k in data}
    order = np.argsort(merged["ts"], kind="stable")
    columns = {k: v[order] for k, v in merged.items()}
    rows = np.flatnonzero(columns["card"] == card)
    return Story(columns, card, rows)
