"""The scenario evaluation: how much fraud a detector prevents, over many random incidents.

``fraudstream evaluate --scenarios`` (or :func:`evaluate_scenarios`) generates, per seed, the
ordinary traffic of 20,000 cards over a week with 240 random incidents of the scenario
families (:func:`fraudstream.generator.scenario_traffic`: card testing, a foreign terminal
drained, many terminals in 2-6 countries, online merchants; half on cards with history, half
on card numbers first seen during the attack), runs the detector over it in arrival order
through the processor API, without the labels, and judges its alerts:

- **Per incident**, its first alert: an alert on the incident's card whose triggering
  transaction arrived at or after the incident's first fraudulent transaction and no later
  than its last. Its *index* is the number of the incident's fraudulent transactions that
  had arrived by then, the alerting one included (1-based: 1 = the first fraudulent
  transaction raised the alert). *Prevented* euros are those of the fraudulent transactions
  arriving after the alerting one: the alerting transaction itself counts as lost (a
  deployment that declines on the score would save it too). An incident without such an
  alert is missed: index infinite, nothing prevented.
- **False positives**: cards with an alert that is not an incident's first (any alert on a
  card without fraud, or on a compromised card before its incident started), per 10,000
  cards of ordinary traffic per day, counted after the first day (:data:`WARM_UP_MS`). The
  first day warms the detector's state, as a deployed detector's restored state is warm:
  starting cold, every card looks new for a day and alerts of that day are reported apart
  (``cold_start_fp_cards``). Incidents start after that day too.
- **Alert timing**: event time from the incident's first transaction to the alert, and the
  wall-clock latency from the trigger's arrival to the alert.

Medians are over every incident of every seed (missed ones count as infinitely late);
``prevented_fraction`` is prevented euros over all fraud euros. A threshold sweep of the
model's score (the cool-down's one alert per card, no rules) draws the prevented fraction
against the false-positive rate (a PNG with the ``plot`` extra).

Seeds: the default model is trained on :data:`~fraudstream.fraud.train_default.TRAINING_SEED`;
its features, inputs and alert budget were chosen on :data:`TUNING_SEEDS`; the figures to
quote are those of :data:`HELD_OUT_SEEDS`, used for nothing else.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.generator import DAY_MS, FAMILIES, SCENARIO_TRAFFIC, LabelledTraffic, scenario_traffic

TUNING_SEEDS = (101, 102, 103)
"""Seeds the detector's features, inputs and alert budget were chosen on."""
HELD_OUT_SEEDS = (201, 202, 203)
"""Seeds used for nothing but reporting (the default of ``fraudstream evaluate --scenarios``)."""
WARM_UP_MS = DAY_MS
"""False positives are counted after this much event time from the traffic's start."""
TARGETS = {"median_first_alert_index": 5, "prevented_fraction": 0.70, "fp_cards_per_10k_card_days": 5.0}
"""The issue's targets: first alert at or before the 5th fraudulent transaction (median), at
least 70% of fraud euros prevented, at most 5 false-positive cards per 10,000 cards a day."""


@dataclass
class IncidentResult:
    """What the detector did about one incident."""

    seed: int
    id: int
    family: str
    history: bool
    transactions: int
    amount: float
    index: int | None
    """1-based index of the fraudulent transaction that raised the first alert (None: missed)."""
    prevented: float
    """Euros of the fraudulent transactions after the alerting one."""
    delay_ms: int | None
    """Event time from the incident's first transaction to the alert."""
    latency_ms: float | None
    """Wall clock from the trigger's arrival to the alert."""
    rule: str | None


@dataclass
class SeedResult:
    """One seed's traffic and the detector's alerts on it."""

    seed: int
    cards: int
    days: float
    transactions: int
    incidents: list[IncidentResult]
    alerts: int
    false_positive_cards: int
    """Cards with a false alert after the warm-up."""
    cold_start_false_positive_cards: int
    """Cards with a false alert during the warm-up only."""
    counted_days: float
    """Days over which false positives are counted (``days`` less the warm-up)."""
    seconds: float
    """The detector's wall time over the traffic."""
    curve: dict[str, list[float]] = field(default_factory=dict)
    """The model's threshold sweep: ``threshold``, ``fp_cards``, ``prevented``, ``caught``."""


