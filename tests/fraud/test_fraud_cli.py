"""The ``features``, ``evaluate`` and ``train`` subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from handbook_reference import HANDBOOK_FEATURES, handbook_features

from fraudstream.cli import main
from fraudstream.fraud.evaluate import PUBLISHED
from fraudstream.fraud.model import Model
from fraudstream.fraud.scenario import handbook_like


def test_features_command_writes_the_handbook_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = handbook_like(seed=11)
    data, out = tmp_path / "tx.parquet", tmp_path / "features.parquet"
    pq.write_table(pa.table(table), data)
    assert main(["features", "--data", str(data), "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    assert list(got.columns) == ["TRANSACTION_ID", *HANDBOOK_FEATURES]
    want = handbook_features(pd.DataFrame(table))
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)
    assert "36,000 transactions, 15 features" in capsys.readouterr().err


def test_missing_data_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.parquet"
    assert main(["evaluate", "--data", str(missing)]) == 2
    assert f"transaction file not found: {missing}" in capsys.readouterr().err


def test_evaluate_json_last_line(handbook_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--data", str(handbook_path), "--json", "--models", "logistic_regression"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(lines[-1])
    row = doc["models"]["logistic_regression"]
    assert set(row) == {"auc_roc", "average_precision", "card_precision_at_100"}
    for metric, published in PUBLISHED["logistic_regression"].items():
        assert row[metric] == pytest.approx(published, abs=0.01)
    assert any("0.871 / 0.606 / 0.291" in line for line in lines), "published figures shown beside"


def test_train_writes_a_portable_model(handbook_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr.json"
    assert (
        main(["train", "--data", str(handbook_path), "--model", "logistic_regression", "--out", str(out)])
        == 0
    )
    model = Model.load(out)
    assert model.kind == "logistic_regression" and model.feature_names == HANDBOOK_FEATURES
    assert model.metadata["trained_on_rows"] == 67_240
    assert np.isfinite(model.params["coef"]).all()
