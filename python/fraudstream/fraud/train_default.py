"""The default model shipped in the package, and how the default detector does on labelled traffic.

``fraud/default_model.json`` (loaded by :func:`fraudstream.fraud.model.default_model`) is a
random forest made by this module, reproducibly (scikit-learn, the ``fraud`` extra, is needed
to train it, not to score it)::

    python -m fraudstream.fraud.train_default             # retrain: writes fraud/default_model.json
    python -m fraudstream.fraud.train_default --check     # retrain and compare with the shipped file
    python -m fraudstream.fraud.train_default --evaluate  # precision / recall on other seeds
    python -m fraudstream.fraud.train_default --with-profiles   # fraud/profiles_model.json

**With profiles** (``--with-profiles``): the same traffic, inputs and forest, plus the profile
features of :mod:`fraudstream.fraud.profiles` (:data:`PROFILE_INPUTS`), computed from the
traffic's own card profiles (:func:`fraudstream.generator.card_profiles`): the model a detector
with a profiles table (``detector.profiles_table``) loads by default.

**Training traffic.** :func:`fraudstream.generator.scenario_traffic` with seed
:data:`TRAINING_SEED` (:data:`TRAINING`: 100k cards over 7 days, 1,000 incidents, half of
them on cards first seen during the attack, :data:`TRAINING_MIX`: the scenario families and
the older incident shapes). No evaluation or tuning seed is used here.

**Inputs** (:data:`MODEL_INPUTS`) are streaming features computed exactly as the detector
computes them when it scores on arrival (:func:`arrival_features`): rows in arrival order,
event time replaced by its running maximum, ids by the arrival sequence, the detector's
default features (card windows 1 h, 6 h, 1, 7 and 30 days) and the derived columns of
:mod:`fraudstream.fraud.derived`: the card's habit without its last 6 hours, spend, countries
and the rule indicators (``CARD_SPREAD_*``: the rules are model inputs, not separate alerts).

**Model.** A random forest (:data:`FOREST`) on every fraudulent row and a seeded
:data:`NEGATIVE_SHARE` of the normal ones, exported as JSON tree arrays (scored in Rust).

**Threshold: an alert budget.** The model alerts at the lowest score that keeps its false
positives within :data:`ALERT_BUDGET` normal cards per 10,000 cards per day on *calibration*
traffic (same generator, seed :data:`CALIBRATION_SEED`, :data:`CALIBRATION`; not the
training rows, which the forest has seen): per normal card (never compromised) and UTC day
after the first (the warm-up, as in :mod:`fraudstream.fraud.prevention`), the highest score
the card reached; the threshold lets through at most ``budget x normal cards / 10,000 x
days`` such card-days. With the detector's 24 h cool-down a card alerts at most about once a
day, so this bounds the false alerts.

**Evaluation** (:func:`evaluate_detector`) runs a detector over the traffic of other seeds in
arrival order through the processor API and compares its alerts with the labels: by alert
(an alert on a compromised card between its incident's first and last transaction is true,
any other is false), by incident (caught when it has a true alert), by transaction (rows the
detector flagged, from its score output) and the position of the first alerted transaction
within each caught incident. The prevention figures (euros saved, false-positive cards per
10,000 a day, over random incidents) are :mod:`fraudstream.fraud.prevention`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.fraud.derived import can_derive, derive
from fraudstream.fraud.detector import detector_features
from fraudstream.fraud.features import StreamingFeatures, compute_features
from fraudstream.fraud.model import (
    DEFAULT_MODEL,
    PROFILES_MODEL,
    Model,
    ModelInput,
    input_matrix,
    standardization,
)
from fraudstream.fraud.profiles import ProfileColumns, join_profiles, profile_features
from fraudstream.generator import (
    DAY_MS,
    FAMILIES,
    SHAPES,
    LabelledTraffic,
    labelled_transactions,
    scenario_traffic,
)

Columns = dict[str, np.ndarray[Any, Any]]

TRAINING_SEED = 20_240
CALIBRATION_SEED = 20_241
TRAINING: dict[str, Any] = {"cards": 100_000, "days": 7.0, "incidents": 1_000}
"""The training traffic's arguments (besides the seed and the mix): about 2.1M transactions."""
CALIBRATION: dict[str, Any] = {"cards": 50_000, "days": 7.0, "incidents": 500}
"""The calibration traffic's, for the threshold."""
TRAINING_MIX: dict[str, float] = {
    **{k: 0.7 * v for k, v in FAMILIES.items()},
    **{k: 0.3 * v for k, v in SHAPES.items()},
}
"""Incident kinds of the training and calibration traffic: 70% scenario families, 30% the
older shapes (fast bursts, short sprees, cash-outs, the story's spread)."""
FIRST_SEEN = 0.5
"""Share of the training incidents on cards first seen during the attack."""
WARM_UP_MS = DAY_MS
"""The calibration's false positives count after this much event time (a warm detector)."""
EVALUATION_SEEDS = (1, 2, 3)
EVALUATION: dict[str, Any] = {"events": 200_000, "cards": 10_000}
"""The evaluation traffic: ``fraudstream produce --events 200000`` (0.3% of the cards
compromised, 6.7 days)."""
ALERT_BUDGET = 5.0
"""Model false positives allowed: normal cards per 10,000 cards per day."""
FOREST: dict[str, Any] = {"n_estimators": 30, "max_depth": 8, "min_samples_leaf": 50, "random_state": 0}
"""The random forest's settings (scikit-learn ``RandomForestClassifier``, one job)."""
NEGATIVE_SHARE = 0.1
"""Share of the normal training rows the forest is fitted on (every fraudulent row is)."""

