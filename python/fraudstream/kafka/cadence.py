"""When the poll loop commits: a fixed interval, or one that follows a latency budget.

A record's outputs become visible to ``read_committed`` readers when its transaction commits:
at most one commit interval after it was processed, plus the commit's own duration. Every
transaction costs the same fixed work (offsets, changelog, the commit's round trips), so longer
intervals mean more throughput and later outputs.

- ``kafka.commit_latency_budget_ms = 0`` (the default): commit every ``commit_interval_ms``.
- ``> 0``: the interval is what the budget leaves after the recent commits' duration (an
  exponential average of the last few), never shorter than ``commit_interval_ms`` nor longer
  than the budget. While commits are quick the interval stretches towards the budget (fewer
  transactions); under load commits slow down and the interval shrinks to keep outputs within
  the budget.

In both cases an interval commits early when it holds ``commit_max_records`` records, and an
interval with an alert commits as soon as ``alert_commit_min_interval_ms`` has passed since the
previous commit: alerts are never held for the cadence.
"""

from __future__ import annotations

from fraudstream.config import KafkaSection

SMOOTHING = 0.2
"""Weight of the latest commit in the average of commit durations (about the last five)."""


class CommitCadence:
    """Decides when the open transaction is due (see the module docstring)."""

    def __init__(self, kafka: KafkaSection) -> None:
        self.kafka = kafka
        self.commit_ms: float | None = None
        """The average duration of recent commits, ms (None before the first)."""

    def interval_ms(self) -> float:
        """The interval between commits now."""
        k = self.kafka
        budget = k.commit_latency_budget_ms
        if budget <= 0:
            return float(k.commit_interval_ms)
        left = budget - (self.commit_ms or 0.0)
        return float(min(max(left, k.commit_interval_ms), budget))

    def due(self, since_commit_ms: float, records: int, alerts: int) -> bool:
        """Whether to commit now: ``since_commit_ms`` after the previous commit, with ``records``
        records (or idle ticks) and ``alerts`` alerts in the open interval."""
        if not records:
            return False
        k = self.kafka
        return (
            since_commit_ms >= self.interval_ms()
            or records >= k.commit_max_records
            or (alerts > 0 and since_commit_ms >= k.alert_commit_min_interval_ms)
        )

    def committed(self, took_ms: float) -> None:
        """A commit took ``took_ms``."""
        avg = self.commit_ms
        self.commit_ms = took_ms if avg is None else avg + SMOOTHING * (took_ms - avg)


__all__ = ["CommitCadence"]
