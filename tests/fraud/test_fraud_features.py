"""Streaming features through the Python API, on seeded generated data (no dataset needed).

The handbook features equal the pandas reference on a generated table full of equal
timestamps; batch sizes never change a value; labels as events at ``time + D`` equal the
delay model; bad batches are rejected whole; snapshots restore exactly; state stays bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from handbook_reference import HANDBOOK_FEATURES, handbook_features
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.errors import ConfigError, InvalidBatchError
from fraudstream.fraud.features import (
    ADDED_FEATURES,
    StreamingFeatures,
    TransactionColumns,
    compute_features,
    iter_batches,
    window_label,
)
from fraudstream.fraud.features import (
    handbook_features as streaming_handbook_features,
)
from fraudstream.fraud.scenario import handbook_like
from fraudstream.generator import card_transactions

DAY = 86_400_000
TABLE = handbook_like(seed=3)
COLUMNS = ["TRANSACTION_ID", "TX_TIME_MS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]


def assert_same(got: dict[str, Any], want: dict[str, Any], names: list[str]) -> None:
    for name in names:
        a, b = np.asarray(got[name]), np.asarray(want[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_handbook_features_equal_the_reference_on_generated_ties() -> None:
    frame = pd.DataFrame(TABLE)
    assert frame.duplicated(["TX_TIME_MS", "CUSTOMER_ID"]).sum() > 100, "the data must exercise ties"
    want = handbook_features(frame)
    got = streaming_handbook_features(TABLE)
    assert_same(got, {c: want[c].to_numpy() for c in want}, ["TRANSACTION_ID", *HANDBOOK_FEATURES])


def test_rows_come_back_in_the_input_order() -> None:
    shuffled = np.random.default_rng(0).permutation(len(TABLE["TX_TIME_MS"]))
    table = {k: v[shuffled] for k, v in TABLE.items()}
    got = compute_features(table)
    want = compute_features(TABLE)
    assert_same(got, {k: v[shuffled] for k, v in want.items()}, list(want))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5_000), min_size=1, max_size=6))
def test_batch_sizes_never_change_a_value(sizes: list[int]) -> None:
    n = 8_000
    table = {k: v[:n] for k, v in TABLE.items()}
    whole = StreamingFeatures().process(table)
    f = StreamingFeatures()
    parts, lo = [], 0
    for size in [*sizes, n]:
        hi = min(n, lo + size)
        parts.append(f.process({k: v[lo:hi] for k, v in table.items()}))
        lo = hi
        if lo == n:
            break
    joined = {k: np.concatenate([p[k] for p in parts]) for k in whole}
    assert_same(joined, whole, list(whole))


def test_feature_names_and_added_features() -> None:
    f = StreamingFeatures()
    out = f.process({k: v[:100] for k, v in TABLE.items()})
    assert list(out) == ["TX_AMOUNT", *f.feature_names]
    assert set(HANDBOOK_FEATURES) | set(ADDED_FEATURES) <= set(out)
    assert window_label(3_600_000) == "1HOUR" and window_label(90_000) == "90SEC" and window_label(7) == "7MS"


def test_label_events_at_time_plus_delay_equal_the_delay_model() -> None:
    delayed = StreamingFeatures().process(TABLE)
    f = StreamingFeatures(columns=TransactionColumns(fraud=None))
    f.add_labels(
        {
            "label_time": TABLE["TX_TIME_MS"] + 7 * DAY,
            "terminal": TABLE["TERMINAL_ID"],
            "transaction_time": TABLE["TX_TIME_MS"],
            "transaction_id": TABLE["TRANSACTION_ID"],
            "fraud": TABLE["TX_FRAUD"],
        }
    )
    got = {}
    for batch in iter_batches(TABLE, COLUMNS[:-1], 5_000):
        for k, v in f.process(batch).items():
            got.setdefault(k, []).append(v)
    assert_same({k: np.concatenate(v) for k, v in got.items()}, delayed, list(delayed))
    c = f.counters()
    assert c["labels_applied"] > 0 and c["labels_late"] == 0


def test_labels_arriving_at_their_own_times() -> None:
    # three transactions on terminal 9; a chargeback for the first arrives 2 days later
    f = StreamingFeatures(terminal_windows=["10d"], label_delay="1d", columns=TransactionColumns(fraud=None))
    t0 = 1_533_081_600_000
    batch = {
        "TRANSACTION_ID": np.array([1, 2, 3]),
        "TX_TIME_MS": np.array([t0, t0 + DAY, t0 + 3 * DAY]),
        "CUSTOMER_ID": np.array([1, 2, 3]),
        "TERMINAL_ID": np.array([9, 9, 9]),
        "TX_AMOUNT": np.array([5.0, 6.0, 7.0]),
    }
    f.add_labels(
        {
            "label_time": np.array([t0 + 2 * DAY]),
            "terminal": np.array([9]),
            "transaction_time": np.array([t0]),
            "transaction_id": np.array([1]),
            "fraud": np.array([1]),
        }
    )
    out = f.process(batch)
    # at t0 + 1d: id 1 is in (t - 11d, t - 1d] but its label is not known yet
    assert out["TERMINAL_ID_NB_TX_10DAY_WINDOW"].tolist() == [0, 1, 2]
    assert out["TERMINAL_ID_NB_FRAUD_10DAY_WINDOW"].tolist() == [0, 0, 1]
    assert out["TERMINAL_ID_RISK_10DAY_WINDOW"].tolist() == [0.0, 0.0, 0.5]
    assert out["TERMINAL_ID_LAST_KNOWN_FRAUD"].tolist() == [0, 0, 0]


def test_a_bad_batch_is_rejected_whole_and_changes_nothing() -> None:
    f = StreamingFeatures()
    first = {k: v[:1_000] for k, v in TABLE.items()}
    f.process(first)
    before = f.snapshot()
    with pytest.raises(InvalidBatchError) as err:
        f.process({k: v[500:1_500] for k, v in TABLE.items()})
    assert err.value.column == "TX_TIME_MS" and err.value.row == 0
    bad = {k: v[1_000:1_100].copy() for k, v in TABLE.items()}
    bad["TX_AMOUNT"][42] = np.nan
    with pytest.raises(InvalidBatchError) as err:
        f.process(bad)
    assert (err.value.column, err.value.row) == ("TX_AMOUNT", 42)
    bad = {k: v[1_000:1_100].copy() for k, v in TABLE.items()}
    bad["TX_FRAUD"][7] = 2
    with pytest.raises(InvalidBatchError, match="TX_FRAUD"):
        f.process(bad)
    with pytest.raises(InvalidBatchError, match="missing column"):
        f.process({k: v for k, v in first.items() if k != "TERMINAL_ID"})
    assert f.snapshot() == before
    with pytest.raises(ConfigError):
        StreamingFeatures(customer_windows=["1d", "24h"])
    with pytest.raises(ConfigError):
        StreamingFeatures(terminal_windows=[])


def test_snapshot_restore_continues_exactly() -> None:
    whole = StreamingFeatures().process(TABLE)
    a = StreamingFeatures()
    head = a.process({k: v[:20_000] for k, v in TABLE.items()})
    b = StreamingFeatures()
    b.restore(a.snapshot())
    tail = b.process({k: v[20_000:] for k, v in TABLE.items()})
    joined = {k: np.concatenate([head[k], tail[k]]) for k in whole}
    assert_same(joined, whole, list(whole))
    with pytest.raises(Exception, match="configuration"):
        StreamingFeatures(label_delay="1d").restore(a.snapshot())


def test_countries_and_state_bounded_on_a_churning_card_stream() -> None:
    # 100k skewed cards, 30 countries, 50 transactions/s for 100 minutes: distinct-country
    # features; the state follows the recent transactions, not the stream's length
    data = card_transactions(300_000, cards=100_000, rate_per_s=50.0, disorder_ms=0, seed=1)
    n = len(data["ts"])
    table = {
        "TRANSACTION_ID": np.arange(n),
        "TX_TIME_MS": data["ts"],
        "CUSTOMER_ID": data["card"],
        "TERMINAL_ID": data["card"] % 997,
        "TX_AMOUNT": data["amount"],
        "COUNTRY": data["country"],
    }
    f = StreamingFeatures(
        customer_windows=["5m", "10m"],
        terminal_windows=["5m"],
        label_delay="1m",
        columns=TransactionColumns(fraud=None, country="COUNTRY"),
    )
    sizes = []
    for batch in iter_batches(table, list(table), 10_000):
        out = f.process(batch)
        sizes.append(f.state_size()["entries"])
        assert (out["CUSTOMER_ID_NB_COUNTRIES_10MIN_WINDOW"] <= out["CUSTOMER_ID_NB_TX_10MIN_WINDOW"]).all()
        assert (
            out["CUSTOMER_ID_NB_COUNTRIES_5MIN_WINDOW"] <= out["CUSTOMER_ID_NB_COUNTRIES_10MIN_WINDOW"]
        ).all()
    # a key keeps its window before its latest transaction until touched again, and an idle
    # key lives until the sweep finds it expired: at most 2 x (10 min of cards + 6 min of
    # terminals) at 50/s, plus one batch of sweep lag each
    bound = 2 * (30_000 + 18_000) + 2 * 10_000
    assert max(sizes) < bound, sizes
    assert max(sizes[-10:]) <= 1.1 * max(sizes[10:20]), f"state keeps growing: {sizes}"
    assert f.counters()["transactions"] == n
