"""One alert type for every path, and the cool-down that makes it one alert per incident.

:class:`Alert` is what the rule set, the fraud detector, a window processor and a user's own
processor return, what the in-process pipeline hands to its sink and what the Kafka pipeline
publishes (:meth:`Alert.to_json`). :class:`Cooldown` is the one implementation of "one alert
per card per incident": a candidate alert is kept unless the card has a kept alert within the
cool-down of event time (on either side, so disorder cannot split an incident in two); the
others are counted as suppressed.

Invariants: a cool-down's decisions depend only on the order of the candidates it is given
(processors give them in arrival order of their triggering transactions, rules in their
declared order for one transaction), never on how the input was cut into batches.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream import _core
from fraudstream._columns import int_column

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Alert:
    """One alert: which card, which rule or model, why, and the transaction that raised it.

    ``reasons`` are sentences an analyst can act on (a rule's figures, or the model's top
    feature contributions). ``trigger_row`` is the triggering transaction's row in the batch
    given to ``process`` (-1 when not known); the Kafka pipeline fills ``partition`` and
    ``offset`` from the triggering message. ``latency_ms`` is wall-clock time from the
    trigger's arrival to the alert (None when the arrival time is unknown).
    """

    card_id: int
    rule: str
    reasons: tuple[str, ...]
    event_time: int
    trigger_txn_id: int
    trigger_row: int = -1
    score: float | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    partition: int | None = None
    offset: int | None = None
    figures: Mapping[str, float] = field(default_factory=dict)
    window: tuple[int, int] | None = None

    @property
    def reason(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons)

    def located(self, **where: Any) -> Alert:
        """A copy with some fields set (``partition``, ``offset``, ``latency_ms``, ...)."""
        unknown = where.keys() - _ALERT_FIELDS
        if unknown:
            raise TypeError(f"Alert has no field {', '.join(sorted(unknown))}")
        # (twice per alert on the Kafka path: dataclasses.replace re-ran __init__, 3.6 us a call)
        copy = object.__new__(Alert)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(where)
        return copy

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the alert record of the Kafka pipeline)."""
        return {
            "card_id": self.card_id,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "score": self.score,
            "model_version": self.model_version,
            "event_time": self.event_time,
            "trigger_txn_id": self.trigger_txn_id,
            "partition": self.partition,
            "offset": self.offset,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "figures": {k: _plain(v) for k, v in self.figures.items()},
            "window": None if self.window is None else list(self.window),
        }

    def to_json(self) -> bytes:
        """The alert as compact JSON bytes."""
        return _COMPACT_JSON.encode(self.to_dict()).encode()

    def identity(self) -> tuple[int, str, int, int]:
        """What two runs over the same input agree on (latency and location aside)."""
        return (self.card_id, self.rule, self.trigger_txn_id, self.event_time)


_ALERT_FIELDS = frozenset(f.name for f in dataclasses.fields(Alert))
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every alert (``json.dumps`` with options builds one per call)."""


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()  # (then rounded like any float)
    if isinstance(v, float):
        return round(v, 6)
    return v


class Cooldown:
    """One alert per card per incident, in event time.

    A candidate at time ``t`` is kept unless the card's latest kept alert ``last`` satisfies
    ``|t - last| < period``; kept candidates move ``last`` forward. An entry more than twice
    the period behind the newest candidate time seen so far (in the order given, this
    candidate included) has expired: it suppresses nothing, and a kept candidate replaces it.
    Expired entries are pruned now and then (the bound keeps the state proportional to cards
    alerted recently); since an expired entry counts as absent, when pruning happens never
    changes a decision, and :meth:`snapshot` writes the live entries only, sorted by card, so
    its bytes depend only on the candidates given, never on how they were split into calls.

    The state and the decisions are the core's (``_core.Cooldown``, one pass over the
    candidates); ``tests/test_cooldown.py`` checks them against the plain Python they were.
    """

    def __init__(self, period_ms: int) -> None:
        if period_ms < 0:
            raise ValueError(f"cool-down must be >= 0 ms, got {period_ms}")
        self.period = int(period_ms)
        self._core = _core.Cooldown(self.period)

    @property
    def suppressed(self) -> int:
        """Candidates suppressed so far (part of the state)."""
        return int(self._core.suppressed)

    def __len__(self) -> int:
        """Entries held (live, or expired and not pruned yet)."""
        return len(self._core)

    def decide(
        self,
        cards: IntArray,
        times: IntArray,
        *,
        rows: IntArray | None = None,
        forget: tuple[IntArray, IntArray] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Which candidates (in the order given) are kept; the rest count as suppressed.

        ``forget=(at, cards)`` with the candidates' ``rows`` (ascending): card ``cards[i]``'s
        entry is forgotten before the first candidate at a row ``>= at[i]`` (a card evicted by
        the caller's cap, whose later alerts start afresh)."""
        if forget is not None and len(forget[0]):
            assert rows is not None, "forget needs the candidates' rows"
            return self._decide_forgetting(cards, times, rows, forget)
        return self._core.decide(int_column(cards, "card"), int_column(times, "time"))

    def _decide_forgetting(
        self, cards: IntArray, times: IntArray, rows: IntArray, forget: tuple[IntArray, IntArray]
    ) -> npt.NDArray[np.bool_]:
        """:meth:`decide` in the stretches between the rows where cards are forgotten."""
        at, gone = forget
        keep = np.zeros(len(cards), dtype=bool)
        # forgetting at row r comes before the candidates at rows >= r
        bounds = np.searchsorted(rows, at, side="left").tolist()
        lo = 0
        for bound, card in zip(bounds, gone.tolist(), strict=True):
            if bound > lo:
                keep[lo:bound] = self.decide(cards[lo:bound], times[lo:bound])
                lo = bound
            self._core.forget(int(card))
        keep[lo:] = self.decide(cards[lo:], times[lo:])
        return keep

    def prune_above(self, entries: int) -> None:
        """Prunes expired entries whenever more than ``entries`` are held (by default 4,096,
        then twice the entries left by the last prune). Changes no decision and no byte."""
        self._core.prune_above(entries)

    def snapshot(self) -> bytes:
        """Versioned bytes: the live entries (cards' last kept alert times, by card) and the
        counters."""
        return bytes(self._core.snapshot())

    def restore(self, data: bytes) -> None:
        """Replaces the state by a snapshot's (:class:`~fraudstream.errors.SnapshotError` for
        bytes that are not one)."""
        self._core.restore(data)


__all__ = ["Alert", "Cooldown"]