MODEL_INPUTS = [
    ModelInput("TX_AMOUNT", "log1p"),
    ModelInput("CUSTOMER_ID_AMOUNT_RATIO", "log"),
    *[ModelInput(f"CUSTOMER_ID_NB_TX_{w}_WINDOW", "log1p") for w in ("1HOUR", "6HOUR", "1DAY", "7DAY")],
    *[
        ModelInput(f"CUSTOMER_ID_NB_COUNTRIES_{w}_WINDOW")
        for w in ("1HOUR", "6HOUR", "1DAY", "7DAY", "30DAY")
    ],
    ModelInput("CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_AVG_AMOUNT_6HOUR_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_MS_SINCE_PREV_TX", "log1p"),
    ModelInput("CUSTOMER_ID_NEW_TERMINAL"),
    ModelInput("TX_DURING_NIGHT"),
    ModelInput("CARD_HISTORY_NB_TX", "log1p"),
    ModelInput("CARD_HAS_HISTORY"),
    ModelInput("CARD_AMOUNT_VS_HABIT"),
    ModelInput("CARD_SPEND_1HOUR", "log1p"),
    ModelInput("CARD_SPEND_6HOUR", "log1p"),
    ModelInput("CARD_SPEND_6HOUR_VS_HABIT"),
    ModelInput("CARD_COUNTRIES_6HOUR_VS_30DAY"),
    ModelInput("CARD_SPREAD_4_2_1HOUR"),
    ModelInput("CARD_SPREAD_5_3_1HOUR"),
    ModelInput("CARD_SPREAD_6_2_6HOUR"),
    ModelInput("CARD_SPREAD_8_3_6HOUR"),
]
"""What a card shows with or without history: amounts (against the card's habit when it has
one), counts, spend and distinct countries in the last hour, 6 hours, day and week, time
since its previous transaction, new terminals, whether it has history at all, and the rule
indicators. The terminal features are left out: they count labelled frauds, which the
detector's input does not carry, over windows that start 7 days back."""

