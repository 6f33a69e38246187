"""The handbook's evaluation protocol and metrics (sections 3.4 and 4).

Protocol (defaults): train on 2018-07-25 .. 2018-07-31, then 7 days of label delay, test on
2018-08-08 .. 2018-08-14. On each test day the cards with a fraud already known are dropped:
the training period's fraudulent cards, plus those of every delay-period day at least the
delay old (the handbook's ``get_train_test_set``). Inputs are scaled with training statistics
only. Metrics: AUC ROC, Average Precision, and Card Precision@100: per test day, cards ranked
by their highest score, the share of frauds among the top 100, cards detected on earlier days
removed, averaged over the test days.

The features are computed by the streaming engine over the whole file from its start, so the
training and test rows see exactly what a live system would have seen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.fraud.features import ADDED_FEATURES, HANDBOOK_FEATURES, StreamingFeatures, compute_features
from fraudstream.fraud.model import Model, inputs_for, train

DAY_MS = 86_400_000

PUBLISHED: dict[str, dict[str, float]] = {
    "logistic_regression": {"auc_roc": 0.871, "average_precision": 0.606, "card_precision_at_100": 0.291},
    "decision_tree_depth_2": {"auc_roc": 0.763, "average_precision": 0.496, "card_precision_at_100": 0.241},
    "random_forest": {"auc_roc": 0.867, "average_precision": 0.658, "card_precision_at_100": 0.287},
    "xgboost": {"auc_roc": 0.862, "average_precision": 0.639, "card_precision_at_100": 0.273},
}
"""The handbook's baseline on this protocol (handbook features, scikit-learn defaults)."""

METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: a scikit-learn estimator name and its input features."""

    name: str
    estimator: str
    features: Sequence[str]


STREAMING_FEATURES = [*HANDBOOK_FEATURES, *ADDED_FEATURES]

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("logistic_regression", "logistic_regression", HANDBOOK_FEATURES),
        ModelSpec("decision_tree_depth_2", "decision_tree_depth_2", HANDBOOK_FEATURES),
        ModelSpec("random_forest", "random_forest", HANDBOOK_FEATURES),
        ModelSpec("logistic_regression_streaming", "logistic_regression", STREAMING_FEATURES),
        ModelSpec("random_forest_streaming", "random_forest_depth_12", STREAMING_FEATURES),
    )
}
"""Models of ``fraudstream evaluate``: the handbook's baselines on its 15 features, and the
same estimators with the added streaming features."""


@dataclass(frozen=True)
class Protocol:
    """Dates of the handbook protocol."""

    train_start: date = date(2018, 7, 25)
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    top_k: int = 100

    @property
    def first_day(self) -> int:
        """The first training day, in days since the epoch."""
        return (self.train_start - date(1970, 1, 1)).days

    @property
    def end_ms(self) -> int:
        """End of the test period (exclusive), epoch ms."""
        return (self.first_day + self.train_days + self.delay_days + self.test_days) * DAY_MS


@dataclass
class Split:
    """Training rows, test rows (delay-known cards removed) and each test row's day."""

    train: npt.NDArray[np.intp]
    test: npt.NDArray[np.intp]
    test_day: npt.NDArray[np.int64]


def split(
    times: npt.NDArray[np.int64],
    customers: npt.NDArray[np.int64],
    frauds: npt.NDArray[Any],
    protocol: Protocol | None = None,
) -> Split:
    """The training and test rows of the protocol (the handbook's ``get_train_test_set``)."""
    p = protocol or Protocol()
    day = times // DAY_MS
    start = p.first_day
    train_rows = np.flatnonzero((day >= start) & (day < start + p.train_days))
    fraud = np.asarray(frauds) == 1
    known = set(np.unique(customers[train_rows][fraud[train_rows]]).tolist())
    tests, days = [], []
    for d in range(p.test_days):
        test_day = start + p.train_days + p.delay_days + d
        # frauds of the day `delay + 1` days before the test day become known (the handbook's
        # convention: the training frauds, then one more delay-period day per test day)
        newly = (day == start + p.train_days + d - 1) & fraud
        known.update(np.unique(customers[newly]).tolist())
        rows = np.flatnonzero(day == test_day)
        rows = rows[~np.isin(customers[rows], np.fromiter(known, np.int64, len(known)))]
        tests.append(rows)
        days.append(np.full(len(rows), test_day, np.int64))
    return Split(train_rows, np.concatenate(tests), np.concatenate(days))


def card_precision_at_k(
    scores: npt.NDArray[np.float64],
    customers: npt.NDArray[np.int64],
    frauds: npt.NDArray[Any],
    days: npt.NDArray[np.int64],
    k: int = 100,
) -> float:
    """Card Precision@k averaged over days; cards detected on earlier days are removed."""
    import pandas as pd

    detected: set[int] = set()
    per_day = []
    frame = pd.DataFrame(
        {"card": customers, "score": scores, "fraud": np.asarray(frauds, np.int64), "day": days}
    )
    for _, rows in frame.groupby("day", sort=True):
        rows = rows[~rows["card"].isin(detected)]
        cards = rows.groupby("card")[["score", "fraud"]].max()
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        hits = top.index[top["fraud"] == 1]
        per_day.append(len(hits) / k)
        detected.update(int(c) for c in hits)
    return float(np.mean(per_day)) if per_day else float("nan")