def run_detector(
    traffic: LabelledTraffic, detector: Any, *, batch_size: int = 4_096
) -> tuple[list[Any], npt.NDArray[np.float64], float]:
    """Runs a processor over the traffic in arrival order without its labels: its alerts, the
    per-row score (NaN where the processor gives none) and the wall time."""
    inputs = {k: v for k, v in traffic.columns.items() if k not in ("fraud", "incident")}
    n = len(traffic)
    scores = np.full(n, np.nan)
    alerts: list[Any] = []
    began = time.perf_counter()
    for lo in range(0, n, batch_size):
        out = detector.process({k: v[lo : lo + batch_size] for k, v in inputs.items()})
        alerts += out.alerts
        if out.scores is not None:
            scores[lo + np.asarray(out.scores["row"], np.int64)] = out.scores["score"]
    alerts += detector.flush().alerts
    return alerts, scores, time.perf_counter() - began


def judge(
    traffic: LabelledTraffic, alerts: Sequence[Any], seed: int = 0, *, warm_up_ms: int = WARM_UP_MS
) -> tuple[list[IncidentResult], set[int], set[int]]:
    """Each incident's first alert (see the module docstring), the false-positive cards after
    the warm-up and those during it only. Rows are arrival order (``txn_id`` = row, as the
    generator numbers them)."""
    c = traffic.columns
    incident = c["incident"]
    fraud_rows = np.flatnonzero(incident >= 0)
    by_incident = {i.id: fraud_rows[incident[fraud_rows] == i.id] for i in traffic.incidents}
    card_of = {i.card_id: i for i in traffic.incidents}
    first: dict[int, tuple[int, Any]] = {}
    false_cards: set[int] = set()
    cold_cards: set[int] = set()
    warm = traffic.start_ms + warm_up_ms
    for a in alerts:
        row = int(a.trigger_txn_id)
        inc = card_of.get(int(a.card_id))
        rows = by_incident[inc.id] if inc is not None else None
        if rows is not None and rows[0] <= row <= rows[-1]:
            if inc is not None and (inc.id not in first or row < first[inc.id][0]):
                first[inc.id] = (row, a)
        elif rows is None or row < rows[0]:
            (false_cards if int(a.event_time) >= warm else cold_cards).add(int(a.card_id))
        # an alert after the incident's last transaction prevents nothing and is not false
    results = []
    for inc in traffic.incidents:
        rows = by_incident[inc.id]
        amounts = c["amount"][rows]
        hit = first.get(inc.id)
        if hit is None:
            index, prevented, delay, latency, rule = None, 0.0, None, None, None
        else:
            row, a = hit
            index = int((rows <= row).sum())
            prevented = float(amounts[rows > row].sum())
            delay, latency, rule = int(a.event_time) - inc.first_ms, a.latency_ms, str(a.rule)
        results.append(
            IncidentResult(
                seed=seed,
                id=inc.id,
                family=inc.kind,
                history=inc.history,
                transactions=len(rows),
                amount=float(amounts.sum()),
                index=index,
                prevented=prevented,
                delay_ms=delay,
                latency_ms=latency,
                rule=rule,
            )
        )
    return results, false_cards, cold_cards - false_cards


def threshold_curve(
    traffic: LabelledTraffic,
    scores: npt.NDArray[np.float64],
    *,
    cooldown_ms: int = DAY_MS,
    warm_up_ms: int = WARM_UP_MS,
    points: int = 60,
) -> dict[str, list[float]]:
    """The model alone at other thresholds: per threshold, false-positive cards (cards whose
    score reaches it outside an incident, after the warm-up), euros prevented and incidents caught (the first
    row of the incident's card at or above it, counted from ``cooldown_ms`` before the
    incident: an earlier alert within the cool-down holds the incident's back)."""
    c = traffic.columns
    if np.isnan(scores).all():
        return {}
    s = np.nan_to_num(scores, nan=0.0)
    incident = c["incident"]
    card = c["card_id"]
    by_card = np.argsort(card, kind="stable")
    ranked = card[by_card]
    per_card_rows = {
        i.card_id: by_card[
            np.searchsorted(ranked, i.card_id, "left") : np.searchsorted(ranked, i.card_id, "right")
        ]
        for i in traffic.incidents
    }  # each in arrival order
    compromised = np.isin(card, list(per_card_rows))
    # outside incidents: every row of a card without fraud, and a compromised card's rows before
    outside = ~compromised & (c["event_time"] >= traffic.start_ms + warm_up_ms)
    for inc in traffic.incidents:
        rows = per_card_rows[inc.card_id]
        first_row = int(np.flatnonzero(incident[rows] == inc.id)[0])
        before = rows[:first_row]
        outside[before[c["event_time"][before] >= traffic.start_ms + warm_up_ms]] = True
    top = np.zeros(int(card.max()) + 1)
    np.maximum.at(top, card[outside], s[outside])
    card_max = np.sort(top[np.bincount(card[outside], minlength=len(top)) > 0])
    grid = np.unique(np.quantile(card_max, np.linspace(0.98, 1.0, points)))
    grid = np.r_[grid, np.nextafter(grid[-1], np.inf)]
    fp = len(card_max) - np.searchsorted(card_max, grid, "left")
    prevented = np.zeros(len(grid))
    caught = np.zeros(len(grid))
    by_family: dict[str, npt.NDArray[np.float64]] = {}
    for inc in traffic.incidents:
        rows = per_card_rows[inc.card_id]
        t = c["event_time"][rows]
        rows = rows[t >= inc.first_ms - cooldown_ms]
        is_fraud = incident[rows] == inc.id
        if not is_fraud.any():
            continue
        start, end = np.flatnonzero(is_fraud)[[0, -1]]
        rows, is_fraud = rows[: end + 1], is_fraud[: end + 1]
        amount = np.where(is_fraud, c["amount"][rows], 0.0)
        after = amount.sum() - np.cumsum(amount)  # fraud euros after each row
        running = np.maximum.accumulate(s[rows])
        at = np.searchsorted(running, grid, "left")  # first row reaching each threshold
        ok = (at >= start) & (at <= end)
        saved = np.where(ok, after[np.minimum(at, end)], 0.0)
        prevented += saved
        by_family[inc.kind] = by_family.get(inc.kind, np.zeros(len(grid))) + saved
        caught += ok
    return {
        "threshold": grid.tolist(),
        "fp_cards": fp.astype(float).tolist(),
        "prevented": prevented.tolist(),
        "caught": caught.tolist(),
        **{f"prevented:{k}": v.tolist() for k, v in by_family.items()},
    }


