"""Seeded synthetic card-transaction streams, generated vectorized with numpy.

- :func:`card_transactions`: unlabelled load (cards, times, amounts, countries), the
  benchmarks' and the engine tests' input.
- :func:`labelled_transactions`: realistic traffic with labelled fraud, the input of
  ``fraudstream produce``, the demo, the default model's training and its evaluation: normal
  cards with a home country, travel, cross-border online shopping and heavy-tailed activity
  (so simple count rules over-alert), and a small share of compromised cards with incidents
  of several shapes.

The streams are reproducible from their seed: the same arguments give the same arrays on
every machine. Arrival order is the array order; event times lag arrival by up to
``disorder_ms`` (bounded out-of-orderness), so a watermark of ``max time - disorder_ms`` never
judges an event late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream import _core
from fraudstream.kafka.schema import COUNTRIES

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
    home = _card_home(card, countries)
    away = rng.random(n) >= home_country_share
    country = np.where(away, rng.integers(0, countries, n), home).astype(np.int64)
    amount = np.round(rng.gamma(2.0, 25.0, n), 2)
    return {"card": card, "ts": ts.astype(np.int64), "amount": amount, "country": country}


def _card_home(card: npt.NDArray[np.int64], countries: int) -> npt.NDArray[np.int64]:
    """The home country (number) of :func:`card_transactions`' cards."""
    return np.asarray((card * 2_654_435_761) % countries, np.int64)


def card_transaction_profiles(
    cards: int, *, countries: int = 30, start_ms: int = DEFAULT_START_MS, seed: int = 0
) -> Columns:
    """Profiles of the cards of :func:`card_transactions` with the same ``cards``, ``countries``
    and ``start_ms`` (cards ``0 .. cards - 1``), as :func:`card_profiles` gives them:
    ``home_country`` the card's home (packed code), ``avg_amount`` the mean of its amounts (a
    gamma of shape 2 and scale 25: 50.0), ``account_opened`` 30 days to 15 years before
    ``start_ms``."""
    card = np.arange(cards, dtype=np.int64)
    return {
        "card_id": card,
        "home_country": country_codes()[_card_home(card, countries) % len(COUNTRIES)],
        "account_opened": _account_opened(np.random.default_rng([seed, 0x9F0F]), cards, start_ms),
        "avg_amount": np.full(cards, 2.0 * 25.0),
    }


# ---------------------------------------------------------------------------------------------
# Labelled traffic: normal cards and compromised ones

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

DIURNAL = np.array(
    [0.20, 0.10, 0.07, 0.05, 0.05, 0.10, 0.30, 0.60, 0.90, 1.00, 1.10, 1.20,
     1.30, 1.20, 1.10, 1.10, 1.20, 1.30, 1.30, 1.20, 1.00, 0.80, 0.60, 0.40]
)  # fmt: skip
"""Relative rate of normal transactions per UTC hour of the day (quiet at night)."""

ONLINE_HUBS = ("IE", "LU", "NL", "GB")
"""Countries of the big online merchants that normal cards buy from across borders."""
STORY_COUNTRIES = ("FR", "DE", "ES", "IT")

SHAPES: dict[str, float] = {"burst": 0.25, "spread": 0.15, "testing": 0.25, "spree": 0.20, "cashout": 0.15}
"""Incident shapes and their shares when drawn at random (see :func:`labelled_transactions`)."""
FAMILIES: dict[str, float] = {"card_testing": 0.25, "drain": 0.20, "multi_country": 0.35, "online": 0.20}
"""The scenario families with randomized parameters (:func:`scenario_traffic`), and their
shares: 8-40 fraudulent transactions over 20 min - 12 h in 2-6 countries, amounts 1-20x the
card's habit (see :func:`_family`)."""
KINDS = ("story", *SHAPES, *FAMILIES)

TERMINALS_PER_COUNTRY = 20_000
"""Physical terminals per country: slots ``0 .. TERMINALS_PER_COUNTRY``."""
ONLINE_SLOT = 50_000
"""Online merchants' terminals: slots ``ONLINE_SLOT ..`` (a few, very busy)."""
ONLINE_MERCHANTS = 60