PROFILE_INPUTS = [
    ModelInput("profile_missing"),
    ModelInput("account_age_days", "log1p"),
    ModelInput("avg_transaction_amount", "log1p"),
    ModelInput("amount_vs_avg"),
    ModelInput("is_foreign"),
]
"""The profile features (:data:`fraudstream.fraud.profiles.PROFILE_FEATURES`) as inputs of the
model trained ``--with-profiles``."""

SHIPPED = Path(__file__).with_name(DEFAULT_MODEL)
SHIPPED_PROFILES = Path(__file__).with_name(PROFILES_MODEL)


# ---------------------------------------------------------------------------------------------
# Training


def arrival_features(columns: Mapping[str, Any], features: StreamingFeatures | None = None) -> Columns:
    """The streaming features of transactions (the decoder's columns ``card_id``,
    ``terminal_id``, ``amount``, ``country``, ``event_time``, in arrival order) as the detector
    computes them on arrival: at ``t_eff`` = the running maximum of the event times, with the
    arrival sequence as ids; plus the derived columns when the features allow them."""
    t = np.asarray(columns["event_time"], np.int64)
    table = {
        "txn_id": np.arange(len(t), dtype=np.int64),
        "ts": np.maximum.accumulate(t) if len(t) else t,
        "card": np.asarray(columns["card_id"], np.int64),
        "terminal": np.asarray(columns["terminal_id"], np.int64),
        "amount": np.asarray(columns["amount"], np.float64),
        "country": np.asarray(columns["country"], np.int64),
    }
    out = compute_features(table, features=features or detector_features())
    if can_derive(out):
        out.update(derive(out))
    return out


def traffic_features(traffic: LabelledTraffic, with_profiles: bool = False) -> Columns:
    """:func:`arrival_features` of the traffic, plus its profile features when ``with_profiles``
    (every card looked up in the traffic's own profiles)."""
    c = traffic.columns
    out = arrival_features(c)
    if with_profiles:
        if traffic.profiles is None:
            raise ValueError("the traffic has no profiles")
        found = join_profiles(c["card_id"], traffic.profiles, ProfileColumns())
        out.update(profile_features(c["amount"], c["country"], c["event_time"], found))
    return out


def fit_logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], *, l2: float = 1.0, iterations: int = 50
) -> tuple[npt.NDArray[np.float64], float]:
    """L2-regularized logistic regression by Newton's method: coefficients and intercept for
    standardized inputs ``x`` (the intercept is not penalized)."""
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -35.0, 35.0)))
        grad = a.T @ (y - p) - penalty * w
        hess = (a * (p * (1.0 - p))[:, None]).T @ a + np.diag(penalty) + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        w += step
        if float(np.abs(step).max()) < 1e-10:
            break
    return w[1:], float(w[0])


