"""Seeded synthetic card-transaction streams, generated vectorized with numpy.

The streams are reproducible from their seed: the same arguments give the same arrays on
every machine. Arrival order is the array order; event times lag arrival by up to
``disorder_ms`` (bounded out-of-orderness), so a watermark of ``max time - disorder_ms`` never
judges an event late.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DEFAULT_START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def card_transactions(
    n: int,
    *,
    cards: int = 100_000,
    countries: int = 30,
    rate_per_s: float = 10_000.0,
    disorder_ms: int = 5_000,
    home_country_share: float = 0.9,
    start_ms: int = DEFAULT_START_MS,
    seed: int = 0,
) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]:
    """``n`` transactions as columns ``card``, ``ts``, ``amount``, ``country``.

    Cards are skewed (a few cards are far busier than most, as in real traffic); each card has
    a home country where ``home_country_share`` of its transactions happen, the rest spread
    over ``countries``. Amounts are gamma-distributed, rounded to cents.
    """
    rng = np.random.default_rng(seed)
    card_ids = rng.permutation(cards).astype(np.int64)
    card = card_ids[np.floor(cards * rng.random(n) ** 2.5).astype(np.int64)]
    arrival = start_ms + (np.arange(n, dtype=np.float64) * (1_000.0 / rate_per_s)).astype(np.int64)
    ts = arrival - rng.integers(0, disorder_ms + 1, n) if disorder_ms > 0 else arrival
    home = (card * 2_654_435_761) % countries
    away = rng.random(n) >= home_country_share
    country = np.where(away, rng.integers(0, countries, n), home).astype(np.int64)
    amount = np.round(rng.gamma(2.0, 25.0, n), 2)
    return {"card": card, "ts": ts.astype(np.int64), "amount": amount, "country": country}