def metrics(
    scores: npt.NDArray[np.float64],
    customers: npt.NDArray[np.int64],
    frauds: npt.NDArray[Any],
    days: npt.NDArray[np.int64],
    k: int = 100,
) -> dict[str, float]:
    """AUC ROC, Average Precision and Card Precision@k of test scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # type: ignore[import-untyped]

    y = np.asarray(frauds, np.int64)
    return {
        "auc_roc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "card_precision_at_100": card_precision_at_k(scores, customers, y, days, k),
    }


@dataclass
class Evaluation:
    """Metrics per model, with timings and the exported models."""

    models: dict[str, dict[str, float]] = field(default_factory=dict)
    exported: dict[str, Model] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"models": {name: {metric: value}}}``."""
        return {"models": self.models}


@dataclass
class Prepared:
    """The rows up to the end of the test period, their streaming features and the split."""

    table: dict[str, np.ndarray[Any, Any]]
    features: dict[str, np.ndarray[Any, Any]]
    split: Split


def prepare(table: Mapping[str, Any], protocol: Protocol | None = None) -> Prepared:
    """Streaming features of every row up to the end of the test period, replayed from the
    start of the data (features never look ahead, so later rows are not needed), and the
    protocol's split of those rows."""
    p = protocol or Protocol()
    times = np.asarray(table["TX_TIME_MS"])
    keep = times < p.end_ms
    prefix = {k: np.asarray(v) if keep.all() else np.asarray(v)[keep] for k, v in table.items()}
    features = compute_features(prefix, features=StreamingFeatures())
    s = split(prefix["TX_TIME_MS"], prefix["CUSTOMER_ID"], prefix["TX_FRAUD"], p)
    return Prepared(prefix, features, s)


def train_model(prepared: Prepared, name: str, *, seed: int = 0, protocol: Protocol | None = None) -> Model:
    """Trains model ``name`` of :data:`MODELS` on the training rows (statistics of those rows
    only) and returns its portable form."""
    spec = MODELS[name]
    rows = prepared.split.train
    return train(
        {k: v[rows] for k, v in prepared.features.items()},
        prepared.table["TX_FRAUD"][rows],
        estimator=spec.estimator,
        inputs=inputs_for(spec.features),
        seed=seed,
        metadata={"name": name, "protocol": str(protocol or Protocol())},
    )


def evaluate(
    table: Mapping[str, Any],
    *,
    models: Sequence[str] = tuple(MODELS),
    protocol: Protocol | None = None,
    seed: int = 0,
) -> Evaluation:
    """Trains and tests each model on the protocol; every model is exported to its portable
    form and the test scores come from that (the Rust scorer), as they would in the stream."""
    p = protocol or Protocol()
    result = Evaluation()
    began = time.perf_counter()
    prepared = prepare(table, p)
    result.seconds["features"] = time.perf_counter() - began
    s, cols = prepared.split, prepared.table
    result.rows = {"train": len(s.train), "test": len(s.test)}
    test_features = {k: v[s.test] for k, v in prepared.features.items()}
    for name in models:
        began = time.perf_counter()
        model = Model.from_dict(
            train_model(prepared, name, seed=seed, protocol=p).to_dict()
        )  # as in the file
        scores = model.score(test_features)
        result.models[name] = metrics(
            scores, cols["CUSTOMER_ID"][s.test], cols["TX_FRAUD"][s.test], s.test_day, p.top_k
        )
        result.exported[name] = model
        result.seconds[name] = time.perf_counter() - began
    return result


def _triple(m: Mapping[str, float]) -> tuple[float, float, float]:
    return m["auc_roc"], m["average_precision"], m["card_precision_at_100"]


def format_table(evaluation: Evaluation) -> str:
    """The metrics beside the handbook's published figures."""
    head = f"{'model':32} {'AUC ROC':>8} {'AP':>7} {'CP@100':>7}   published (AUC / AP / CP@100)"
    lines = [head, "-" * len(head)]
    for name, m in evaluation.models.items():
        pub = PUBLISHED.get(name)
        ref = "{:.3f} / {:.3f} / {:.3f}".format(*_triple(pub)) if pub else "-"
        lines.append("{:32} {:8.3f} {:7.3f} {:7.3f}   ".format(name, *_triple(m)) + ref)
    for name, pub in PUBLISHED.items():
        if name not in evaluation.models:
            label = f"{name} (published only)"
            ref = "{:.3f} / {:.3f} / {:.3f}".format(*_triple(pub))
            lines.append(f"{label:32} {'':8} {'':7} {'':7}   {ref}")
    return "\n".join(lines)
