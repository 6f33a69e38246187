"""Models: scikit-learn estimators exported to portable JSON score identically in Rust."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from fraudstream.errors import ConfigError, InvalidBatchError
from fraudstream.fraud.features import HANDBOOK_FEATURES, compute_features
from fraudstream.fraud.model import Model, ModelInput, from_sklearn, inputs_for, standardization, train
from fraudstream.fraud.scenario import handbook_like

TABLE = handbook_like(seed=5)
FEATURES = compute_features(TABLE)
LABELS = TABLE["TX_FRAUD"].astype(np.int64)
INPUTS = inputs_for([*HANDBOOK_FEATURES, "CUSTOMER_ID_AMOUNT_RATIO", "CUSTOMER_ID_MS_SINCE_PREV_TX"])


def fitted(estimator: Any) -> tuple[Model, Any, np.ndarray[Any, Any]]:
    x = np.column_stack([i.apply(FEATURES[i.name]) for i in INPUTS])
    mean, scale = standardization(x)
    z = (x - mean) / scale
    estimator.fit(z, LABELS)
    return from_sklearn(estimator, INPUTS, mean, scale), estimator, z


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=1000),
        DecisionTreeClassifier(max_depth=2, random_state=0),
        DecisionTreeClassifier(random_state=0),
        RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0),
    ],
    ids=["logistic", "tree_depth_2", "tree_unlimited", "forest"],
)
def test_exported_models_score_like_sklearn(estimator: Any, tmp_path: Path) -> None:
    model, est, z = fitted(estimator)
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "fraudstream-model" and doc["inputs"][-1]["transform"] == "log1p"
    loaded = Model.load(path)
    got = loaded.score(FEATURES)
    want = est.predict_proba(z)[:, 1]
    if model.kind == "tree_ensemble":
        np.testing.assert_array_equal(got, want)  # same f32 splits, same leaves, same mean
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert loaded.alerts(FEATURES).tolist() == (got >= 0.5).tolist()
    raw = np.column_stack([np.asarray(FEATURES[i.name], np.float64) for i in INPUTS])
    np.testing.assert_array_equal(loaded.score_matrix(raw), got)


def test_train_uses_training_statistics_only() -> None:
    rows = np.arange(len(LABELS)) < len(LABELS) // 2
    model = train({k: v[rows] for k, v in FEATURES.items()}, LABELS[rows], inputs=HANDBOOK_FEATURES)
    x = np.column_stack([np.asarray(FEATURES[n], float)[rows] for n in HANDBOOK_FEATURES])
    np.testing.assert_allclose(model.mean, x.mean(axis=0))
    assert model.metadata["trained_on_rows"] == rows.sum()
    assert model.score(FEATURES).shape == (len(LABELS),)


def test_bad_models_and_inputs_are_rejected() -> None:
    model, _, _ = fitted(DecisionTreeClassifier(max_depth=3, random_state=0))
    doc = model.to_dict()
    cyclic = json.loads(json.dumps(doc))
    cyclic["trees"]["left"][0] = 0
    with pytest.raises(ConfigError, match="children"):
        Model.from_dict(cyclic)
    with pytest.raises(ConfigError):
        Model.from_dict({**doc, "format": "pickle"})
    with pytest.raises(ConfigError):
        ModelInput("x", "exp")
    with pytest.raises(InvalidBatchError, match="missing feature"):
        model.score({"TX_AMOUNT": np.ones(3)})
    broken = dict(FEATURES)
    broken["TX_AMOUNT"] = np.asarray(broken["TX_AMOUNT"], float).copy()
    broken["TX_AMOUNT"][3] = np.inf
    with pytest.raises(InvalidBatchError) as err:
        model.score(broken)
    assert (err.value.column, err.value.row) == ("TX_AMOUNT", 3)