def evaluate_seed(
    seed: int,
    make_detector: Callable[[], Any],
    *,
    traffic_args: Mapping[str, Any] | None = None,
    batch_size: int = 4_096,
    curve: bool = True,
) -> SeedResult:
    """One seed: its traffic, the detector's run over it, the judgement."""
    traffic = scenario_traffic(seed, **dict(SCENARIO_TRAFFIC if traffic_args is None else traffic_args))
    detector = make_detector()
    alerts, scores, seconds = run_detector(traffic, detector, batch_size=batch_size)
    incidents, false_cards, cold_cards = judge(traffic, alerts, seed)
    cooldown = int(getattr(detector, "cooldown", DAY_MS))
    return SeedResult(
        seed=seed,
        cards=traffic.cards,
        days=traffic.days,
        transactions=len(traffic),
        incidents=incidents,
        alerts=len(alerts),
        false_positive_cards=len(false_cards),
        cold_start_false_positive_cards=len(cold_cards),
        counted_days=traffic.days - WARM_UP_MS / DAY_MS,
        seconds=seconds,
        curve=threshold_curve(traffic, scores, cooldown_ms=cooldown) if curve else {},
    )


def summarize(results: Sequence[SeedResult]) -> dict[str, Any]:
    """The figures over every seed (see the module docstring), overall and per family."""
    incidents = [i for r in results for i in r.incidents]
    card_days = sum(r.cards * r.counted_days for r in results) / 10_000

    def figures(group: list[IncidentResult]) -> dict[str, Any]:
        caught = [i for i in group if i.index is not None]
        index = [math.inf if i.index is None else i.index for i in group]
        amount = sum(i.amount for i in group)
        median = float(np.median(index)) if group else math.inf
        return {
            "incidents": len(group),
            "caught": len(caught),
            "median_first_alert_index": None if math.isinf(median) else median,
            "median_first_alert_index_caught": float(np.median([i.index for i in caught]))
            if caught
            else None,
            "prevented_fraction": sum(i.prevented for i in group) / amount if amount else 0.0,
            "mean_prevented_share": float(np.mean([i.prevented / i.amount for i in group])) if group else 0.0,
            "fraud_euros": amount,
            "prevented_euros": sum(i.prevented for i in group),
            "median_alert_delay_s": (
                float(np.median([i.delay_ms for i in caught if i.delay_ms is not None])) / 1000
                if caught
                else None
            ),
        }

    latency = np.array([i.latency_ms for i in incidents if i.latency_ms is not None], np.float64)
    out: dict[str, Any] = {
        **figures(incidents),
        "fp_cards_per_10k_card_days": sum(r.false_positive_cards for r in results) / card_days
        if card_days
        else 0.0,
        "false_positive_cards": sum(r.false_positive_cards for r in results),
        "cold_start_fp_cards": sum(r.cold_start_false_positive_cards for r in results),
        "alerts": sum(r.alerts for r in results),
        "alert_latency_ms_p50": float(np.percentile(latency, 50)) if len(latency) else None,
        "alert_latency_ms_p99": float(np.percentile(latency, 99)) if len(latency) else None,
        "seeds": [r.seed for r in results],
        "cards_per_seed": results[0].cards if results else 0,
        "days_per_seed": results[0].days if results else 0.0,
        "transactions": sum(r.transactions for r in results),
        "detector_seconds": sum(r.seconds for r in results),
        "by_family": {k: figures([i for i in incidents if i.family == k]) for k in _families(incidents)},
        "by_history": {
            "with history": figures([i for i in incidents if i.history]),
            "first seen": figures([i for i in incidents if not i.history]),
        },
        "by_rule": {
            rule: sum(1 for i in incidents if i.rule == rule)
            for rule in sorted({str(i.rule) for i in incidents if i.rule})
        },
    }
    out["targets"] = {
        "median_first_alert_index": out["median_first_alert_index"] is not None
        and out["median_first_alert_index"] <= TARGETS["median_first_alert_index"],
        "prevented_fraction": out["prevented_fraction"] >= TARGETS["prevented_fraction"],
        "fp_cards_per_10k_card_days": out["fp_cards_per_10k_card_days"]
        <= TARGETS["fp_cards_per_10k_card_days"],
    }
    curves = [r.curve for r in results if r.curve]
    if curves and len(curves) == len(results):
        out["curve"] = _merge_curves(curves, results, card_days, sum(i.amount for i in incidents))
    return out


