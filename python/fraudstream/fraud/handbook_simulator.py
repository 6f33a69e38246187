"""The transaction simulator of the handbook, so its evaluation runs from a clone.

*Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook* (Le Borgne,
Siblini, Lebichot, Bontempi), chapter 3.2 "Transaction data simulator", documents how its
public dataset was made. This module follows that description step by step and draws the same
random numbers in the same order (numpy's legacy ``RandomState`` seeded as the handbook seeds
the global one, Python's ``random`` where it uses it), so with the handbook's parameters it
reproduces the published dataset (``../shared/data/handbook_transactions.parquet``):

1. **Customers** (``RandomState(0)``): a home ``(x, y)`` uniform on a 100 x 100 grid, a mean
   amount uniform in [5, 100] (standard deviation half of it), a mean number of transactions a
   day uniform in [0, 4].
2. **Terminals** (``RandomState(1)``): a location uniform on the grid. A customer uses the
   terminals within ``radius`` (5) of home.
3. **Transactions** of each customer (both generators seeded with the customer id): each day a
   Poisson number of them; each at a time of day drawn from N(12 h, 20,000 s), kept if within
   the day; an amount from N(mean, std) (uniform in [0, 2 mean] if negative), rounded to cents;
   a terminal drawn uniformly among the customer's nearby ones.
4. **Fraud**, three scenarios, in this order:
   1. every transaction above 220 is fraudulent;
   2. each day ``d``, 2 terminals (``RandomState(d)``) are compromised: all their transactions
      in days ``[d, d + 28)`` are fraudulent;
   3. each day ``d``, 3 customers (``RandomState(d)``) are compromised: a third of their
      transactions in days ``[d, d + 14)`` (``random.seed(d)``) are fraudulent, amount x 5.

Transactions are ordered by time (ties: by customer, then as generated; the handbook's unstable
sort may order the rare ties otherwise) and numbered from 0. The output columns are those of
:mod:`fraudstream.fraud.data` (``TX_TIME_MS`` in epoch ms, UTC) plus ``TX_FRAUD_SCENARIO``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DAY_S = 86_400
SCENARIO_1_AMOUNT = 220.0
TERMINALS_PER_DAY = 2
TERMINAL_DAYS = 28
CUSTOMERS_PER_DAY = 3
CUSTOMER_DAYS = 14

Columns = dict[str, np.ndarray[Any, Any]]


@dataclass
class SimulatorOptions:
    """The handbook's parameters (its dataset: 5,000 customers, 10,000 terminals, 183 days
    from 2018-04-01, radius 5)."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0

    def validate(self) -> SimulatorOptions:
        from fraudstream.errors import ConfigError

        if self.customers < 1 or self.terminals < CUSTOMERS_PER_DAY or self.days < 1:
            raise ConfigError(
                f"--customers >= 1, --terminals >= {CUSTOMERS_PER_DAY} and --days >= 1 please, got "
                f"{self.customers}, {self.terminals} and {self.days}"
            )
        if self.customers < CUSTOMERS_PER_DAY:
            raise ConfigError(
                f"--customers must be >= {CUSTOMERS_PER_DAY} (scenario 3 draws that many a day)"
            )
        try:
            datetime.fromisoformat(self.start_date)
        except ValueError:
            raise ConfigError(f"--start-date must be a date (YYYY-MM-DD), got {self.start_date!r}") from None
        return self

    @property
    def start_ms(self) -> int:
        return int(datetime.fromisoformat(self.start_date).replace(tzinfo=UTC).timestamp() * 1000)


def customer_profiles(n: int, random_state: int = 0) -> Columns:
    """Home, mean and spread of amounts, and mean transactions a day of ``n`` customers. The
    handbook draws four uniforms per customer in turn; a block of them is the same stream."""
    u = np.random.RandomState(random_state).random_sample((n, 4))
    mean_amount = 5 + 95 * u[:, 2]
    return {
        "CUSTOMER_ID": np.arange(n, dtype=np.int64),
        "x": 100 * u[:, 0],
        "y": 100 * u[:, 1],
        "mean_amount": mean_amount,
        "std_amount": mean_amount / 2,
        "mean_nb_tx_per_day": 4 * u[:, 3],
    }


