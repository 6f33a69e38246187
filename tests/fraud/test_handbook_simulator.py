"""The handbook's transaction simulator (``fraudstream simulate --handbook``): its scenarios as
documented, the same random draws as the handbook's code (the published dataset's transactions
come out again), and the published statistics at full size."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.cli import main
from fraudstream.fraud.handbook_simulator import (
    DAY_S,
    SimulatorOptions,
    customer_profiles,
    simulate,
    statistics,
    terminal_profiles,
    terminals_within,
)

SMALL = SimulatorOptions(customers=300, terminals=600, days=40)

# ../shared/data/README.md: the published dataset (5,000 customers, 10,000 terminals, 183 days)
PUBLISHED = {
    "rows": 1_754_155,
    "frauds": 14_681,
    "scenario_1": 973,
    "scenario_2": 9_077,
    "scenario_3": 4_631,
    "customers": 4_990,
    "terminals": 10_000,
    "per_day": 9_586,
    "amount_mean": 53.63,
    "amount_max": 2628.00,
}


@pytest.fixture(scope="module")
def small() -> dict[str, np.ndarray[Any, Any]]:
    return simulate(SMALL)


def test_the_same_options_give_the_same_data(small: dict[str, np.ndarray[Any, Any]]) -> None:
    again = simulate(SMALL)
    assert all(np.array_equal(small[k], again[k]) for k in small)


def test_transactions_are_numbered_in_time_order(small: dict[str, np.ndarray[Any, Any]]) -> None:
    assert np.array_equal(small["TRANSACTION_ID"], np.arange(len(small["TRANSACTION_ID"])))
    assert np.all(np.diff(small["TX_TIME_MS"]) >= 0)
    start = SMALL.start_ms
    assert (
        small["TX_TIME_MS"].min() >= start and small["TX_TIME_MS"].max() < start + SMALL.days * DAY_S * 1000
    )
    assert np.array_equal(small["TX_FRAUD"], (small["TX_FRAUD_SCENARIO"] > 0).astype(np.int8))


def test_customers_use_only_terminals_within_the_radius(small: dict[str, np.ndarray[Any, Any]]) -> None:
    nearby = terminals_within(customer_profiles(SMALL.customers), terminal_profiles(SMALL.terminals), 5.0)
    for c, t in zip(small["CUSTOMER_ID"].tolist(), small["TERMINAL_ID"].tolist(), strict=True):
        assert t in nearby[c]


def test_the_three_fraud_scenarios_as_documented(small: dict[str, np.ndarray[Any, Any]]) -> None:
    days = (small["TX_TIME_MS"] - SMALL.start_ms) // (DAY_S * 1000)
    scenario, amount = small["TX_FRAUD_SCENARIO"], small["TX_AMOUNT"]
    terminal, customer = small["TERMINAL_ID"], small["CUSTOMER_ID"]
    last_day = int(days.max())
    # 2: every transaction at a terminal compromised in the 28 days before (its own day included)
    compromised_terminals = [
        set(np.random.RandomState(d).choice(SMALL.terminals, 2, replace=False).tolist())
        for d in range(last_day)
    ]
    on_compromised = np.array(
        [
            any(t in compromised_terminals[d] for d in range(max(0, day - 27), min(day + 1, last_day)))
            for t, day in zip(terminal.tolist(), days.tolist(), strict=True)
        ]
    )
    assert np.all(scenario[on_compromised] >= 2)  # 3 may overwrite 2
    assert not np.any(scenario[~on_compromised] == 2)
    # 1: amounts above 220 that no later scenario took over
    assert np.all(amount[scenario == 1] > 220)
    assert not np.any((amount > 220) & (scenario == 0))
    # 3: a third (rounded down) of a compromised customer's transactions over 14 days, amount x 5
    d = 5
    chosen = set(np.random.RandomState(d).choice(SMALL.customers, 3, replace=False).tolist())
    rows = np.flatnonzero((days >= d) & (days < d + 14) & np.isin(customer, list(chosen))).tolist()
    picked = random.Random(d).sample(rows, k=len(rows) // 3)
    assert np.all(scenario[picked] == 3)
    assert (scenario == 3).sum() > 0


def test_statistics_name_the_published_figures(small: dict[str, np.ndarray[Any, Any]]) -> None:
    s = statistics(small)
    assert s["rows"] == len(small["TX_AMOUNT"]) and 0 < s["fraud_rate"] < 0.2
    assert s["scenario_1"] + s["scenario_2"] + s["scenario_3"] == small["TX_FRAUD"].sum()


def test_the_command_writes_a_file_the_evaluation_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fraudstream.fraud.data import load_transactions

    out = tmp_path / "sim.parquet"
    args = [
        "simulate",
        "--handbook",
        "--out",
        str(out),
        "--customers",
        "50",
        "--terminals",
        "100",
        "--days",
        "5",
    ]
    assert main(args) == 0
    assert "transactions over 5 days" in capsys.readouterr().out
    table = load_transactions(out)
    assert len(table["TRANSACTION_ID"]) > 0 and set(np.unique(table["TX_FRAUD"])) <= {0, 1}


def test_the_command_needs_the_handbook_flag(tmp_path: Path) -> None:
    assert main(["simulate", "--out", str(tmp_path / "x.parquet")]) == 2


def test_the_first_days_are_the_published_transactions(handbook_path: Path) -> None:
    """Same draws as the handbook's code: the published dataset's first three days come out
    again, transaction for transaction (scenario-3 amounts aside, which depend on later days)."""
    import pyarrow.parquet as pq

    sim = simulate(SimulatorOptions(days=3))
    end = SimulatorOptions().start_ms + 3 * DAY_S * 1000
    pub = pq.read_table(handbook_path, filters=[("TX_TIME_MS", "<", end)]).to_pydict()
    key = ("TX_TIME_MS", "CUSTOMER_ID", "TERMINAL_ID")

    def rows(cols: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            zip(
                *(list(cols[k]) for k in key),
                list(cols["TX_AMOUNT"]),
                list(cols["TX_FRAUD_SCENARIO"]),
                strict=True,
            )
        )

    mine, theirs = rows(sim), rows(pub)
    assert len(mine) == len(theirs)
    assert [r[:3] for r in mine] == [r[:3] for r in theirs]
    same_amounts = [(a[3] == b[3]) for a, b in zip(mine, theirs, strict=True) if a[4] != 3 and b[4] != 3]
    assert all(same_amounts)


@pytest.fixture(scope="module")
def full() -> dict[str, np.ndarray[Any, Any]]:
    return simulate()


@pytest.mark.slow
def test_full_size_reproduces_the_published_statistics(full: dict[str, np.ndarray[Any, Any]]) -> None:
    """At the handbook's size: its documented figures (../shared/data/README.md), which need no
    file, exactly."""
    s = statistics(full)
    assert s["rows"] == PUBLISHED["rows"]
    assert s["customers"] == PUBLISHED["customers"] and s["terminals"] == PUBLISHED["terminals"]
    assert (s["scenario_1"], s["scenario_2"], s["scenario_3"]) == (
        PUBLISHED["scenario_1"],
        PUBLISHED["scenario_2"],
        PUBLISHED["scenario_3"],
    )
    assert int(full["TX_FRAUD"].sum()) == PUBLISHED["frauds"]
    assert round(s["per_day"]) == PUBLISHED["per_day"]
    assert round(s["amount_mean"], 2) == PUBLISHED["amount_mean"]
    assert s["amount_max"] == PUBLISHED["amount_max"]


@pytest.mark.slow
def test_full_size_is_the_published_file_row_for_row(
    full: dict[str, np.ndarray[Any, Any]], handbook_path: Path
) -> None:
    """Every published transaction (time, customer, terminal, amount, label, scenario) comes out
    again; only the numbering of transactions at the same second may differ (the handbook sorts
    with an unstable sort)."""
    import pyarrow.parquet as pq

    pub = pq.read_table(handbook_path).to_pydict()
    key = ("TX_TIME_MS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD", "TX_FRAUD_SCENARIO")

    def order(cols: dict[str, Any]) -> np.ndarray[Any, Any]:
        return np.lexsort([np.asarray(cols[k]) for k in reversed(key)])

    mine, theirs = order(full), order(pub)
    for k in key:
        assert np.array_equal(np.asarray(full[k])[mine], np.asarray(pub[k])[theirs]), k