def _families(incidents: Sequence[IncidentResult]) -> list[str]:
    present = {i.family for i in incidents}
    return [k for k in FAMILIES if k in present] + sorted(present - set(FAMILIES))


def _merge_curves(
    curves: list[dict[str, list[float]]], results: Sequence[SeedResult], card_days: float, euros: float
) -> dict[str, list[float]]:
    """Sums the seeds' sweeps on a common grid of thresholds (each seed's counts at the
    nearest threshold of its own grid at or above); prevented fractions overall and per
    family (``prevented_fraction:<family>``)."""
    grid = np.unique(np.concatenate([np.asarray(c["threshold"]) for c in curves]))
    sums: dict[str, npt.NDArray[np.float64]] = {}
    for c in curves:
        t = np.asarray(c["threshold"])
        at = np.minimum(np.searchsorted(t, grid, "left"), len(t) - 1)
        for key, values in c.items():
            if key != "threshold":
                sums[key] = sums.get(key, np.zeros(len(grid))) + np.asarray(values)[at]
    family_euros: dict[str, float] = {}
    for i in (i for r in results for i in r.incidents):
        family_euros[i.family] = family_euros.get(i.family, 0.0) + i.amount
    out: dict[str, list[float]] = {
        "threshold": grid.tolist(),
        "fp_cards_per_10k_card_days": (sums["fp_cards"] / card_days).tolist(),
        "prevented_fraction": (sums["prevented"] / euros if euros else sums["prevented"]).tolist(),
    }
    for key, total in sums.items():
        family = key.partition("prevented:")[2]
        if family and family_euros.get(family):
            out[f"prevented_fraction:{family}"] = (total / family_euros[family]).tolist()
    return out


def evaluate_scenarios(
    seeds: Sequence[int] = HELD_OUT_SEEDS,
    make_detector: Callable[[], Any] | None = None,
    *,
    traffic_args: Mapping[str, Any] | None = None,
    batch_size: int = 4_096,
    progress: Callable[[SeedResult], None] | None = None,
) -> tuple[dict[str, Any], list[SeedResult]]:
    """Every seed, then :func:`summarize`. ``make_detector`` defaults to the detector
    ``fraudstream run`` runs with the default configuration."""
    make = make_detector or default_run_detector
    results = []
    for seed in seeds:
        r = evaluate_seed(seed, make, traffic_args=traffic_args, batch_size=batch_size)
        results.append(r)
        if progress is not None:
            progress(r)
    return summarize(results), results


def default_run_detector() -> Any:
    """The processor ``fraudstream run`` puts on a partition with the default configuration."""
    from fraudstream.config import Config
    from fraudstream.kafka.processors import detector_processor

    return detector_processor(Config())


# ---------------------------------------------------------------------------------------------
# Reporting


