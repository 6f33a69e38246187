"""The streaming features equal the batch pandas reference row for row on the real dataset.

The whole file (1,754,155 transactions, 183 days) is replayed from its start in batches of
64k through the Rust engine; counts, flags and risks must be equal exactly, means within
1e-9 relative. The reference (``handbook_reference.py``) is written from the definitions of
issue 5 with pandas rolling windows, independently of the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from handbook_reference import HANDBOOK_FEATURES, handbook_features

from fraudstream.fraud.features import HANDBOOK_FEATURES as STREAMING_NAMES
from fraudstream.fraud.features import handbook_features as streaming_handbook_features


def test_the_feature_lists_agree() -> None:
    assert STREAMING_NAMES == HANDBOOK_FEATURES
    assert len(HANDBOOK_FEATURES) == 15


def test_streaming_features_equal_the_batch_reference_on_the_dataset(
    handbook_table: dict[str, np.ndarray[Any, Any]],
) -> None:
    frame = pd.DataFrame(handbook_table)
    assert len(frame) == 1_754_155
    expected = handbook_features(frame)
    got = streaming_handbook_features(handbook_table)
    assert np.array_equal(got["TRANSACTION_ID"], expected["TRANSACTION_ID"].to_numpy())
    for name in HANDBOOK_FEATURES:
        want = expected[name].to_numpy()
        have = np.asarray(got[name])
        assert have.shape == want.shape, name
        if "AVG_AMOUNT" in name:
            excess = np.abs(have - want) - 1e-9 * np.abs(want)  # relative error <= 1e-9
            worst = int(np.argmax(excess))
            assert excess[worst] <= 0, f"{name}: row {worst}: {have[worst]!r} vs {want[worst]!r}"
        else:
            bad = np.flatnonzero(have != want)
            assert bad.size == 0, f"{name}: {bad.size} rows differ, first row {bad[:1]}"
    # the windows are not trivially empty or full
    assert expected["TERMINAL_ID_RISK_7DAY_WINDOW"].to_numpy().max() == 1.0
    assert (expected["CUSTOMER_ID_NB_TX_30DAY_WINDOW"] > 50).mean() > 0.3
