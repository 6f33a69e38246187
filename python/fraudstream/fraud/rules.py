"""Alert rules declared as data, fired by early firing of :class:`~fraudstream.WindowedAggregation`.

A :class:`Rule` is a hopping window, the aggregates it keeps per card and a predicate over
them (evaluated in Rust); it fires the moment the predicate first holds for an open window
(``early_fire``), so detection delay is the time to process the triggering transaction. A
:class:`RuleSet` runs its rules side by side and keeps one alert per card per incident: after
an alert, the card's further alerts are suppressed for a cool-down.

>>> import numpy as np
>>> rules = RuleSet(default_rules(), cooldown="24h")
>>> t0 = 1_700_000_000_000
>>> alerts = rules.process({
...     "card": np.full(5, 42), "ts": t0 + np.arange(5) * 30_000,
...     "amount": np.array([9.99, 12.5, 7.25, 30.0, 4.1]), "country": np.array([250, 276, 724, 250, 380]),
... })
>>> [(a.card, a.rule) for a in alerts]
[(42, 'velocity_5m')]
>>> print(alerts[0].reason)
velocity_5m: 5 transactions in 4 countries within 5 min (total 63.84)

Rules can come from TOML (``RuleSet.from_toml``)::

    [[rules]]
    name = "spread_6h"
    size = "6h"
    slide = "15m"
    condition = "n >= 15 and countries >= 4"
    reason = "{n} transactions in {countries} countries within 6 h"
    [rules.aggregations]
    n = "count"
    countries = ["count_distinct", "country"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudstream._columns import get_column, int_column
from fraudstream.errors import ConfigError
from fraudstream.windows import (
    AggregationSpec,
    Duration,
    EmitKind,
    Hopping,
    WindowedAggregation,
    WindowOutput,
    hopping,
    to_millis,
)


def _human(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


@dataclass(frozen=True)
class Rule:
    """An alert rule: per card, a hopping window, its aggregates and a predicate over them.

    ``reason`` is a ``str.format`` template over the aggregate names plus ``{window}``
    (e.g. ``"6 h"``), ``{card}`` and ``{rule}``.
    """

    name: str
    window: Hopping
    aggregations: Mapping[str, AggregationSpec]
    condition: str
    reason: str

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Rule:
        """A rule from a mapping (a TOML table): name, size, slide, aggregations (name ->
        ``"count"`` or ``[function, column]``), condition, reason."""
        try:
            aggs: dict[str, AggregationSpec] = {}
            for key, spec in dict(doc["aggregations"]).items():
                aggs[str(key)] = spec if isinstance(spec, str) else (str(spec[0]), str(spec[1]))
            return cls(
                name=str(doc["name"]),
                window=hopping(doc["size"], doc.get("slide", doc["size"])),
                aggregations=aggs,
                condition=str(doc["condition"]),
                reason=str(doc.get("reason", doc["condition"])),
            )
        except (KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"rule {dict(doc).get('name', '?')!r}: missing or malformed field {e}") from e


@dataclass(frozen=True)
class Alert:
    """One alert: which card, which rule, why, and the figures behind it.

    ``row`` is the triggering transaction (its row in the batch passed to
    :meth:`RuleSet.process`), ``time`` its event time.
    """

    card: int
    time: int
    row: int
    rule: str
    reason: str
    window_start: int
    window_end: int
    figures: dict[str, Any] = field(default_factory=dict)


def default_rules(*, habit_column: str | None = None) -> list[Rule]:
    """The design's velocity rule and multi-horizon rules for slow incidents.

    - ``velocity_5m``: HOP(5 min, 1 min), COUNT(DISTINCT country) >= 3 and COUNT(*) >= 5;
    - ``burst_1h``: HOP(1 h, 5 min), 8 transactions in 3 countries;
    - ``spread_6h``: HOP(6 h, 15 min), 15 transactions in 4 countries (the story: 23 small
      transactions in 4 countries in 6 hours);
    - ``spread_24h``: HOP(24 h, 1 h), 25 transactions in 4 countries;
    - with ``habit_column`` (a per-transaction amount over the card's usual amount, such as
      the feature ``CUSTOMER_ID_AMOUNT_RATIO``): ``spend_vs_habit_{1h,6h,24h}``, the summed
      ratio reaching 8, 12 and 20 usual transactions' worth.
    """
    n: AggregationSpec = "count"
    countries: AggregationSpec = ("count_distinct", "country")
    total: AggregationSpec = ("sum", "amount")
    rules = [
        Rule(
            "velocity_5m",
            hopping("5m", "1m"),
            {"n": n, "countries": countries, "total": total},
            "countries >= 3 and n >= 5",
            "{rule}: {n} transactions in {countries} countries within {window} (total {total:.2f})",
        )
    ]
    for name, size, slide, count, spread in (
        ("burst_1h", "1h", "5m", 8, 3),
        ("spread_6h", "6h", "15m", 15, 4),
        ("spread_24h", "24h", "1h", 25, 4),
    ):
        rules.append(
            Rule(
                name,
                hopping(size, slide),
                {"n": n, "countries": countries, "total": total},
                f"n >= {count} and countries >= {spread}",
                "{rule}: {n} transactions in {countries} countries within {window} (total {total:.2f})",
            )
        )
    if habit_column is not None:
        for size, slide, worth in (("1h", "5m", 8), ("6h", "15m", 12), ("24h", "1h", 20)):
            rules.append(
                Rule(
                    f"spend_vs_habit_{size}",
                    hopping(size, slide),
                    {"n": n, "habit": ("sum", habit_column), "total": total},
                    f"habit >= {worth}",
                    "{rule}: {n} transactions worth {habit:.1f} times the card's usual amount "
                    "within {window} (total {total:.2f})",
                )
            )
    return rules


class RuleSet:
    """Runs rules over card transactions and raises one alert per card per incident.

    Args:
        rules: the rules (see :func:`default_rules`, :meth:`from_toml`).
        card, time: key and event-time columns; the rules' aggregations name the others.
        cooldown: after an alert on a card, its further alerts (any rule) are suppressed until
            this long after the alert's time: one alert per incident.
        out_of_orderness: the watermark delay of every rule's windows.
    """

    def __init__(
        self,
        rules: Sequence[Rule] | None = None,
        *,
        card: str = "card",
        time: str = "ts",
        cooldown: Duration = "24h",
        out_of_orderness: Duration = "5s",
    ) -> None:
        self.rules = list(default_rules() if rules is None else rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"rule names must be unique, got {names}")
        self.card, self.time = card, time
        self.cooldown = to_millis(cooldown, "cooldown")
        self._engines = [
            WindowedAggregation(
                key=card,
                time=time,
                window=r.window,
                aggregations=r.aggregations,
                out_of_orderness=out_of_orderness,
                early_fire=r.condition,
            )
            for r in self.rules
        ]
        self._last_alert: dict[int, int] = {}
        self._prune_at = 4_096
        self.suppressed = 0
        """Candidate alerts dropped by the cool-down."""

    @classmethod
    def from_toml(cls, text: str, **kwargs: Any) -> RuleSet:
        """A rule set from TOML text with a ``[[rules]]`` array (see the module docstring);
        an optional top-level ``cooldown`` is used unless given as a keyword."""
        doc = tomllib.loads(text)
        if "cooldown" in doc:
            kwargs.setdefault("cooldown", doc["cooldown"])
        return cls([Rule.from_dict(r) for r in doc.get("rules", [])], **kwargs)

    def process(self, batch: Mapping[str, Any] | Any) -> list[Alert]:
        """Feeds a batch of transactions to every rule and returns the new alerts in the order
        of their triggering rows (rules in their order for one row).

        Candidates (the early rows of every rule) are filtered by the cool-down with numpy;
        only the alerts kept become Python objects, so a busy card firing every window costs
        little."""
        outputs: list[tuple[int, WindowOutput]] = []
        for order, engine in enumerate(self._engines):
            out = engine.process(batch)
            early = out["kind"] == EmitKind.EARLY
            if early.any():
                outputs.append((order, out.select(early)))
        if not outputs:
            return []
        times = int_column(get_column(batch, self.time), self.time)
        trigger = np.concatenate([o.trigger_rows for _, o in outputs])
        rule = np.concatenate([np.full(len(o), i) for i, o in outputs])
        index = np.concatenate([np.arange(len(o)) for _, o in outputs])
        card = np.concatenate([o["key"] for _, o in outputs])
        when = times[trigger]
        # by card, then triggering row, then rule order
        by = np.lexsort((rule, trigger, card))
        starts = np.flatnonzero(np.r_[True, card[by][1:] != card[by][:-1]])
        kept: list[int] = []
        for lo, hi in zip(starts, [*starts[1:], len(by)], strict=True):
            group = by[lo:hi]
            c = int(card[group[0]])
            last = self._last_alert.get(c)
            threshold = -(2**62) if last is None else last + self.cooldown
            w = when[group]
            at = 0
            while at < len(group):
                hits = np.flatnonzero(w[at:] >= threshold)
                if hits.size == 0:
                    break
                at += int(hits[0])
                kept.append(int(group[at]))
                threshold = int(w[at]) + self.cooldown
                self._last_alert[c] = int(w[at])
                at += 1
        self.suppressed += len(card) - len(kept)
        kept.sort(key=lambda k: (int(trigger[k]), int(rule[k])))
        alerts = [
            self._alert(outputs, int(rule[k]), int(index[k]), int(trigger[k]), int(when[k])) for k in kept
        ]
        if len(self._last_alert) > self._prune_at:
            horizon = int(times.max()) - self.cooldown
            self._last_alert = {k: v for k, v in self._last_alert.items() if v >= horizon}
            self._prune_at = max(4_096, 2 * len(self._last_alert))
        return alerts

    def _alert(
        self, outputs: list[tuple[int, WindowOutput]], order: int, i: int, trigger: int, when: int
    ) -> Alert:
        rule = self.rules[order]
        out = next(o for k, o in outputs if k == order)
        card = int(out["key"][i])
        figures = {name: out[name][i].item() for name in rule.aggregations}
        text = rule.reason.format(rule=rule.name, card=card, window=_human(rule.window.size), **figures)
        start, end = int(out["window_start"][i]), int(out["window_end"][i])
        return Alert(card, when, trigger, rule.name, text, start, end, figures)

    def flush(self) -> None:
        """End of input: closes every window (final rows raise no alerts)."""
        for engine in self._engines:
            engine.flush()
