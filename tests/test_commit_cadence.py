"""The commit cadence: a fixed interval, or one that follows the latency budget, and alerts
never held by it (fraudstream.kafka.cadence)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fraudstream.config import KafkaSection
from fraudstream.kafka.cadence import CommitCadence


def cadence(**settings: int) -> CommitCadence:
    return CommitCadence(KafkaSection(**settings))  # type: ignore[arg-type]


def test_without_a_budget_the_interval_is_fixed_whatever_commits_take() -> None:
    c = cadence(commit_interval_ms=100)
    for took in (5.0, 500.0, 50.0):
        c.committed(took)
        assert c.interval_ms() == 100
    assert not c.due(99, records=10, alerts=0) and c.due(100, records=10, alerts=0)


def test_with_a_budget_quick_commits_stretch_the_interval_and_slow_ones_shrink_it() -> None:
    c = cadence(commit_interval_ms=100, commit_latency_budget_ms=500)
    assert c.interval_ms() == 500  # nothing known yet: the budget
    for _ in range(30):
        c.committed(20.0)
    assert 479 <= c.interval_ms() <= 481  # the budget less about 20 ms
    for _ in range(30):
        c.committed(300.0)
    assert 199 <= c.interval_ms() <= 201  # under load: 500 - 300
    for _ in range(30):
        c.committed(2_000.0)
    assert c.interval_ms() == 100  # never below commit_interval_ms


def test_alerts_and_full_intervals_commit_early_and_nothing_commits_an_empty_interval() -> None:
    c = cadence(commit_interval_ms=100, commit_latency_budget_ms=1_000, alert_commit_min_interval_ms=10)
    assert not c.due(50, records=5, alerts=0)
    assert c.due(10, records=5, alerts=1)  # an alert waits 10 ms, not the 1 s interval
    assert not c.due(9, records=5, alerts=1)
    assert c.due(1, records=50_000, alerts=0)  # commit_max_records
    assert not c.due(10_000, records=0, alerts=0)


@given(
    st.integers(1, 1_000),
    st.integers(0, 5_000).filter(lambda b: b == 0 or b >= 1_000),
    st.lists(st.floats(0, 10_000, allow_nan=False), max_size=40),
)
def test_the_interval_stays_between_the_minimum_and_the_budget(
    minimum: int, budget: int, commits: list[float]
) -> None:
    c = cadence(commit_interval_ms=minimum, commit_latency_budget_ms=budget)
    for took in commits:
        c.committed(took)
        interval = c.interval_ms()
        if budget == 0:
            assert interval == minimum
        else:
            assert minimum <= interval <= budget
            # within the budget whenever the budget leaves room for the minimum interval
            if c.commit_ms is not None and budget - c.commit_ms >= minimum:
                assert interval + c.commit_ms <= budget + 1e-6
