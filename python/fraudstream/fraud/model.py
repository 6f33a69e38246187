"""Fraud models: trained with scikit-learn, stored as portable JSON, scored in Rust.

A :class:`Model` file holds everything needed to score, and nothing executable (never a
pickle)::

    {"format": "fraudstream-model", "version": 1,
     "kind": "logistic_regression" | "tree_ensemble",
     "inputs": [{"name": "TX_AMOUNT", "transform": "identity"}, ...],
     "scaling": {"mean": [...], "scale": [...]},          # training statistics only
     "logistic_regression": {"coef": [...], "intercept": b},
     "trees": {"feature": [...], "threshold": [...], "left": [...], "right": [...],
               "value": [...], "tree_sizes": [...]},      # scikit-learn tree_ arrays
     "threshold": 0.5, "metadata": {...}}

Scoring, in Rust over the feature columns as they are: each input is transformed
(``identity``, ``log`` = ln(max(x, 1e-3)), ``log1p`` = ln(1 + max(x, 0))), standardized with
the training mean and scale, then scored: ``sigmoid(intercept + coef . z)``, or the mean of
the trees' leaf probabilities (splits compare like scikit-learn, so scores equal
scikit-learn's ``predict_proba``). Training applies the same transforms (:func:`input_matrix`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream import _core
from fraudstream.errors import ConfigError, InvalidBatchError

FORMAT = "fraudstream-model"
VERSION = 1
TRANSFORMS = ("identity", "log", "log1p")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModelInput:
    """A model input: a feature column and the transform applied before scaling."""

    name: str
    transform: str = "identity"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(
                f"input {self.name!r}: transform must be one of {TRANSFORMS}, got {self.transform!r}"
            )

    def apply(self, column: npt.ArrayLike) -> FloatArray:
        """The transformed column as float64."""
        x = np.asarray(column, dtype=np.float64)
        if self.transform == "log":
            return np.log(np.maximum(x, 1e-3))
        if self.transform == "log1p":
            return np.log1p(np.maximum(x, 0.0))
        return x


def inputs_for(names: Sequence[str]) -> list[ModelInput]:
    """Model inputs for feature names, with the transforms the linear models need (logs of
    ratios and durations); identity elsewhere."""
    log = {"CUSTOMER_ID_AMOUNT_RATIO"}
    log1p = {"CUSTOMER_ID_MS_SINCE_PREV_TX"}
    return [ModelInput(n, "log" if n in log else "log1p" if n in log1p else "identity") for n in names]


def input_matrix(inputs: Sequence[ModelInput], features: Mapping[str, Any]) -> FloatArray:
    """The transformed ``inputs`` of named feature columns as a C-contiguous (rows, inputs)
    float64 matrix."""
    missing = [i.name for i in inputs if i.name not in features]
    if missing:
        raise InvalidBatchError(f"missing feature columns {missing}")
    return np.ascontiguousarray(np.column_stack([i.apply(features[i.name]) for i in inputs]))


@dataclass
class Model:
    """A trained model that scores feature columns (see the module docstring for the file)."""

    kind: str
    inputs: list[ModelInput]
    mean: list[float]
    scale: list[float]
    params: dict[str, Any]
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [i.name for i in self.inputs]
        transforms = [i.transform for i in self.inputs]
        mean, scale = [float(v) for v in self.mean], [float(v) for v in self.scale]
        if self.kind == "logistic_regression":
            p = self.params
            self._scorer = _core.ModelScorer.logistic(
                names, transforms, mean, scale, [float(c) for c in p["coef"]], float(p["intercept"])
            )
        elif self.kind == "tree_ensemble":
            t = self.params
            self._scorer = _core.ModelScorer.forest(
                names,
                transforms,
                mean,
                scale,
                [int(v) for v in t["feature"]],
                [float(v) for v in t["threshold"]],
                [int(v) for v in t["left"]],
                [int(v) for v in t["right"]],
                [float(v) for v in t["value"]],
                [int(v) for v in t["tree_sizes"]],
            )
        else:
            raise ConfigError(
                f"unknown model kind {self.kind!r}; expected logistic_regression or tree_ensemble"
            )

    @property
    def feature_names(self) -> list[str]:
        """The feature columns the model reads."""
        return [i.name for i in self.inputs]

    @property
    def version(self) -> str:
        """A short stable name of this model for alerts: ``metadata["version"]`` when set,
        else the first 12 hex digits of the SHA-256 of its JSON document (sorted keys), so
        any change to inputs, scaling, parameters or threshold gives another version."""
        declared = self.metadata.get("version")
        if declared is not None:
            return str(declared)
        doc = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:12]

    def score(self, features: Mapping[str, Any]) -> FloatArray:
        """Fraud probability per row of ``features`` (named columns, e.g. the output of
        :meth:`~fraudstream.fraud.features.StreamingFeatures.process`): the columns are read
        in place by the Rust scorer, which transforms, standardizes and scores them with the
        GIL released."""
        missing = [i.name for i in self.inputs if i.name not in features]
        if missing:
            raise InvalidBatchError(f"missing feature columns {missing}")
        columns = []
        for i in self.inputs:
            col = np.asarray(features[i.name])
            if col.dtype not in (np.float64, np.int64):
                col = col.astype(np.float64 if col.dtype.kind == "f" else np.int64)
            columns.append(np.ascontiguousarray(col))
        return np.asarray(self._scorer.score_columns(columns))

    def score_matrix(self, x: FloatArray) -> FloatArray:
        """Scores a (rows, inputs) matrix of raw (untransformed) features in input order."""
        return np.asarray(self._scorer.score(np.ascontiguousarray(x, dtype=np.float64)))

    def alerts(self, features: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
        """Rows scoring at or above the model's alert threshold."""
        return self.score(features) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        key = "logistic_regression" if self.kind == "logistic_regression" else "trees"
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "inputs": [{"name": i.name, "transform": i.transform} for i in self.inputs],
            "scaling": {"mean": list(self.mean), "scale": list(self.scale)},
            key: self.params,
            "threshold": self.threshold,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Model:
        """A model from its JSON document."""
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ConfigError(f"not a {FORMAT} version {VERSION} document")
        kind = str(doc["kind"])
        key = "logistic_regression" if kind == "logistic_regression" else "trees"
        return cls(
            kind=kind,
            inputs=[ModelInput(str(i["name"]), str(i.get("transform", "identity"))) for i in doc["inputs"]],
            mean=[float(v) for v in doc["scaling"]["mean"]],
            scale=[float(v) for v in doc["scaling"]["scale"]],
            params=dict(doc[key]),
            threshold=float(doc.get("threshold", 0.5)),
            metadata=dict(doc.get("metadata", {})),
        )

    def save(self, path: str | Path) -> None:
        """Writes the JSON model file."""
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Reads a JSON model file."""
        return cls.from_dict(json.loads(Path(path).read_text()))


DEFAULT_MODEL = "default_model.json"
"""The model file shipped in the package, beside this module."""


def default_model() -> Model:
    """The model shipped in the package (``fraudstream/fraud/default_model.json``): a logistic
    regression over the default detector's streaming features, trained on the generator's
    labelled traffic, with its threshold set by an alert budget. Made reproducibly by
    ``python -m fraudstream.fraud.train_default`` (see that module); a fresh object per call."""
    from importlib import resources

    text = resources.files("fraudstream.fraud").joinpath(DEFAULT_MODEL).read_text(encoding="utf-8")
    return Model.from_dict(json.loads(text))


PROFILES_MODEL = "profiles_model.json"
"""The model shipped for a detector with a profiles table (``detector.profiles_table``): the
default model's inputs and the profile features (``train_default --with-profiles``)."""


