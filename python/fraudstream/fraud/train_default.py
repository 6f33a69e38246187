"""The default model shipped in the package, and how the default detector does on labelled traffic.

``fraud/default_model.json`` (loaded by :func:`fraudstream.fraud.model.default_model`) is a
logistic regression made by this module, reproducibly::

    python -m fraudstream.fraud.train_default             # retrain: writes fraud/default_model.json
    python -m fraudstream.fraud.train_default --check     # retrain and compare with the shipped file
    python -m fraudstream.fraud.train_default --evaluate  # precision / recall on held-out seeds

**Training.** Traffic of :func:`fraudstream.generator.labelled_transactions` with seed
:data:`TRAINING_SEED` (no evaluation seed uses it; :data:`TRAINING`: 2M transactions on 100k
cards over 7 days, 1% of the cards compromised so that the fraud class has thousands of rows).
Its inputs (:data:`MODEL_INPUTS`) are streaming features computed exactly as the detector
computes them when it scores on arrival (:func:`arrival_features`): rows in arrival order,
event time replaced by its running maximum, ids by the arrival sequence, the default feature
windows with :data:`~fraudstream.fraud.detector.FEATURE_COLUMNS`. Fitted by L2-regularized
Newton iterations (numpy only: no scikit-learn needed).

**Threshold: an alert budget.** The model alerts at the lowest score that keeps its false
positives within :data:`ALERT_BUDGET` normal cards per 10,000 cards per day on the training
traffic: per normal card (never compromised) and UTC day, the highest score the card reached;
the threshold lets through at most ``budget x normal cards / 10,000 x days`` such card-days.
With the detector's 24 h cool-down a card alerts at most about once a day, so this bounds the
model's false alerts; the rules' false alerts come on top (see ``--evaluate``).

**Evaluation** (:func:`evaluate_detector`) runs a detector over the traffic of other seeds in
arrival order through the processor API and compares its alerts with the labels: by alert
(an alert on a compromised card between its incident's first and last transaction is true,
any other is false), by incident (caught when it has a true alert), by transaction (rows the
detector flagged, from its score output) and the position of the first alerted transaction
within each caught incident.
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

from fraudstream.fraud.detector import FEATURE_COLUMNS
from fraudstream.fraud.features import StreamingFeatures, compute_features
from fraudstream.fraud.model import DEFAULT_MODEL, Model, ModelInput, input_matrix, standardization
from fraudstream.generator import DAY_MS, LabelledTraffic, labelled_transactions

Columns = dict[str, np.ndarray[Any, Any]]

TRAINING_SEED = 20_240
TRAINING: dict[str, Any] = {"events": 2_000_000, "cards": 100_000, "days": 7.0, "compromised": 0.01}
"""The training traffic's arguments (besides the seed)."""
EVALUATION_SEEDS = (1, 2, 3)
EVALUATION: dict[str, Any] = {"events": 200_000, "cards": 10_000}
"""The evaluation traffic: ``fraudstream produce --events 200000`` (0.3% of the cards
compromised, 6.7 days)."""
ALERT_BUDGET = 5.0
"""Model false positives allowed: normal cards per 10,000 cards per day."""

MODEL_INPUTS = [
    ModelInput("TX_AMOUNT", "log1p"),
    ModelInput("CUSTOMER_ID_AMOUNT_RATIO"),
    ModelInput("CUSTOMER_ID_NB_TX_1HOUR_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_NB_TX_1DAY_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_NB_TX_7DAY_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_NB_COUNTRIES_1HOUR_WINDOW"),
    ModelInput("CUSTOMER_ID_NB_COUNTRIES_1DAY_WINDOW"),
    ModelInput("CUSTOMER_ID_NB_COUNTRIES_7DAY_WINDOW"),
    ModelInput("CUSTOMER_ID_AVG_AMOUNT_1HOUR_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW", "log1p"),
    ModelInput("CUSTOMER_ID_MS_SINCE_PREV_TX", "log1p"),
    ModelInput("CUSTOMER_ID_NEW_TERMINAL"),
    ModelInput("TX_DURING_NIGHT"),
]
"""The card's recent behaviour: amounts against its habit, how many transactions and
countries in the last hour, day and week, new terminals, time since its previous transaction.
The terminal features are left out: they count labelled frauds, which the detector's input
does not carry, over windows that start 7 days back."""

SHIPPED = Path(__file__).with_name(DEFAULT_MODEL)


# ---------------------------------------------------------------------------------------------
# Training


