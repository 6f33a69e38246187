"""Batch reference of the handbook features (pandas), written from the definitions of issue 5.

Independent of the streaming code on purpose: whole-table pandas rolling windows per key, as
the handbook computes them (section 3.3), with the event order made explicit.

- DAY = 86,400,000 ms; event order is (TX_TIME_MS, TRANSACTION_ID).
- TX_DURING_WEEKEND = 1 if the UTC weekday is Saturday or Sunday; TX_DURING_NIGHT = 1 if the
  UTC hour <= 6.
- Per customer, window (t - n DAY, t] including the current transaction; at equal times only
  lower ids count: CUSTOMER_ID_NB_TX_nDAY_WINDOW = count, CUSTOMER_ID_AVG_AMOUNT_nDAY_WINDOW =
  mean amount.
- Per terminal, with a label delay of D = 7 days, window (t - (n+D) DAY, t - D DAY]:
  TERMINAL_ID_NB_TX_nDAY_WINDOW = count, TERMINAL_ID_RISK_nDAY_WINDOW = frauds / count (0 when
  the window is empty).

pandas' time-based ``rolling`` on rows sorted by (key, time, id) includes, for row i, the rows
j <= i of its key with time > t_i - window: exactly "(t - n, t], ties by lower id".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
WINDOWS_DAYS = (1, 7, 30)
DELAY_DAYS = 7

HANDBOOK_FEATURES = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW" for n in WINDOWS_DAYS],
    *[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW" for n in WINDOWS_DAYS],
    *[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW" for n in WINDOWS_DAYS],
    *[f"TERMINAL_ID_RISK_{n}DAY_WINDOW" for n in WINDOWS_DAYS],
]


def _rolling_by_key(df: pd.DataFrame, key: str, column: str, days: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of ``column`` over (t - days, t] per ``key``, in the row order of ``df``."""
    order = np.lexsort((df["TRANSACTION_ID"].to_numpy(), df["TX_TIME_MS"].to_numpy(), df[key].to_numpy()))
    sub = pd.DataFrame(
        {
            key: df[key].to_numpy()[order],
            "value": df[column].to_numpy(dtype=np.float64)[order],
        },
        index=pd.to_datetime(df["TX_TIME_MS"].to_numpy()[order], unit="ms"),
    )
    rolled = sub.groupby(key, sort=True)["value"].rolling(f"{days}D")
    # groupby(sort=True) over rows already sorted by key keeps their order
    sums = np.empty(len(df))
    counts = np.empty(len(df))
    sums[order] = rolled.sum().to_numpy()
    counts[order] = rolled.count().to_numpy()
    return sums, counts


def handbook_features(df: pd.DataFrame) -> pd.DataFrame:
    """TRANSACTION_ID and the 15 handbook model inputs for every row of ``df``, in its order."""
    when = pd.to_datetime(df["TX_TIME_MS"].to_numpy(), unit="ms")
    out = pd.DataFrame({"TRANSACTION_ID": df["TRANSACTION_ID"].to_numpy()})
    out["TX_AMOUNT"] = df["TX_AMOUNT"].to_numpy(dtype=np.float64)
    out["TX_DURING_WEEKEND"] = (when.day_of_week >= 5).astype(np.int64)
    out["TX_DURING_NIGHT"] = (when.hour <= 6).astype(np.int64)
    for n in WINDOWS_DAYS:
        total, count = _rolling_by_key(df, "CUSTOMER_ID", "TX_AMOUNT", n)
        out[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = count.astype(np.int64)
        out[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = total / count
    frauds_delay, count_delay = _rolling_by_key(df, "TERMINAL_ID", "TX_FRAUD", DELAY_DAYS)
    for n in WINDOWS_DAYS:
        frauds_all, count_all = _rolling_by_key(df, "TERMINAL_ID", "TX_FRAUD", n + DELAY_DAYS)
        frauds = frauds_all - frauds_delay
        count = count_all - count_delay
        out[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = count.astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = np.where(count > 0, frauds / np.maximum(count, 1), 0.0)
    return out[["TRANSACTION_ID", *HANDBOOK_FEATURES]]