Columns = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class Incident:
    """One compromised card's fraud: its transactions are labelled ``fraud = 1`` and
    ``incident = id``."""

    id: int
    kind: str
    """One of :data:`KINDS`."""
    card_id: int
    first_ms: int
    """Event time of its first and last transaction."""
    last_ms: int
    transactions: int
    history: bool = True
    """False: the card is first seen during the attack (no normal traffic of its own)."""
    amount: float = 0.0
    """The fraudulent transactions' total amount."""


@dataclass
class LabelledTraffic:
    """Generated transactions in arrival order, with labels.

    ``columns`` are named and encoded as :func:`fraudstream.kafka.schema.decode_batch` decodes
    them (``country`` is the packed ISO alpha-2 code), plus ``fraud`` (int8, 0/1) and
    ``incident`` (int32, the :class:`Incident` id, -1 for normal transactions).
    """

    columns: Columns
    incidents: list[Incident]
    cards: int
    start_ms: int
    end_ms: int
    """Event times lie in ``[start_ms, end_ms)``."""
    disorder_ms: int
    profiles: Columns | None = None
    """The cards' profiles, consistent with the traffic (:func:`card_profiles`): ``card_id``,
    ``home_country`` (packed code), ``account_opened`` (epoch ms), ``avg_amount``."""

    def __len__(self) -> int:
        return len(self.columns["txn_id"])

    @property
    def days(self) -> float:
        """Event-time span in days."""
        return (self.end_ms - self.start_ms) / DAY_MS

    def statistics(self) -> dict[str, Any]:
        """Cards, compromised share, fraud share of transactions, incidents by kind."""
        fraud = self.columns["fraud"]
        by_kind: dict[str, int] = {}
        for i in self.incidents:
            by_kind[i.kind] = by_kind.get(i.kind, 0) + 1
        active = len(np.unique(self.columns["card_id"]))
        return {
            "transactions": len(self),
            "cards": self.cards,
            "active_cards": active,
            "days": self.days,
            "compromised_cards": len({i.card_id for i in self.incidents}),
            "compromised_share": len({i.card_id for i in self.incidents}) / self.cards,
            "fraudulent_transactions": int(fraud.sum()),
            "fraud_share": float(fraud.mean()) if len(fraud) else 0.0,
            "incidents_by_kind": by_kind,
        }


def country_codes() -> npt.NDArray[np.int64]:
    """Packed ISO alpha-2 codes of :data:`~fraudstream.kafka.schema.COUNTRIES`, by index."""
    return np.array([_core.pack_code(c) for c in COUNTRIES], np.int64)


def _country_weights() -> npt.NDArray[np.float64]:
    """Where cards live: COUNTRIES is ordered roughly by size, weights fall like Zipf's law."""
    w = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 0.9
    return np.asarray(w / w.sum(), np.float64)