def profiles_model() -> Model:
    """The model shipped for a detector that reads customer profiles
    (``fraudstream/fraud/profiles_model.json``, :data:`PROFILES_MODEL`); a fresh object per call."""
    from importlib import resources

    text = resources.files("fraudstream.fraud").joinpath(PROFILES_MODEL).read_text(encoding="utf-8")
    return Model.from_dict(json.loads(text))


def standardization(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean and scale of the training matrix, as scikit-learn's ``StandardScaler`` (a zero
    spread scales by 1)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def from_sklearn(
    estimator: Any,
    inputs: Sequence[ModelInput],
    mean: FloatArray,
    scale: FloatArray,
    *,
    threshold: float = 0.5,
    metadata: Mapping[str, Any] | None = None,
) -> Model:
    """Exports a fitted scikit-learn ``LogisticRegression``, ``DecisionTreeClassifier``,
    ``RandomForestClassifier`` or ``ExtraTreesClassifier`` (binary, trained on standardized
    inputs) as a :class:`Model`."""
    meta = dict(metadata or {})
    meta.setdefault("estimator", type(estimator).__name__)
    if hasattr(estimator, "coef_"):
        params: dict[str, Any] = {
            "coef": [float(c) for c in np.ravel(estimator.coef_)],
            "intercept": float(np.ravel(estimator.intercept_)[0]),
        }
        kind = "logistic_regression"
    else:
        trees = list(getattr(estimator, "estimators_", [estimator]))
        if list(estimator.classes_) != [0, 1]:
            raise ConfigError(f"expected a binary classifier with classes [0, 1], got {estimator.classes_}")
        parts: dict[str, list[Any]] = {
            k: [] for k in ("feature", "threshold", "left", "right", "value", "tree_sizes")
        }
        for tree in trees:
            t = tree.tree_
            value = t.value[:, 0, :]
            proba = value[:, 1] / np.maximum(value.sum(axis=1), np.finfo(np.float64).tiny)
            leaf = t.children_left < 0
            parts["feature"] += np.where(leaf, -1, t.feature).astype(int).tolist()
            parts["threshold"] += np.where(leaf, 0.0, t.threshold).tolist()
            parts["left"] += np.where(leaf, -1, t.children_left).astype(int).tolist()
            parts["right"] += np.where(leaf, -1, t.children_right).astype(int).tolist()
            parts["value"] += np.where(leaf, proba, 0.0).tolist()
            parts["tree_sizes"].append(int(t.node_count))
        params, kind = dict(parts), "tree_ensemble"
    return Model(
        kind=kind,
        inputs=list(inputs),
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        params=params,
        threshold=threshold,
        metadata=meta,
    )