def card_day_maxima(
    scores: npt.NDArray[np.float64], card: npt.NDArray[np.int64], event_time: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The highest score of each (card, UTC day) that has transactions."""
    key = np.stack([card, event_time // DAY_MS])
    _, inverse = np.unique(key, axis=1, return_inverse=True)
    inverse = inverse.ravel()
    top = np.full(int(inverse.max()) + 1 if len(inverse) else 0, -np.inf)
    np.maximum.at(top, inverse, scores)
    return top


def budget_threshold(maxima: npt.NDArray[np.float64], allowed: int) -> float:
    """The lowest threshold at which at most ``allowed`` of the card-day ``maxima`` reach it."""
    ranked = np.sort(maxima)[::-1]
    if allowed >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[allowed], np.inf))


def training_traffic(seed: int, spec: Mapping[str, Any]) -> LabelledTraffic:
    """The training (or calibration) traffic of ``seed``: :func:`scenario_traffic` with
    :data:`TRAINING_MIX` and :data:`FIRST_SEEN`."""
    return scenario_traffic(seed, mix=TRAINING_MIX, first_seen=FIRST_SEEN, **dict(spec))


def fit_forest(
    model_inputs: Sequence[ModelInput], feats: Mapping[str, Any], y: npt.NDArray[np.int64]
) -> Model:
    """The random forest of :data:`FOREST` on every positive row and a seeded
    :data:`NEGATIVE_SHARE` of the others (inputs standardized with the training statistics)."""
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    from fraudstream.fraud.model import from_sklearn

    x = input_matrix(model_inputs, feats)
    mean, scale = standardization(x)
    keep = (y == 1) | (np.random.default_rng(FOREST["random_state"]).random(len(y)) < NEGATIVE_SHARE)
    forest = RandomForestClassifier(n_jobs=1, **FOREST)
    forest.fit((x[keep] - mean) / scale, y[keep])
    return from_sklearn(forest, list(model_inputs), mean, scale, metadata={"fitted_rows": int(keep.sum())})


def calibrate(
    model: Model, traffic: LabelledTraffic, budget: float, with_profiles: bool = False
) -> tuple[float, npt.NDArray[np.float64]]:
    """The budget threshold of ``model`` on ``traffic`` (see the module docstring) and the
    traffic's scores."""
    c = traffic.columns
    scores = model.score(traffic_features(traffic, with_profiles))
    compromised = np.isin(c["card_id"], [i.card_id for i in traffic.incidents])
    counted = ~compromised & (c["event_time"] >= traffic.start_ms + WARM_UP_MS)
    normal_cards = traffic.cards - sum(1 for i in traffic.incidents if i.history)
    days = traffic.days - WARM_UP_MS / DAY_MS
    allowed = int(budget * normal_cards / 10_000 * days)
    maxima = card_day_maxima(scores[counted], c["card_id"][counted], c["event_time"][counted])
    return budget_threshold(maxima, allowed), scores


def train_default(
    *,
    seed: int = TRAINING_SEED,
    calibration_seed: int = CALIBRATION_SEED,
    budget: float = ALERT_BUDGET,
    traffic: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    with_profiles: bool = False,
) -> Model:
    """The default model, trained as the module docstring says (``traffic`` and
    ``calibration``: :func:`training_traffic` arguments, default :data:`TRAINING` and
    :data:`CALIBRATION`; ``with_profiles``: the profile features as inputs too)."""
    import sklearn  # type: ignore[import-untyped]

    spec = dict(TRAINING if traffic is None else traffic)
    data = training_traffic(seed, spec)
    y = data.columns["fraud"].astype(np.int64)
    inputs = [*MODEL_INPUTS, *PROFILE_INPUTS] if with_profiles else MODEL_INPUTS
    model = fit_forest(inputs, traffic_features(data, with_profiles), y)
    held = dict(CALIBRATION if calibration is None else calibration)
    check = training_traffic(calibration_seed, held)
    model.threshold, scores = calibrate(model, check, budget, with_profiles)
    c = check.columns
    fraud = c["fraud"] == 1
    caught = {int(i) for i in c["incident"][(scores >= model.threshold) & fraud]}
    model.metadata = {
        "name": "fraudstream default" + (" with profiles" if with_profiles else ""),
        **model.metadata,
        "trained_by": "python -m fraudstream.fraud.train_default",
        "scikit_learn": sklearn.__version__,
        "forest": dict(FOREST),
        "negative_share": NEGATIVE_SHARE,
        "training_traffic": {
            "generator": "fraudstream.generator.scenario_traffic",
            "seed": seed,
            **spec,
            "mix": TRAINING_MIX,
            "first_seen": FIRST_SEEN,
        },
        "calibration_traffic": {"seed": calibration_seed, **held},
        "features": "arrival order; event time = running maximum; ids = arrival sequence; "
        "fraud.detector.detector_features() and fraud.derived"
        + ("; fraud.profiles from generator.card_profiles" if with_profiles else ""),
        "trained_on_rows": len(y),
        "positives": int(y.sum()),
        "threshold_rule": f"at most {budget:g} normal cards per 10,000 per day at or above it "
        "(per card and UTC day after the first, its highest score) on the calibration traffic",
        "alert_budget_per_10k_cards_per_day": budget,
        "calibration_transaction_recall": float((scores[fraud] >= model.threshold).mean()),
        "calibration_incident_recall": len(caught) / max(1, len(check.incidents)),
    }
    return model


def save(model: Model, path: Path) -> None:
    """Writes the model file (a logistic regression indented, so that it diffs readably; the
    forest's arrays on one line each)."""
    doc = model.to_dict()
    if model.kind == "logistic_regression":
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
    path.write_text("{\n" + lines + "\n}\n")


def same_model(a: Model, b: Model, *, rtol: float = 1e-6) -> bool:
    """Whether two models score alike (inputs, scaling, parameters, threshold within ``rtol``;
    a forest's structure exactly)."""
    if a.kind != b.kind or a.inputs != b.inputs or a.params.keys() != b.params.keys():
        return False
    left = [*a.mean, *a.scale, a.threshold]
    right = [*b.mean, *b.scale, b.threshold]
    for key in a.params:
        x, y = np.ravel(a.params[key]), np.ravel(b.params[key])
        if x.shape != y.shape:
            return False
        if key in ("feature", "left", "right", "tree_sizes") and not np.array_equal(x, y):
            return False
        left += x.astype(np.float64).tolist()
        right += y.astype(np.float64).tolist()
    return bool(np.allclose(left, right, rtol=rtol, atol=1e-9))


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_detector(
    traffic: LabelledTraffic, detector: Any = None, *, batch_size: int = 4_096
) -> dict[str, Any]:
    """Runs ``detector`` (a processor; default: ``FraudDetector(model=default_model())``) over
    ``traffic`` in arrival order, without its labels, then :func:`evaluate_alerts`."""
    if detector is None:
        from fraudstream.fraud.detector import FraudDetector
        from fraudstream.fraud.model import default_model

        detector = FraudDetector(model=default_model())
    inputs = {k: v for k, v in traffic.columns.items() if k not in ("fraud", "incident")}
    n = len(traffic)
    alerts: list[Any] = []
    flagged = np.zeros(n, bool)
    scored = np.zeros(n, bool)
    for lo in range(0, n, batch_size):
        out = detector.process({k: v[lo : lo + batch_size] for k, v in inputs.items()})
        alerts += out.alerts
        if out.scores is not None:
            rows = lo + np.asarray(out.scores["row"], np.int64)
            scored[rows] = True
            flagged[rows] = np.asarray(out.scores["decision"]) != 0
    alerts += detector.flush().alerts
    return evaluate_alerts(traffic, alerts, flagged if scored.all() else None)


def evaluate_alerts(
    traffic: LabelledTraffic, alerts: Sequence[Any], flagged: npt.NDArray[np.bool_] | None = None
) -> dict[str, Any]:
    """Precision and recall of ``alerts`` (:class:`~fraudstream.alerts.Alert`: ``card_id``,
    ``trigger_txn_id``, ``event_time``, ``rule``) against the traffic's labels; ``flagged``:
    per row, whether the detector flagged it (any decision but pass), for the figures by
    transaction."""
    c = traffic.columns
    by_card = {i.card_id: i for i in traffic.incidents}
    order = np.argsort(c["txn_id"], kind="stable")
    true_alerts, false_cards, outside = 0, set(), 0
    first: dict[int, Any] = {}
    by_rule: dict[str, list[int]] = {}
    for a in alerts:
        inc = by_card.get(int(a.card_id))
        hit = inc is not None and inc.first_ms <= int(a.event_time) <= inc.last_ms
        counts = by_rule.setdefault(str(a.rule), [0, 0])
        counts[0] += 1
        if hit and inc is not None:
            true_alerts += 1
            counts[1] += 1
            row = int(order[np.searchsorted(c["txn_id"], a.trigger_txn_id, sorter=order)])
            if inc.id not in first or row < first[inc.id][0]:
                first[inc.id] = (row, a)
        elif inc is not None:
            outside += 1
        else:
            false_cards.add(int(a.card_id))
    positions: list[int] = []
    delays: list[int] = []
    for inc_id, (row, a) in first.items():
        rows = np.flatnonzero(c["incident"] == inc_id)
        positions.append(int((rows <= row).sum()))
        delays.append(int(a.event_time) - traffic.incidents[inc_id].first_ms)
    kinds: dict[str, list[int]] = {}
    for inc in traffic.incidents:
        k = kinds.setdefault(inc.kind, [0, 0])
        k[0] += 1
        k[1] += inc.id in first
    false_alerts = len(alerts) - true_alerts
    per_10k_day = 10_000 / traffic.cards / traffic.days
    out: dict[str, Any] = {
        "transactions": len(traffic),
        "cards": traffic.cards,
        "days": traffic.days,
        "incidents": len(traffic.incidents),
        "fraudulent_transactions": int(c["fraud"].sum()),
        "alerts": len(alerts),
        "alerted_cards": len({int(a.card_id) for a in alerts}),
        "true_alerts": true_alerts,
        "false_alerts": false_alerts,
        "false_alerts_on_compromised_cards_outside_their_incident": outside,
        "incidents_caught": len(first),
        "precision": true_alerts / len(alerts) if alerts else 0.0,
        "recall": len(first) / len(traffic.incidents) if traffic.incidents else 0.0,
        "false_positive_cards": len(false_cards),
        "false_alerts_per_10k_cards_per_day": false_alerts * per_10k_day,
        "false_positive_cards_per_10k_cards_per_day": len(false_cards) * per_10k_day,
        "first_alerted_positions": sorted(positions),
        "median_first_alerted_position": float(np.median(positions)) if positions else None,
        "median_detection_delay_ms": float(np.median(delays)) if delays else None,
        "by_kind": {k: {"incidents": v[0], "caught": v[1]} for k, v in sorted(kinds.items())},
        "by_rule": {k: {"alerts": v[0], "true": v[1]} for k, v in sorted(by_rule.items())},
    }
    if flagged is not None:
        fraud = c["fraud"].astype(bool)
        hits = int((flagged & fraud).sum())
        out["transaction_precision"] = hits / int(flagged.sum()) if flagged.any() else 0.0
        out["transaction_recall"] = hits / int(fraud.sum()) if fraud.any() else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# The command


def _evaluate(seeds: Sequence[int], out: Any) -> list[dict[str, Any]]:
    from fraudstream.fraud.detector import FraudDetector
    from fraudstream.fraud.model import default_model
    from fraudstream.fraud.rules import default_rules

    setups: dict[str, Callable[[], Any]] = {
        "default": lambda: FraudDetector(model=default_model()),
        "model only": lambda: FraudDetector(rules=[], model=default_model()),
        "rules only": lambda: FraudDetector(rules=default_rules(horizons=True)),
    }
    results = []
    for seed in seeds:
        traffic = labelled_transactions(seed=seed, **EVALUATION)
        s = traffic.statistics()
        print(
            f"seed {seed}: {s['transactions']:,} transactions, {s['cards']:,} cards, {s['days']:.1f} days, "
            f"{s['compromised_cards']} compromised ({s['compromised_share']:.2%}), "
            f"{s['fraudulent_transactions']} fraudulent transactions ({s['fraud_share']:.3%})",
            file=out,
        )
        for name, make in setups.items():
            r = evaluate_detector(traffic, make())
            r.update(seed=seed, detector=name)
            results.append(r)
            print(f"  {name:<14} {_line(r)}", file=out)
    print("all seeds:", file=out)
    for name in setups:
        total = _total([r for r in results if r["detector"] == name])
        print(f"  {name:<14} {_line(total)}", file=out)
        kinds = ", ".join(f"{k} {v['caught']}/{v['incidents']}" for k, v in total["by_kind"].items())
        print(f"  {'':<14} caught by kind: {kinds}", file=out)
    return results


def _line(r: dict[str, Any]) -> str:
    tx = ""
    if "transaction_precision" in r:
        p, r_ = r["transaction_precision"], r["transaction_recall"]
        tx = f"; by transaction precision {p:.2f} recall {r_:.2f}"
    pos = r["median_first_alerted_position"]
    return (
        f"alerts {r['alerts']} on {r['alerted_cards']} cards, "
        f"caught {r['incidents_caught']}/{r['incidents']} incidents: "
        f"precision {r['precision']:.2f} recall {r['recall']:.2f}, "
        f"{r['false_alerts_per_10k_cards_per_day']:.1f} false alerts per 10k cards per day, "
        f"first alert at incident transaction {'-' if pos is None else f'{pos:g}'} (median){tx}"
    )


def _total(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("alerts", "alerted_cards", "true_alerts", "incidents", "incidents_caught", "false_alerts")
    t: dict[str, Any] = {k: sum(r[k] for r in results) for k in keys}
    card_days = sum(r["cards"] / 10_000 * r["days"] for r in results)
    t["precision"] = t["true_alerts"] / t["alerts"] if t["alerts"] else 0.0
    t["recall"] = t["incidents_caught"] / t["incidents"] if t["incidents"] else 0.0
    t["false_alerts_per_10k_cards_per_day"] = t["false_alerts"] / card_days if card_days else 0.0
    positions = [p for r in results for p in r["first_alerted_positions"]]
    t["median_first_alerted_position"] = float(np.median(positions)) if positions else None
    kinds: dict[str, dict[str, int]] = {}
    for r in results:
        for k, v in r["by_kind"].items():
            agg = kinds.setdefault(k, {"incidents": 0, "caught": 0})
            agg["incidents"] += v["incidents"]
            agg["caught"] += v["caught"]
    t["by_kind"] = kinds
    return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraudstream.fraud.train_default",
        description="Retrains the package's default model on the generator's labelled traffic "
        f"(seed {TRAINING_SEED}), or evaluates the default detector on held-out seeds.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"model file to write (default {SHIPPED}; with --with-profiles {SHIPPED_PROFILES})",
    )
    parser.add_argument(
        "--with-profiles",
        action="store_true",
        help="the profile features (fraud.profiles) as inputs too: the model of a detector with profiles",
    )
    parser.add_argument(
        "--budget", type=float, default=ALERT_BUDGET, help="false-positive cards per 10k a day"
    )
    parser.add_argument("--check", action="store_true", help="retrain and compare with the shipped model")
    parser.add_argument("--evaluate", action="store_true", help="evaluate the shipped model; no training")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(EVALUATION_SEEDS), help="evaluation seeds"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the evaluation figures here")
    args = parser.parse_args(argv)
    if args.evaluate:
        if TRAINING_SEED in args.seeds:
            parser.error(f"seed {TRAINING_SEED} trained the model: evaluate on others")
        results = _evaluate(args.seeds, sys.stdout)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        return 0
    began = time.perf_counter()
    model = train_default(budget=args.budget, with_profiles=args.with_profiles)
    shipped_path = SHIPPED_PROFILES if args.with_profiles else SHIPPED
    meta = model.metadata
    print(
        f"trained on {meta['trained_on_rows']:,} transactions ({meta['positives']:,} fraudulent) in "
        f"{time.perf_counter() - began:.1f} s; threshold {model.threshold:.4f} "
        f"(calibration recall: {meta['calibration_transaction_recall']:.2f} of fraudulent transactions, "
        f"{meta['calibration_incident_recall']:.2f} of incidents)"
    )
    if args.check:
        shipped = Model.load(shipped_path)
        ok = same_model(model, shipped)
        print(f"the shipped model {'matches' if ok else 'DIFFERS FROM'} the retrained one")
        return 0 if ok else 1
    out = args.out or shipped_path
    save(model, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