def _index(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def format_table(summary: Mapping[str, Any]) -> str:
    """The per-family table (and by card history), then the totals and the targets."""
    head = (
        f"{'family':<22} {'incidents':>9} {'caught':>7} {'1st alert':>9} {'prevented':>9} "
        f"{'fraud EUR':>11} {'alert after':>11}"
    )
    lines = [head, "-" * len(head)]

    def row(name: str, f: Mapping[str, Any]) -> str:
        delay = f["median_alert_delay_s"]
        after = "-" if delay is None else _duration(delay)
        return (
            f"{name:<22} {f['incidents']:>9} {f['caught']:>7} {_index(f['median_first_alert_index']):>9} "
            f"{f['prevented_fraction']:>9.1%} {f['fraud_euros']:>11,.0f} {after:>11}"
        )

    for k, f in summary["by_family"].items():
        lines.append(row(k, f))
    for k, f in summary["by_history"].items():
        lines.append(row(f"({k})", f))
    lines.append("-" * len(head))
    lines.append(row("all", summary))
    t = summary["targets"]
    mark = {True: "met", False: "NOT met"}
    lat = summary["alert_latency_ms_p50"]
    lines += [
        "1st alert: median index of the fraudulent transaction that raised the first alert "
        f"(missed = never); over caught incidents {_index(summary['median_first_alert_index_caught'])}",
        f"false-positive cards after the first day: {summary['false_positive_cards']} = "
        f"{summary['fp_cards_per_10k_card_days']:.2f} per 10,000 cards per day (cold start, first day "
        f"only: {summary['cold_start_fp_cards']}); "
        f"alerts {summary['alerts']}; alert latency p50 "
        + ("-" if lat is None else f"{lat:.2f} ms, p99 {summary['alert_latency_ms_p99']:.2f} ms"),
        f"targets: median 1st alert <= {TARGETS['median_first_alert_index']} "
        f"{mark[t['median_first_alert_index']]}, prevented >= {TARGETS['prevented_fraction']:.0%} "
        f"{mark[t['prevented_fraction']]}, false positives <= {TARGETS['fp_cards_per_10k_card_days']:g} "
        f"per 10k cards a day {mark[t['fp_cards_per_10k_card_days']]}",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3_600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


def json_line(summary: Mapping[str, Any]) -> str:
    """The one-line JSON object ``--json`` prints last (the curve left out)."""
    return json.dumps({k: v for k, v in summary.items() if k != "curve"})


def write_plot(path: Path, summary: Mapping[str, Any], title: str = "") -> bool:
    """Prevented fraud against the false-positive rate (the model's threshold sweep and the
    detector's operating point) as a PNG; False when matplotlib (the ``plot`` extra) is not
    installed."""
    try:  # by name: matplotlib is optional
        figure = importlib.import_module("matplotlib.figure")
        backend = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        return False
    fig = figure.Figure(figsize=(7.5, 4.8), layout="constrained")
    backend.FigureCanvasAgg(fig)
    ax = fig.subplots()
    curve = summary.get("curve")
    if curve:
        x = curve["fp_cards_per_10k_card_days"]
        ax.plot(
            x,
            curve["prevented_fraction"],
            color="tab:blue",
            lw=2.2,
            label="the model alone at other thresholds",
        )
        for k in summary["by_family"]:
            if f"prevented_fraction:{k}" in curve:
                ax.plot(x, curve[f"prevented_fraction:{k}"], lw=0.9, ls=":", label=f"  {k}")
    ax.scatter(
        [summary["fp_cards_per_10k_card_days"]], [summary["prevented_fraction"]], color="tab:red", zorder=3,
        label=f"the detector: {summary['prevented_fraction']:.0%} prevented, "
        f"{summary['fp_cards_per_10k_card_days']:.1f} false-positive cards",
    )  # fmt: skip
    ax.axvline(TARGETS["fp_cards_per_10k_card_days"], color="tab:orange", ls="--", lw=1, label="target: <= 5")
    ax.axhline(TARGETS["prevented_fraction"], color="tab:green", ls="--", lw=1, label="target: >= 70%")
    ax.set_xlim(0, max(15.0, 1.2 * summary["fp_cards_per_10k_card_days"]))
    ax.set_ylim(0, 1)
    ax.set_xlabel("false-positive cards per 10,000 cards per day")
    ax.set_ylabel("fraud euros prevented (after the first alert)")
    seeds = ", ".join(str(s) for s in summary["seeds"])
    ax.set_title(title or f"{summary['incidents']} random incidents, seeds {seeds}")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    return True


def to_json(results: Sequence[SeedResult]) -> list[dict[str, Any]]:
    """Per-incident records of every seed (for a file)."""
    return [asdict(i) for r in results for i in r.incidents]


__all__ = [
    "HELD_OUT_SEEDS",
    "TARGETS",
    "TUNING_SEEDS",
    "IncidentResult",
    "SeedResult",
    "evaluate_scenarios",
    "format_table",
    "json_line",
    "judge",
    "run_detector",
    "summarize",
    "threshold_curve",
    "write_plot",
]
