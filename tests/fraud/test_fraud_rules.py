"""Rules: the story's incident is caught within the processing of its triggering transaction.

The story: one compromised card, 23 small transactions across 4 countries in 6 hours, hidden
in background card traffic from the project's seeded generator. The 5-minute velocity rule
never sees it; the 6-hour rule fires through early firing the moment its predicate first
holds, at one transaction, with one alert for the incident (cool-down) and a readable reason.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fraudstream.errors import ConfigError
from fraudstream.fraud.rules import Rule, RuleSet, default_rules
from fraudstream.fraud.scenario import story_incident
from fraudstream.windows import hopping

STORY = story_incident()


def first_trigger(
    times: np.ndarray, countries: np.ndarray, size: int, slide: int, n: int, spread: int
) -> int:
    """Index of the first incident transaction after which some hopping window holds at least
    ``n`` of its transactions in ``spread`` countries (brute force over the windows)."""
    for i in range(len(times)):
        t = times[i]
        for start in range((t - size) // slide * slide + slide, t + 1, slide):
            inside = (times[: i + 1] >= start) & (times[: i + 1] < start + size)
            if inside.sum() >= n and len(set(countries[: i + 1][inside].tolist())) >= spread:
                return i
    raise AssertionError("the pattern never becomes visible")


def slice_of(cols: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {k: v[lo:hi] for k, v in cols.items()}


def test_the_story_incident_is_caught_at_its_triggering_transaction() -> None:
    cols, card, rows = STORY.columns, STORY.incident_card, STORY.incident_rows
    inc_times, inc_countries = cols["ts"][rows], cols["country"][rows]
    assert len(rows) == 23 and len(set(inc_countries.tolist())) == 4
    assert inc_times[-1] - inc_times[0] <= 6 * 3_600_000
    trigger = rows[first_trigger(inc_times, inc_countries, 6 * 3_600_000, 15 * 60_000, 15, 4)]

    rules = RuleSet(default_rules(horizons=True), cooldown="24h")
    before = []
    for lo in range(0, trigger, 8_192):
        before += rules.process(slice_of(cols, lo, min(lo + 8_192, trigger))).alerts
    assert not [a for a in before if a.card_id == card], "no alert before the pattern is visible"

    began = time.perf_counter()
    alerts = rules.process(slice_of(cols, trigger, trigger + 1)).alerts
    latency = time.perf_counter() - began
    mine = [a for a in alerts if a.card_id == card]
    assert len(mine) == 1, alerts
    alert = mine[0]
    assert (alert.rule, alert.trigger_row, alert.event_time) == ("spread_6h", 0, int(cols["ts"][trigger]))
    assert alert.trigger_txn_id == 0, "no txn_id column: the row in the batch"
    assert alert.figures["n"] >= 15 and alert.figures["countries"] == 4
    assert alert.reason.startswith("spread_6h: 15 transactions in 4 countries within 6 h (total ")
    assert latency < 1.0  # processing one transaction through every rule: milliseconds

    after, suppressed = [], 0
    for lo in range(trigger + 1, len(cols["ts"]), 8_192):
        out = rules.process(slice_of(cols, lo, lo + 8_192))
        after += out.alerts
        suppressed += out.suppressed
    assert not [a for a in after if a.card_id == card], "one alert per card per incident"
    assert rules.suppressed > 0, "later windows of the incident fired too, and were cooled down"
    assert suppressed <= rules.suppressed


def test_the_velocity_rule_alone_never_sees_the_slow_incident() -> None:
    velocity = RuleSet([r for r in default_rules() if r.name == "velocity_5m"])
    alerts = velocity.process(STORY.columns).alerts
    assert not [a for a in alerts if a.card_id == STORY.incident_card]


def test_a_fast_burst_fires_the_velocity_rule_at_its_fifth_transaction() -> None:
    t0 = 1_700_000_000_000
    burst = {
        "card": np.full(6, 42),
        "ts": t0 + np.arange(6) * 40_000,
        "amount": np.array([4.99, 12.0, 8.5, 19.9, 3.2, 7.7]),
        "country": np.array([1, 7, 12, 19, 7, 1]),
    }
    rules = RuleSet()
    alerts = rules.process({**burst, "txn_id": 100 + np.arange(6)}).alerts
    assert [(a.card_id, a.rule, a.trigger_row, a.trigger_txn_id) for a in alerts] == [
        (42, "velocity_5m", 4, 104)
    ]
    assert alerts[0].event_time == t0 + 4 * 40_000 and alerts[0].reasons == (alerts[0].reason,)
    assert "5 transactions in 4 countries within 5 min" in alerts[0].reason


def test_cooldown_separates_incidents() -> None:
    t0 = 1_700_000_000_000
    day = 86_400_000
    burst = {"card": np.full(5, 7), "amount": np.ones(5), "country": np.array([1, 2, 3, 4, 5])}
    rules = RuleSet(cooldown="12h")
    first = rules.process({**burst, "ts": t0 + np.arange(5) * 10_000})
    again = rules.process({**burst, "ts": t0 + 3_600_000 + np.arange(5) * 10_000})
    later = rules.process({**burst, "ts": t0 + day + np.arange(5) * 10_000})
    assert [len(first), len(again), len(later)] == [1, 0, 1]
    assert (
        again.suppressed >= 1 and rules.suppressed == first.suppressed + again.suppressed + later.suppressed
    )


def test_rules_from_toml_equal_rules_as_objects() -> None:
    text = """
cooldown = "6h"

[[rules]]
name = "spread_6h"
size = "6h"
slide = "15m"
condition = "n >= 15 and countries >= 4"
reason = "{rule}: {n} transactions in {countries} countries within {window} (total {total:.2f})"
[rules.aggregations]
n = "count"
countries = ["count_distinct", "country"]
total = ["sum", "amount"]
"""
    rules = RuleSet.from_toml(text)
    (rule,) = rules.rules
    assert rule == next(r for r in default_rules(horizons=True) if r.name == "spread_6h")
    assert rules.cooldown == 6 * 3_600_000
    with pytest.raises(ConfigError, match="missing"):
        RuleSet.from_toml('[[rules]]\nname = "x"\n')
    with pytest.raises(ConfigError, match="unique"):
        RuleSet([rule, rule])


def test_spend_vs_habit_rules_read_a_feature_column() -> None:
    rules = RuleSet(
        [r for r in default_rules(habit_column="ratio") if r.name.startswith("spend")], cooldown="1h"
    )
    t0 = 1_700_000_000_000
    batch = {
        "card": np.full(3, 9),
        "ts": t0 + np.arange(3) * 60_000,
        "amount": np.full(3, 90.0),
        "ratio": np.array([2.0, 2.0, 2.0]),
    }
    assert rules.process(batch).alerts == []
    alerts = rules.process({**batch, "ts": batch["ts"] + 200_000}).alerts
    assert [(a.rule, a.trigger_row) for a in alerts] == [("spend_vs_habit_1h", 0)]
    assert "4 transactions worth 8.0 times the card's usual amount within 1 h" in alerts[0].reason


def test_rule_objects_are_plain_data() -> None:
    rule = Rule("r", hopping("10m", "1m"), {"n": "count"}, "n >= 2", "{n} in {window}")
    alerts = RuleSet([rule]).process({"card": np.array([1, 1]), "ts": np.array([0, 1_000])}).alerts
    assert [a.reason for a in alerts] == ["2 in 10 min"]