def terminal_profiles(n: int, random_state: int = 1) -> Columns:
    """Locations of ``n`` terminals."""
    u = np.random.RandomState(random_state).random_sample((n, 2))
    return {"TERMINAL_ID": np.arange(n, dtype=np.int64), "x": 100 * u[:, 0], "y": 100 * u[:, 1]}


def terminals_within(customers: Columns, terminals: Columns, radius: float) -> list[list[int]]:
    """Per customer, the ids of the terminals closer than ``radius`` (Euclidean), ascending."""
    xy = np.column_stack([terminals["x"], terminals["y"]])
    out = []
    for x, y in zip(customers["x"].tolist(), customers["y"].tolist(), strict=True):
        dist = np.sqrt(np.sum(np.square(np.array([x, y]) - xy), axis=1))
        out.append(np.flatnonzero(dist < radius).tolist())
    return out


def customer_transactions(
    customer: int, mean_amount: float, std_amount: float, per_day: float, nearby: list[int], days: int
) -> tuple[list[int], list[int], list[float]]:
    """One customer's transactions: (seconds since the start, terminal, amount), in the order
    the handbook generates them (by day, then as drawn)."""
    rs = np.random.RandomState(customer)
    py = random.Random(customer)
    seconds: list[int] = []
    terminal: list[int] = []
    amount: list[float] = []
    normal, poisson, uniform = rs.normal, rs.poisson, rs.uniform
    for day in range(days):
        for _ in range(int(poisson(per_day))):
            time_tx = int(normal(DAY_S / 2, 20_000))
            if 0 < time_tx < DAY_S:
                a = normal(mean_amount, std_amount)
                if a < 0:
                    a = uniform(0, mean_amount * 2)
                a = float(np.round(a, decimals=2))
                if nearby:
                    terminal.append(py.choice(nearby))
                    seconds.append(time_tx + day * DAY_S)
                    amount.append(a)
    return seconds, terminal, amount


def simulate(options: SimulatorOptions | None = None) -> Columns:
    """The whole dataset as numpy columns (see the module docstring)."""
    o = (options or SimulatorOptions()).validate()
    customers = customer_profiles(o.customers)
    terminals = terminal_profiles(o.terminals)
    nearby = terminals_within(customers, terminals, o.radius)
    parts: list[tuple[np.ndarray[Any, Any], ...]] = []
    for c in range(o.customers):
        seconds, terminal, amount = customer_transactions(
            c,
            float(customers["mean_amount"][c]),
            float(customers["std_amount"][c]),
            float(customers["mean_nb_tx_per_day"][c]),
            nearby[c],
            o.days,
        )
        n = len(seconds)
        parts.append(
            (
                np.asarray(seconds, dtype=np.int64),
                np.full(n, c, dtype=np.int64),
                np.asarray(terminal, dtype=np.int64),
                np.asarray(amount, dtype=np.float64),
            )
        )
    cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    order = np.argsort(cols[0], kind="stable")  # ties: customer, then generation order
    t, customer_ids, terminal_ids, amounts = (c[order] for c in cols)
    days = t // DAY_S
    fraud, scenario = add_frauds(days, customer_ids, terminal_ids, amounts, o.customers, o.terminals)
    return {
        "TRANSACTION_ID": np.arange(len(t), dtype=np.int64),
        "TX_TIME_MS": o.start_ms + t * 1000,
        "CUSTOMER_ID": customer_ids,
        "TERMINAL_ID": terminal_ids,
        "TX_AMOUNT": amounts,
        "TX_FRAUD": fraud,
        "TX_FRAUD_SCENARIO": scenario,
    }