def arrival_features(columns: Mapping[str, Any], features: StreamingFeatures | None = None) -> Columns:
    """The streaming features of transactions (the decoder's columns ``card_id``,
    ``terminal_id``, ``amount``, ``country``, ``event_time``, in arrival order) as the detector
    computes them on arrival: at ``t_eff`` = the running maximum of the event times, with the
    arrival sequence as ids."""
    t = np.asarray(columns["event_time"], np.int64)
    table = {
        "txn_id": np.arange(len(t), dtype=np.int64),
        "ts": np.maximum.accumulate(t) if len(t) else t,
        "card": np.asarray(columns["card_id"], np.int64),
        "terminal": np.asarray(columns["terminal_id"], np.int64),
        "amount": np.asarray(columns["amount"], np.float64),
        "country": np.asarray(columns["country"], np.int64),
    }
    return compute_features(table, features=features or StreamingFeatures(columns=FEATURE_COLUMNS))


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


def train_default(
    *, seed: int = TRAINING_SEED, budget: float = ALERT_BUDGET, traffic: Mapping[str, Any] | None = None
) -> Model:
    """The default model, trained as the module docstring says (``traffic``: the generator's
    arguments, default :data:`TRAINING`)."""
    spec = dict(TRAINING if traffic is None else traffic)
    data = labelled_transactions(seed=seed, **spec)
    c = data.columns
    feats = arrival_features(c)
    x = input_matrix(MODEL_INPUTS, feats)
    y = c["fraud"].astype(np.int64)
    mean, scale = standardization(x)
    coef, intercept = fit_logistic((x - mean) / scale, y)
    model = Model(
        kind="logistic_regression",
        inputs=list(MODEL_INPUTS),
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        params={"coef": [float(v) for v in coef], "intercept": intercept},
    )
    scores = model.score(feats)
    compromised = np.zeros(data.cards, bool)
    compromised[[i.card_id for i in data.incidents]] = True
    normal = ~compromised[c["card_id"]]
    allowed = int(budget * (data.cards - int(compromised.sum())) / 10_000 * data.days)
    model.threshold = budget_threshold(
        card_day_maxima(scores[normal], c["card_id"][normal], c["event_time"][normal]), allowed
    )
    caught = {int(i) for i in c["incident"][(scores >= model.threshold) & (y == 1)]}
    model.metadata = {
        "name": "fraudstream default",
        "trained_by": "python -m fraudstream.fraud.train_default",
        "training_traffic": {
            "generator": "fraudstream.generator.labelled_transactions",
            "seed": seed,
            **spec,
        },
        "features": "arrival order; event time = running maximum; ids = arrival sequence; "
        "StreamingFeatures defaults with fraud.detector.FEATURE_COLUMNS",
        "trained_on_rows": len(y),
        "positives": int(y.sum()),
        "threshold_rule": f"at most {budget:g} normal cards per 10,000 per day at or above it "
        "(per card and UTC day, its highest score) on the training traffic",
        "alert_budget_per_10k_cards_per_day": budget,
        "training_transaction_recall": float((scores[y == 1] >= model.threshold).mean()),
        "training_incident_recall": len(caught) / max(1, len(data.incidents)),
    }
    return model


def save(model: Model, path: Path) -> None:
    """Writes the model file (indented, so that a retrained model diffs readably)."""
    path.write_text(json.dumps(model.to_dict(), indent=1) + "\n")


def same_model(a: Model, b: Model, *, rtol: float = 1e-6) -> bool:
    """Whether two models score alike (inputs, scaling, parameters, threshold within ``rtol``)."""
    if a.kind != b.kind or a.inputs != b.inputs:
        return False
    left = [*a.mean, *a.scale, *a.params["coef"], a.params["intercept"], a.threshold]
    right = [*b.mean, *b.scale, *b.params["coef"], b.params["intercept"], b.threshold]
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

    setups: dict[str, Callable[[], Any]] = {
        "rules + model": lambda: FraudDetector(model=default_model()),
        "model only": lambda: FraudDetector(rules=[], model=default_model()),
        "rules only": lambda: FraudDetector(),
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
    parser.add_argument("--out", type=Path, default=SHIPPED, help=f"model file to write (default {SHIPPED})")
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
    model = train_default(budget=args.budget)
    meta = model.metadata
    print(
        f"trained on {meta['trained_on_rows']:,} transactions ({meta['positives']:,} fraudulent) in "
        f"{time.perf_counter() - began:.1f} s; threshold {model.threshold:.4f} "
        f"(training recall: {meta['training_transaction_recall']:.2f} of fraudulent transactions, "
        f"{meta['training_incident_recall']:.2f} of incidents)"
    )
    if args.check:
        shipped = Model.load(SHIPPED)
        ok = same_model(model, shipped)
        print(f"the shipped model {'matches' if ok else 'DIFFERS FROM'} the retrained one")
        return 0 if ok else 1
    save(model, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