ESTIMATORS = ("logistic_regression", "decision_tree_depth_2", "random_forest", "random_forest_depth_12")


def make_estimator(name: str, *, seed: int = 0) -> Any:
    """The scikit-learn estimator of a model name: the handbook's settings (scikit-learn
    defaults, ``random_state`` fixed), and ``random_forest_depth_12``, a forest of 100 trees
    of depth at most 12, which scores several times faster than unlimited depth."""
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.tree import DecisionTreeClassifier  # type: ignore[import-untyped]

    if name == "logistic_regression":
        return LogisticRegression(random_state=seed, max_iter=1000)
    if name == "decision_tree_depth_2":
        return DecisionTreeClassifier(max_depth=2, random_state=seed)
    if name == "random_forest":
        return RandomForestClassifier(random_state=seed, n_jobs=-1)
    if name == "random_forest_depth_12":
        return RandomForestClassifier(n_estimators=100, max_depth=12, random_state=seed, n_jobs=-1)
    raise ConfigError(f"unknown estimator {name!r}; expected one of {ESTIMATORS}")


def train(
    features: Mapping[str, Any],
    labels: npt.ArrayLike,
    *,
    estimator: str = "logistic_regression",
    inputs: Sequence[str] | Sequence[ModelInput],
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> Model:
    """Trains ``estimator`` on the rows of ``features`` (named columns) and exports it; the
    scaling statistics are those of these rows only."""
    ins = [i if isinstance(i, ModelInput) else ModelInput(i) for i in inputs]
    x = input_matrix(ins, features)
    y = np.asarray(labels).astype(np.int64)
    mean, scale = standardization(x)
    fitted = make_estimator(estimator, seed=seed).fit((x - mean) / scale, y)
    meta = {"trained_on_rows": len(y), "positives": int(y.sum()), **(metadata or {})}
    return from_sklearn(fitted, ins, mean, scale, metadata={"name": estimator, **meta})