def _abroad(rng: np.random.Generator, home: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """``k`` distinct countries per row, none of them the row's home (popular ones likelier)."""
    n = len(COUNTRIES)
    # Gumbel top-k: distinct weighted draws without replacement, vectorized
    keys = np.log(_country_weights())[None, :] - np.log(-np.log(rng.random((len(home), n))))
    keys[np.arange(len(home)), home] = -np.inf
    return np.argsort(-keys, axis=1)[:, :k].astype(np.int64)


def _diurnal_times(rng: np.random.Generator, n: int, start_ms: int, span_ms: int) -> npt.NDArray[np.int64]:
    """``n`` event times in ``[start, start + span)``, denser by day than at night."""
    first_hour = start_ms // HOUR_MS
    hours = np.arange(first_hour, (start_ms + span_ms - 1) // HOUR_MS + 1)
    lo = np.maximum(hours * HOUR_MS, start_ms)
    hi = np.minimum((hours + 1) * HOUR_MS, start_ms + span_ms)
    weight = DIURNAL[hours % 24] * (hi - lo)
    pick = rng.choice(len(hours), n, p=weight / weight.sum())
    return np.asarray(lo[pick] + (rng.random(n) * (hi - lo)[pick]).astype(np.int64), np.int64)


def _terminal(country: npt.NDArray[np.int64], slot: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.asarray(country * 100_000 + slot, np.int64)


@dataclass
class _Cards:
    """Per-card profiles of the normal traffic."""

    home: npt.NDArray[np.int64]
    second: npt.NDArray[np.int64]
    """A cross-border commuter's second country (-1: none)."""
    activity: npt.NDArray[np.float64]
    habit: npt.NDArray[np.float64]
    """Typical amount."""
    favourites: npt.NDArray[np.int64]
    """Terminals (slots) of the shops the card uses most at home."""
    shops: npt.NDArray[np.int64]
    """The online merchants the card uses most."""
    trip_start: npt.NDArray[np.int64]
    trip_end: npt.NDArray[np.int64]
    """``trip_start == trip_end``: no trip."""
    trip_countries: npt.NDArray[np.int64]
    trip_legs: npt.NDArray[np.int64]
    first_use: npt.NDArray[np.int64]
    """When the card's number was issued (most cards: at the start); before it, the card
    transacts under its old number."""


def _card_profiles(
    rng: np.random.Generator,
    cards: int,
    start_ms: int,
    span_ms: int,
    travel_per_card_day: float,
    new_cards: float = 0.0,
) -> _Cards:
    home = rng.choice(len(COUNTRIES), cards, p=_country_weights()).astype(np.int64)
    other = _abroad(rng, home, 3)
    second = np.where(rng.random(cards) < 0.04, other[:, 0], -1)
    duration = (np.clip(rng.gamma(2.0, 2.0, cards), 1.0, 14.0) * DAY_MS).astype(np.int64)
    days = span_ms / DAY_MS + duration / DAY_MS
    travels = rng.random(cards) < 1.0 - np.exp(-travel_per_card_day * days)
    trip_start = start_ms - duration + (rng.random(cards) * (span_ms + duration)).astype(np.int64)
    return _Cards(
        home=home,
        second=second,
        activity=np.minimum(rng.lognormal(0.0, 1.2, cards), 40.0),
        habit=rng.lognormal(np.log(35.0), 0.7, cards),
        favourites=rng.integers(0, TERMINALS_PER_COUNTRY, (cards, 6)),
        shops=np.minimum(rng.zipf(1.6, (cards, 2)) - 1, ONLINE_MERCHANTS - 1),
        trip_start=trip_start,
        trip_end=np.where(travels, trip_start + duration, trip_start),
        trip_countries=_abroad(rng, home, 3),
        trip_legs=rng.choice(np.array([1, 2, 3], np.int64), cards, p=[0.6, 0.3, 0.1]),
        first_use=(
            np.where(
                rng.random(cards) < new_cards,
                start_ms + (rng.random(cards) * span_ms).astype(np.int64),
                start_ms,
            )
            if new_cards > 0
            else np.full(cards, start_ms, np.int64)
        ),
    )


def _normal(
    rng: np.random.Generator, n: int, p: _Cards, start_ms: int, span_ms: int, online_share: float
) -> Columns:
    """``n`` normal transactions: heavy-tailed activity, sessions of a few transactions
    minutes apart, home / commuting / trip countries, online purchases (mostly at the card's
    two usual merchants; a third of them abroad, at big merchants in :data:`ONLINE_HUBS`),
    amounts around each card's habit."""
    cards = len(p.home)
    card = rng.choice(cards, n, p=p.activity / p.activity.sum()).astype(np.int64)
    base = _diurnal_times(rng, n, start_ms, span_ms)
    # sessions: a third of the transactions follow the card's previous one by minutes
    order = np.lexsort((base, card))
    card, base = card[order], base[order]
    first = np.r_[True, card[1:] != card[:-1]] if n else np.zeros(0, bool)
    anchor = first | (rng.random(n) >= 0.35)
    at = np.maximum.accumulate(np.where(anchor, np.arange(n), 0))
    gap = np.where(anchor, 0, rng.exponential(8 * MINUTE_MS, n) + 20_000).astype(np.int64)
    run = np.cumsum(gap)
    ts = np.minimum(base[at] + run - run[at], start_ms + span_ms - 1)

    home = p.home[card]
    leg_ms = np.maximum(1, (p.trip_end - p.trip_start) // p.trip_legs)[card]
    on_trip = (ts >= p.trip_start[card]) & (ts < p.trip_end[card])
    leg = np.clip((ts - p.trip_start[card]) // leg_ms, 0, p.trip_legs[card] - 1)
    away = on_trip & (rng.random(n) < 0.85)
    commute = (p.second[card] >= 0) & (rng.random(n) < 0.3)
    country = np.where(away, p.trip_countries[card, leg], np.where(commute, p.second[card], home))
    # online: a few big merchants take most purchases; a third of them sit abroad, each in
    # its own hub country
    online = rng.random(n) < online_share
    cross = online & (rng.random(n) < 0.35)
    merchant = np.where(
        rng.random(n) < 0.8,
        p.shops[card, rng.integers(0, p.shops.shape[1], n)],
        np.minimum(rng.zipf(1.6, n) - 1, ONLINE_MERCHANTS - 1),
    )
    hubs = np.array([COUNTRIES.index(c) for c in ONLINE_HUBS], np.int64)
    country = np.where(online, np.where(cross, hubs[merchant % len(hubs)], home), country)

    favourite = p.favourites[card, rng.integers(0, p.favourites.shape[1], n)]
    local = (country == home) & (rng.random(n) < 0.7)
    slot = np.where(
        online,
        ONLINE_SLOT + merchant,
        np.where(local, favourite, rng.integers(0, TERMINALS_PER_COUNTRY, n)),
    )
    amount = p.habit[card] * rng.lognormal(0.0, 0.6, n)
    amount = np.where(rng.random(n) < 0.01, amount * rng.uniform(4.0, 12.0, n), amount)
    # a card replaced during the span: the old number (2 x cards + card) until the new one's
    # first use, the card's own number after it
    card = np.where(ts < p.first_use[card], 2 * cards + card, card)
    return {
        "card": card,
        "ts": ts.astype(np.int64),
        "amount": np.maximum(np.round(amount, 2), 0.5),
        "country": country.astype(np.int64),
        "terminal": _terminal(country, slot),
    }


def _incident(
    rng: np.random.Generator, kind: str, home: int, habit: float
) -> tuple[np.ndarray[Any, Any], ...]:
    """Offsets from the incident's start, countries, amounts and terminal slots of one
    incident of ``kind`` on a card living in ``home`` with typical amount ``habit``."""
    foreign = _abroad(rng, np.array([home]), 4)[0]
    physical = rng.integers(0, TERMINALS_PER_COUNTRY, 32)
    online = ONLINE_SLOT + rng.integers(0, ONLINE_MERCHANTS, 32)
    if kind == "story":  # 23 small transactions in 4 countries within 6 hours
        k = 23
        t = np.arange(k) * (6 * HOUR_MS // k) + rng.integers(0, MINUTE_MS, k)
        where = np.array([COUNTRIES.index(c) for c in STORY_COUNTRIES])[rng.permutation(np.arange(k) % 4)]
        return t, where, np.round(rng.uniform(1.0, 15.0, k), 2), physical[:k]
    if kind == "burst":  # 5-8 transactions in 3-4 foreign countries within minutes
        k, spread = int(rng.integers(5, 9)), int(rng.integers(3, 5))
        t = np.sort(rng.integers(0, int(rng.integers(1, 6)) * MINUTE_MS, k))
        t -= t[0]
        where = foreign[np.arange(k) % spread]
        slot = np.where(rng.random(k) < 0.5, online[:k], physical[:k])
        return t, where, np.round(rng.uniform(20.0, 400.0, k), 2), slot
    if kind == "spread":  # the story's shape: many small transactions across countries for hours
        k, spread = int(rng.integers(12, 26)), int(rng.integers(3, 5))
        step = int(rng.uniform(3.0, 8.0) * HOUR_MS) // k
        t = np.arange(k) * step + rng.integers(0, step, k)
        where = foreign[rng.permutation(np.arange(k) % spread)]
        return t, where, np.round(rng.uniform(1.0, 15.0, k), 2), physical[:k]
    if kind == "testing":  # tiny online payments test the card, then large ones cash it in
        tests, large = int(rng.integers(3, 9)), int(rng.integers(1, 4))
        t1 = np.sort(rng.integers(0, int(rng.integers(5, 31)) * MINUTE_MS, tests))
        after = int(t1.max()) + int(rng.integers(10, 121)) * MINUTE_MS
        t2 = after + np.sort(rng.integers(0, 20 * MINUTE_MS, large))
        t = np.r_[t1 - t1[0], t2 - t1[0]]
        hub = COUNTRIES.index(ONLINE_HUBS[int(rng.integers(0, len(ONLINE_HUBS)))])
        where = np.where(rng.random(tests + large) < 0.6, hub, foreign[0])
        amounts = np.r_[
            rng.uniform(0.5, 2.0, tests), np.maximum(150.0, habit * rng.uniform(10.0, 30.0, large))
        ]
        return t, where, np.round(np.asarray(amounts, np.float64), 2), online[: tests + large]
    if kind == "spree":  # a few large amounts at home, at shops the card never used, within the hour
        k = int(rng.integers(3, 6))
        t = np.sort(rng.integers(0, int(rng.integers(20, 61)) * MINUTE_MS, k))
        amounts = np.maximum(100.0, habit * rng.uniform(8.0, 20.0, k))
        return t - t[0], np.full(k, home), np.round(amounts, 2), physical[:k]
    if kind == "cashout":  # a skimmed card: withdrawals in one foreign country over a few hours
        k = int(rng.integers(3, 7))
        t = np.sort(rng.integers(0, int(rng.uniform(1.0, 4.0) * HOUR_MS), k))
        amounts = rng.choice(np.array([100.0, 200.0, 250.0, 300.0, 400.0, 500.0]), k)
        return t - t[0], np.full(k, foreign[0]), amounts, physical[:k]
    raise ValueError(f"unknown incident kind {kind!r}; expected one of {KINDS}")


def _family(rng: np.random.Generator, kind: str, home: int, habit: float) -> tuple[np.ndarray[Any, Any], ...]:
    """Offsets, countries, amounts and terminal slots of one incident of a scenario family
    (:data:`FAMILIES`), parameters drawn at random:

    - 8-40 transactions at uniform times over 20 min - 12 h (log-uniform), the first at 0;
    - 2-6 countries, foreign but for the card's own country in 30% of incidents; visited in
      turn (a cloned card on the move) or interleaved (clones used at once), half and half;
    - amounts ``habit x m`` with ``m`` log-uniform in 1-20 per incident (log-normal
      scatter, sigma 0.35).

    Families: ``multi_country``: a new physical terminal for every transaction;
    ``online``: online merchants; ``drain``: one foreign terminal takes 70-100% of the
    transactions (withdrawals in tens); ``card_testing``: 3-10 tiny online payments
    (0.50-3.00) in the first fifth of the time, then the rest at 3-20x the habit.
    """
    k = int(rng.integers(8, 41))
    span = int(np.exp(rng.uniform(np.log(20 * MINUTE_MS), np.log(12 * HOUR_MS))))
    t = np.sort(rng.integers(0, span + 1, k))
    t -= t[0]
    spread = int(rng.integers(2, 7))
    places = _abroad(rng, np.array([home]), spread)[0]
    if rng.random() < 0.3:
        places[-1] = home
    visit = np.r_[np.arange(spread), rng.integers(0, spread, k - spread)]
    rng.shuffle(visit)
    if rng.random() < 0.5:
        visit = np.sort(visit)
    where = places[visit]
    m = float(np.exp(rng.uniform(0.0, np.log(20.0))))
    amount = habit * m * rng.lognormal(0.0, 0.35, k)
    slot = rng.integers(0, TERMINALS_PER_COUNTRY, k)
    online = ONLINE_SLOT + rng.integers(0, ONLINE_MERCHANTS, k)
    if kind == "online":
        slot = online
    elif kind == "drain":
        main = rng.random(k) < rng.uniform(0.7, 1.0)
        main[0] = True
        where = np.where(main, places[0], where)
        slot = np.where(main, slot[0], slot)
        amount = np.maximum(20.0, np.round(amount / 10.0) * 10.0)
    elif kind == "card_testing":
        tests = int(rng.integers(3, min(10, k - 3) + 1))
        t = np.r_[
            np.sort(rng.integers(0, span // 5 + 1, tests)),
            np.sort(rng.integers(span // 5, span + 1, k - tests)),
        ]
        t -= t[0]
        big = float(np.exp(rng.uniform(np.log(3.0), np.log(20.0))))
        amount = np.r_[rng.uniform(0.5, 3.0, tests), habit * big * rng.lognormal(0.0, 0.35, k - tests)]
        slot = np.where(np.arange(k) < tests, online, np.where(rng.random(k) < 0.5, online, slot))
    elif kind != "multi_country":
        raise ValueError(f"unknown scenario family {kind!r}; expected one of {list(FAMILIES)}")
    return t, where, np.round(np.maximum(amount, 0.5), 2), slot


def labelled_transactions(
    events: int,
    *,
    cards: int = 10_000,
    days: float | None = None,
    compromised: float = 0.003,
    incidents: Mapping[str, int] | None = None,
    mix: Mapping[str, float] | None = None,
    first_seen: float = 0.0,
    story: bool = False,
    per_card_day: float = 3.0,
    travel_per_card_day: float = 0.01,
    new_cards: float = 0.02,
    warm_up: float | None = None,
    online_share: float = 0.12,
    disorder_ms: int = 5_000,
    start_ms: int = DEFAULT_START_MS,
    seed: int = 0,
) -> LabelledTraffic:
    """``events`` card transactions with labelled fraud, in arrival order (:class:`LabelledTraffic`).

    Normal traffic: each card lives in a home country (big countries likelier); 4% commute
    across a border (30% of their transactions in a second country); a card starts a trip
    with probability ``travel_per_card_day`` a day (1-14 days, 1-3 countries; 85% of its
    transactions abroad meanwhile); ``online_share`` of transactions are online, a third of
    them at big merchants abroad (:data:`ONLINE_HUBS`). Activity is heavy-tailed (log-normal,
    sigma 1.2, capped at 40x the median: the busiest 1% of cards transact ~15x the median),
    a third of transactions follow the card's previous one within minutes (a shopping trip),
    times are denser by day. ``new_cards`` of the cards are replaced during the span (at a
    uniform time: before it the card transacts under its old number, ``2 x cards + card``,
    after it under its own, first seen then): new card numbers in normal traffic too, so that
    a card without history is not fraud by itself.
    Amounts are log-normal around each card's habit (median 35), with 1% large purchases at
    4-12x. Terminals: six favourites per card at home for 70% of home purchases.

    Fraud: ``compromised`` of the cards (or exactly ``incidents`` = {kind: count}) each get
    one incident, a shape of :data:`SHAPES` drawn by its share, starting after a warm-up at
    a uniform time; the card's normal traffic goes on. ``story`` adds the story's incident
    (23 small transactions in FR, DE, ES, IT within 6 hours, 2 hours in) as incident 0, on a
    quiet card. Shapes: ``burst`` (5-8 in 3-4 foreign countries within 1-5 min),
    ``spread`` (12-25 small ones in 3-4 foreign countries over 3-8 h), ``testing`` (3-8
    tiny online payments within half an hour, then 1-3 at 10-30x the habit),
    ``spree`` (3-5 at 8-20x the habit at home within the hour), ``cashout`` (3-6
    withdrawals in one foreign country over 1-4 h). ``mix`` ({kind: share}) draws from
    other kinds, such as the scenario families (:data:`FAMILIES`, :func:`_family`);
    ``first_seen`` of the incidents happen on card numbers first seen during the attack
    (ids from ``cards`` on, no normal traffic), the others on normal cards with history.

    Incidents start after a warm-up: ``warm_up`` days (default: a quarter of the span, at
    most a day); the story's 2 hours after it when ``warm_up`` is given.

    Time: ``days`` of event time from ``start_ms`` (default: ``events / (cards *
    per_card_day)``). Every transaction arrives within ``disorder_ms`` of its event time, so
    in arrival order ``event_time >= running max - disorder_ms``; ``txn_id`` numbers rows in
    arrival order. Deterministic per arguments.
    """
    if events < 1 or cards < 1:
        raise ValueError(f"events and cards must be >= 1, got {events} and {cards}")
    if not 0.0 <= compromised < 1.0:
        raise ValueError(f"compromised must be a share of cards in [0, 1), got {compromised}")
    rng = np.random.default_rng(seed)
    days = events / (cards * per_card_day) if days is None else days
    span = int(days * DAY_MS)
    if span < HOUR_MS:
        raise ValueError(f"the traffic must span at least an hour of event time, got {days} days")
    profiles = _card_profiles(rng, cards, start_ms, span, travel_per_card_day, new_cards)

    drawable = {**SHAPES, **FAMILIES}
    unknown = sorted((set(incidents or {}) | set(mix or {})) - set(drawable))
    if unknown:
        raise ValueError(f"unknown incident kinds {unknown}; expected some of {list(drawable)}")
    if not 0.0 <= first_seen <= 1.0:
        raise ValueError(f"first_seen must be a share of incidents in [0, 1], got {first_seen}")
    if incidents is None:
        shares = dict(SHAPES if mix is None else mix)
        p = np.array(list(shares.values()), np.float64)
        drawn = rng.choice(list(shares), round(cards * compromised), p=p / p.sum())
        kinds = [str(k) for k in drawn]
    else:
        kinds = [k for k in drawable for _ in range(int(incidents.get(k, 0)))]
    kinds = ["story", *kinds] if story else kinds
    # cards first seen during their attack: new card numbers after the normal ones
    new = rng.random(len(kinds)) < first_seen if first_seen > 0 else np.zeros(len(kinds), bool)
    new[: int(story)] = False
    if int((~new).sum()) > cards // 2:
        raise ValueError(
            f"{int((~new).sum())} incidents on {cards} cards: at most half the cards can be compromised"
        )
    quiet = np.argsort(profiles.activity, kind="stable")[: max(1, cards // 10)]
    victims = rng.permutation(cards)
    if story:
        chosen = quiet[rng.integers(0, len(quiet))]
        victims = np.r_[chosen, victims[victims != chosen]]
    quiet_ms = 0 if warm_up is None else int(warm_up * DAY_MS)
    warm_up_ms = min(span // 4, DAY_MS) if warm_up is None else quiet_ms
    parts: list[Columns] = []
    found: list[tuple[str, int, int, int, int, bool, float]] = []
    fresh_cards: list[tuple[int, int, float]] = []
    held = np.cumsum(~new) - 1
    fresh = np.cumsum(new) - 1
    for i, kind in enumerate(kinds):
        if new[i]:  # a stolen card number never seen before: a home and a habit like anyone's
            card = cards + int(fresh[i])
            home = int(rng.choice(len(COUNTRIES), p=_country_weights()))
            habit = float(rng.lognormal(np.log(35.0), 0.7))
            fresh_cards.append((card, home, habit))
        else:
            card = int(victims[held[i]])
            home, habit = int(profiles.home[card]), float(profiles.habit[card])
        shape = _family if kind in FAMILIES else _incident
        t, where, amount, slot = shape(rng, kind, home, habit)
        latest = max(start_ms + warm_up_ms, start_ms + span - 1 - int(t.max()))
        t0 = (
            start_ms + quiet_ms + 2 * HOUR_MS
            if kind == "story"
            else int(rng.integers(start_ms + warm_up_ms, latest + 1))
        )
        ts = np.minimum(t0 + t.astype(np.int64), start_ms + span - 1)
        parts.append({
            "card": np.full(len(ts), card, np.int64), "ts": ts, "amount": amount.astype(np.float64),
            "country": where.astype(np.int64), "terminal": _terminal(where.astype(np.int64), slot),
            "incident": np.full(len(ts), i, np.int32),
        })  # fmt: skip
        found.append((kind, card, int(ts.min()), int(ts.max()), len(ts), not new[i], float(amount.sum())))
    frauds = sum(len(p["ts"]) for p in parts)
    if frauds > events:
        raise ValueError(f"{frauds} fraudulent transactions do not fit in {events} events")
    normal = _normal(rng, events - frauds, profiles, start_ms, span, online_share)
    normal["incident"] = np.full(events - frauds, -1, np.int32)
    merged = {k: np.concatenate([normal[k], *(p[k] for p in parts)]) for k in normal}

    arrival = merged["ts"] + rng.integers(0, disorder_ms + 1, events)
    order = np.lexsort((merged["ts"], arrival))
    merged = {k: v[order] for k, v in merged.items()}
    card_id = merged["card"]
    columns: Columns = {
        "txn_id": np.arange(events, dtype=np.int64),
        "card_id": card_id,
        "customer_id": card_id * 17 // 20,  # about one customer in six holds two cards
        "terminal_id": merged["terminal"],
        "amount": merged["amount"],
        "country": country_codes()[merged["country"]],
        "event_time": merged["ts"],
        "fraud": (merged["incident"] >= 0).astype(np.int8),
        "incident": merged["incident"],
    }
    return LabelledTraffic(
        columns=columns,
        incidents=[Incident(i, *f) for i, f in enumerate(found)],
        cards=cards,
        start_ms=start_ms,
        end_ms=start_ms + span,
        disorder_ms=disorder_ms,
        profiles=card_profiles(profiles, fresh_cards, start_ms, seed),
    )


PROFILE_AMOUNT_FACTOR = float(np.exp(0.6**2 / 2))
"""A card's normal amounts are its habit times a log-normal of sigma 0.6: their mean is the
habit times this."""


def card_profiles(cards: _Cards, fresh: list[tuple[int, int, float]], start_ms: int, seed: int) -> Columns:
    """Profiles of every card number the traffic can use (a customer's record at the bank):
    the normal cards, their replaced old numbers (``2 x cards + card``, same customer) and the
    stolen numbers first seen during an attack (``fresh``: card, home, habit). ``home_country``
    is the card's home (packed code), ``avg_amount`` the mean of its normal amounts (habit x
    :data:`PROFILE_AMOUNT_FACTOR`, in cents), ``account_opened`` 30 days to 15 years before
    ``start_ms`` (log-uniform, drawn from a generator of its own: the traffic is the same with
    or without profiles)."""
    n = len(cards.home)
    replaced = np.flatnonzero(cards.first_use > start_ms)
    card_id = np.r_[np.arange(n), 2 * n + replaced, [c for c, _, _ in fresh]].astype(np.int64)
    home = np.r_[cards.home, cards.home[replaced], [h for _, h, _ in fresh]].astype(np.int64)
    habit = np.r_[cards.habit, cards.habit[replaced], [a for _, _, a in fresh]].astype(np.float64)
    opened = _account_opened(np.random.default_rng([seed, 0x9F0F]), n + len(fresh), start_ms)
    opened = np.r_[opened[:n], opened[replaced], opened[n:]]
    return {
        "card_id": card_id,
        "home_country": country_codes()[home],
        "account_opened": opened.astype(np.int64),
        "avg_amount": np.round(habit * PROFILE_AMOUNT_FACTOR, 2),
    }


def _account_opened(rng: np.random.Generator, n: int, start_ms: int) -> npt.NDArray[np.int64]:
    """``n`` account opening times, 30 days to 15 years before ``start_ms`` (log-uniform)."""
    age_days = np.exp(rng.uniform(np.log(30.0), np.log(15 * 365.0), n))
    return np.asarray(start_ms - (age_days * DAY_MS).astype(np.int64), np.int64)


SCENARIO_TRAFFIC: dict[str, Any] = {"cards": 20_000, "days": 7.0, "incidents": 240, "per_card_day": 3.0}
"""The scenario evaluation's traffic per seed: 20k cards for a week (420k transactions),
240 random incidents of the scenario families, half of them on cards first seen during the
attack."""


def scenario_traffic(
    seed: int,
    *,
    cards: int = 20_000,
    days: float = 7.0,
    incidents: int = 240,
    per_card_day: float = 3.0,
    first_seen: float = 0.5,
    mix: Mapping[str, float] | None = None,
    warm_up: float = 1.0,
) -> LabelledTraffic:
    """Ordinary traffic of ``cards`` cards over ``days`` with ``incidents`` random incidents of
    the scenario families (:data:`FAMILIES`, or ``mix``), ``first_seen`` of them on new card
    numbers, starting after ``warm_up`` days: the input of the prevention evaluation
    (:mod:`fraudstream.fraud.prevention`)."""
    return labelled_transactions(
        int(cards * per_card_day * days) + 25 * incidents,
        cards=cards,
        days=days,
        compromised=incidents / cards,
        mix=FAMILIES if mix is None else mix,
        first_seen=first_seen,
        warm_up=warm_up,
        seed=seed,
    )