def add_frauds(
    days: np.ndarray[Any, Any],
    customer: np.ndarray[Any, Any],
    terminal: np.ndarray[Any, Any],
    amount: np.ndarray[Any, Any],
    n_customers: int,
    n_terminals: int,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The three scenarios, in the handbook's order; multiplies scenario-3 amounts in place.
    Returns ``TX_FRAUD`` and ``TX_FRAUD_SCENARIO`` (int8)."""
    fraud = np.zeros(len(days), dtype=np.int8)
    scenario = np.zeros(len(days), dtype=np.int8)
    big = amount > SCENARIO_1_AMOUNT
    fraud[big], scenario[big] = 1, 1
    last_day = int(days.max()) if len(days) else 0
    # rows by day, so that a span of days is a slice (rows are in time order)
    day_start = np.searchsorted(days, np.arange(last_day + TERMINAL_DAYS + 2))
    for day in range(last_day):  # the handbook's range(TX_TIME_DAYS.max())
        compromised = np.random.RandomState(day).choice(n_terminals, size=TERMINALS_PER_DAY, replace=False)
        lo, hi = day_start[day], day_start[min(day + TERMINAL_DAYS, len(day_start) - 1)]
        hit = lo + np.flatnonzero(np.isin(terminal[lo:hi], compromised))
        fraud[hit], scenario[hit] = 1, 2
    for day in range(last_day):
        compromised = np.random.RandomState(day).choice(n_customers, size=CUSTOMERS_PER_DAY, replace=False)
        lo, hi = day_start[day], day_start[min(day + CUSTOMER_DAYS, len(day_start) - 1)]
        rows = (lo + np.flatnonzero(np.isin(customer[lo:hi], compromised))).tolist()
        chosen = np.asarray(random.Random(day).sample(rows, k=int(len(rows) / 3)), dtype=np.int64)
        amount[chosen] = amount[chosen] * 5
        fraud[chosen], scenario[chosen] = 1, 3
    return fraud, scenario


def statistics(cols: Columns) -> dict[str, float]:
    """The figures the dataset's README publishes: rows, fraud rate, transactions and frauds a
    day, amounts, customers and terminals, scenario counts."""
    t = cols["TX_TIME_MS"]
    days = max(1, int((t.max() - t.min()) // (DAY_S * 1000)) + 1) if len(t) else 1
    fraud = cols["TX_FRAUD"]
    scenario = cols["TX_FRAUD_SCENARIO"]
    return {
        "rows": float(len(t)),
        "fraud_rate": float(fraud.mean()) if len(t) else 0.0,
        "per_day": len(t) / days,
        "frauds_per_day": float(fraud.sum()) / days,
        "amount_mean": float(cols["TX_AMOUNT"].mean()) if len(t) else 0.0,
        "amount_median": float(np.median(cols["TX_AMOUNT"])) if len(t) else 0.0,
        "amount_max": float(cols["TX_AMOUNT"].max()) if len(t) else 0.0,
        "customers": float(len(np.unique(cols["CUSTOMER_ID"]))),
        "terminals": float(len(np.unique(cols["TERMINAL_ID"]))),
        **{f"scenario_{k}": float((scenario == k).sum()) for k in (1, 2, 3)},
    }


def simulate_to_parquet(options: SimulatorOptions, out: str | Path) -> dict[str, float]:
    """Simulates, writes ``out`` (parquet, needs pyarrow) and prints what it wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    began = time.perf_counter()
    cols = simulate(options)
    pq.write_table(pa.table(cols), out, compression="zstd")
    s = statistics(cols)
    print(
        f"{int(s['rows']):,} transactions over {options.days} days from {options.start_date} "
        f"({s['per_day']:,.0f} a day) of {int(s['customers']):,} customers at {int(s['terminals']):,} "
        f"terminals; fraud rate {s['fraud_rate']:.4%} (scenarios: {int(s['scenario_1']):,} large amounts, "
        f"{int(s['scenario_2']):,} compromised terminals, {int(s['scenario_3']):,} compromised cards); "
        f"mean amount {s['amount_mean']:.2f} -> {out} in {time.perf_counter() - began:.0f} s"
    )
    return s


__all__ = [
    "SimulatorOptions",
    "add_frauds",
    "customer_profiles",
    "customer_transactions",
    "simulate",
    "simulate_to_parquet",
    "statistics",
    "terminal_profiles",
    "terminals_within",
]
