"""``fraudstream demo``: the whole fraud pipeline on a generated stream, in process, no Kafka.

1. A realistic stream from the project's seeded generator of labelled traffic
   (:func:`fraudstream.generator.labelled_transactions`, the one behind ``fraudstream
   produce``): cards with a home country, travel, a spending habit and favourite terminals;
   12 hours of event time; bounded disorder (every transaction arrives within ``disorder`` of
   its event time). Injected, with labels: the story's incident (one card, 23 small
   transactions across 4 countries in 6 hours), fast bursts (5-8 transactions in 3-4
   countries within 5 minutes), spend sprees (a few transactions at 8-20 times the card's
   usual amount within the hour) and one incident of each scenario family (card testing, a
   foreign terminal drained, a cloned card in 2-6 countries, online fraud; 8-40 transactions,
   some on cards first seen during the attack).
2. The detector ``fraudstream run`` runs: the model shipped in the package (or a JSON model
   file, ``--model``) beside the velocity rule, every transaction scored on arrival.
3. The run: :class:`~fraudstream.pipeline.Pipeline` (a source stamping arrival times, as fast
   as possible or paced at ``--rate``) -> :class:`~fraudstream.fraud.detector.FraudDetector`
   -> a collecting sink: the same processor the Kafka pipeline runs. A live progress line on
   a terminal, log lines otherwise.
4. The summary: throughput, alerts with reasons, per injected incident the fraudulent
   transaction that raised its first alert and the euros prevented (those of the fraudulent
   transactions after the alert), precision and recall; ``alerts.jsonl``, ``summary.json``
   and ``demo.png`` (with the ``plot`` extra) in the output directory.

When an incident is *visible* does not depend on the detector: at its
:data:`VISIBLE_AT`-th fraudulent transaction (in arrival order; the last one when it has
fewer). An alert at or before that transaction is on time. Precision is per alert (the share
of alerts raised on a card while its injected fraud was under way or after it), recall per
incident (the share of injected incidents alerted on before their last transaction).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from fraudstream import __version__, _core
from fraudstream.alerts import Alert
from fraudstream.errors import ConfigError
from fraudstream.fraud.detector import FraudDetector
from fraudstream.fraud.model import Model, default_model
from fraudstream.fraud.prevention import IncidentResult, judge
from fraudstream.generator import DIURNAL, FAMILIES, LabelledTraffic, labelled_transactions
from fraudstream.kafka.schema import COUNTRIES
from fraudstream.pipeline import CollectSink, IteratorSource, Pipeline
from fraudstream.processor import ProcessorOutput

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
PLOT_HINT = "pip install 'fraudstream[plot]'"

Columns = dict[str, np.ndarray[Any, Any]]


# ---------------------------------------------------------------------------------------------
# The stream


VISIBLE_AT = 5
"""An incident is visible at its 5th fraudulent transaction: a definition that does not
depend on any detector (the issue's; the story's shape is plain by then: 5 transactions in
several countries within 2 hours)."""


@dataclass
class Scenario:
    """One injected incident."""

    kind: str
    """``story incident``, ``fast burst``, ``spend spree`` or a scenario family's name."""
    card: int
    txn_ids: npt.NDArray[np.int64]
    times: npt.NDArray[np.int64]
    """Event times of its transactions, in arrival order (``txn_ids`` alike)."""
    amounts: npt.NDArray[np.float64]
    visible_at: int
    """Event time of its :data:`VISIBLE_AT`-th transaction (the last one when fewer)."""
    visible_index: int
    """1-based position of that transaction in the incident."""
    history: bool = True
    """False: the card is first seen during the attack."""

    @property
    def pattern(self) -> str:
        """When it became visible, in words."""
        return f"its {_ordinal(self.visible_index)} fraudulent transaction"


@dataclass
class DemoStream:
    """The generated stream: detector input columns in arrival order, labels, scenarios."""

    columns: Columns
    """``txn_id``, ``card_id``, ``terminal_id``, ``amount``, ``country`` (packed ISO alpha-2),
    ``event_time``, in arrival order."""
    fraud: npt.NDArray[np.int8]
    scenario: npt.NDArray[np.int32]
    """Index into ``scenarios`` per row, -1 for background."""
    scenarios: list[Scenario]
    cards: int
    start_ms: int
    end_ms: int
    disorder_ms: int
    traffic: LabelledTraffic | None = None
    """The generator's output the stream was taken from (labels and incidents)."""
    history: Columns | None = None
    """The transactions before ``start_ms`` (no fraud): what warms the detector's state, as a
    restored state would be warm."""

    def __len__(self) -> int:
        return len(self.columns["txn_id"])


LIVE_START_MS = 1_700_028_000_000
"""2023-11-15T06:00:00Z: the demo's 12 hours are a day's busy ones."""

DEMO_KINDS = {
    "story": "story incident",
    "burst": "fast burst",
    "spree": "spend spree",
    "card_testing": "card testing",
    "drain": "terminal drained",
    "multi_country": "cloned card",
    "online": "online fraud",
}
"""The demo's names of the generator's incident kinds."""


def generate_stream(
    events: int,
    *,
    seed: int = 7,
    hours: float = 12.0,
    history_hours: float = 72.0,
    disorder_ms: int = 5_000,
    bursts: int | None = None,
    sprees: int | None = None,
    families: int | None = None,
) -> DemoStream:
    """A seeded transaction stream of ``events`` rows with injected, labelled fraud: the
    project's labelled traffic (:func:`fraudstream.generator.labelled_transactions`: ``events /
    2`` cards with homes, travel and heavy-tailed activity over ``hours`` of event time) with
    the story's incident (23 small transactions in FR, DE, ES, IT within 6 hours), ``bursts``
    fast bursts, ``sprees`` spend sprees and ``families`` incidents of each scenario family
    (:data:`fraudstream.generator.FAMILIES`; half of them on cards first seen during the
    attack), each on its own card, after ``history_hours`` of the same traffic without fraud
    (``history``). Every row arrives within ``disorder_ms`` of its event time; ``txn_id``
    numbers rows in arrival order, the history's first."""
    if events < 1_000:
        raise ValueError(f"events must be >= 1000 (the story's incident spans 6 hours), got {events}")
    each = max(1, events // 100_000) if families is None else families
    # the live part starts at 06:00 UTC; the history before it gets its share of the events:
    # first by the hours' weights, then (the generator's sessions pull transactions earlier)
    # once more by the share the first draw gave the live part
    start_ms = LIVE_START_MS - int(history_hours * HOUR_MS)
    live_ms = LIVE_START_MS
    hour = (start_ms // HOUR_MS + np.arange(math.ceil(hours + history_hours))) % 24
    weight = DIURNAL[hour]
    total = round(events * weight.sum() / weight[int(history_hours) :].sum())

    def draw(total: int) -> LabelledTraffic:
        return labelled_transactions(
            total,
            cards=max(500, events // 2),
            days=(hours + history_hours) / 24,
            warm_up=history_hours / 24,
            start_ms=start_ms,
            story=True,
            incidents={
                "burst": max(1, events // 40_000) if bursts is None else bursts,
                "spree": max(1, events // 50_000) if sprees is None else sprees,
                **{k: each for k in FAMILIES},
            },
            first_seen=0.5,
            disorder_ms=disorder_ms,
            seed=seed,
        )

    traffic = draw(total)
    live = int((traffic.columns["event_time"] >= live_ms).sum())
    if history_hours > 0 and abs(live - events) > 0.02 * events:
        traffic = draw(round(total * events / max(live, 1)))
    c = traffic.columns
    every = {k: c[k] for k in ("txn_id", "card_id", "terminal_id", "amount", "country", "event_time")}
    cut = int(np.argmax(c["event_time"] >= live_ms))  # in arrival order
    return DemoStream(
        columns={k: v[cut:] for k, v in every.items()},
        fraud=c["fraud"][cut:],
        scenario=c["incident"][cut:],
        scenarios=[
            _scenario(DEMO_KINDS[i.kind], i.id, every, c["incident"], i.history) for i in traffic.incidents
        ],
        cards=traffic.cards,
        start_ms=live_ms,
        end_ms=int(c["event_time"].max()),
        disorder_ms=disorder_ms,
        traffic=traffic,
        history={k: v[:cut] for k, v in every.items()},
    )


def _scenario(
    kind: str, index: int, columns: Columns, scenario: npt.NDArray[np.int32], history: bool
) -> Scenario:
    rows = np.flatnonzero(scenario == index)  # arrival order
    k = min(VISIBLE_AT, len(rows))
    times = columns["event_time"][rows]
    return Scenario(
        kind,
        int(columns["card_id"][rows[0]]),
        columns["txn_id"][rows],
        times,
        columns["amount"][rows],
        int(times[k - 1]),
        k,
        history,
    )


def default_detector(model: Model | None = None) -> FraudDetector:
    """The detector ``fraudstream run`` runs (the shipped model, or ``model``, beside the
    default rules), with the demo's synthetic event times: idle ticks move no watermark."""
    return FraudDetector(model=model or default_model(), wall_clock_time=False)


# ---------------------------------------------------------------------------------------------
# The run


class DemoSource(IteratorSource):
    """Slices the stream into batches in arrival order and stamps each with its arrival time
    (``arrival_ms``, wall clock); with ``rate`` (events/s) a batch is released only when its
    time has come."""

    def __init__(self, columns: Columns, batch_size: int, rate: float | None = None) -> None:
        self.columns, self.batch_size, self.rate = columns, batch_size, rate
        self.total = len(columns["txn_id"])
        self.read_events = 0
        self.newest_event_time: int | None = None
        super().__init__(self._batches())

    def _batches(self) -> Iterator[Columns]:
        began = time.perf_counter()
        for lo in range(0, self.total, self.batch_size):
            if self.rate:
                wait = began + lo / self.rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            batch = {k: v[lo : lo + self.batch_size] for k, v in self.columns.items()}
            n = len(batch["txn_id"])
            batch["arrival_ms"] = np.full(n, time.time_ns() / 1e6)
            top = int(batch["event_time"].max())
            self.newest_event_time = (
                top if self.newest_event_time is None else max(self.newest_event_time, top)
            )
            self.read_events += n
            yield batch


class TimedDetector:
    """The detector as the pipeline's stage, timing each call: per transaction, the wall time
    from its arrival (``arrival_ms``) to the end of the call that scored it, and the call's
    own time."""

    def __init__(self, detector: FraudDetector) -> None:
        self.detector = detector
        self._latency: list[npt.NDArray[np.float64]] = []
        self._processing: list[npt.NDArray[np.float64]] = []

    def process(self, batch: Columns) -> ProcessorOutput:
        began = time.time_ns() / 1e6
        out = self.detector.process(batch)
        end = time.time_ns() / 1e6
        arrival = np.asarray(batch["arrival_ms"], np.float64)
        self._latency.append(end - arrival)
        self._processing.append(np.full(len(arrival), end - began))
        return out

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        return self.detector.advance(wall_clock_ms)

    def flush(self) -> ProcessorOutput:
        return self.detector.flush()

    def metrics(self) -> dict[str, Any]:
        return self.detector.metrics()

    def latencies(self) -> npt.NDArray[np.float64]:
        """Arrival -> scored, ms, per transaction."""
        return np.concatenate(self._latency) if self._latency else np.empty(0)

    def processing(self) -> npt.NDArray[np.float64]:
        """The detector's time on the transaction's batch, ms, per transaction."""
        return np.concatenate(self._processing) if self._processing else np.empty(0)


class Progress:
    """A live progress line on a terminal (events/s, alerts, watermark lag), log lines
    otherwise; reads only thread-safe counters."""

    def __init__(self, detector: FraudDetector, source: DemoSource, out: TextIO, *, tty: bool) -> None:
        self.detector, self.source, self.out, self.tty = detector, source, out, tty
        self.interval = 0.2 if tty else 2.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fraudstream-demo-progress", daemon=True)
        self._began = time.perf_counter()
        self._width = 0
        m = detector.metrics()
        self._base = (m["events"], m["alerts"])
        """Counts of the warm-up, before the run."""

    def start(self) -> None:
        self._began = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.line()

    def line(self) -> str:
        m = self.detector.metrics()
        events, alerts = m["events"] - self._base[0], m["alerts"] - self._base[1]
        elapsed = max(time.perf_counter() - self._began, 1e-9)
        done = events / max(1, self.source.total)
        newest, wm = self.source.newest_event_time, m["watermark"]
        lag = "-" if newest is None or wm is None else f"{(newest - wm) / 1000:.1f} s"
        text = (
            f"{events:>11,} events  {events / elapsed:>9,.0f} events/s  alerts {alerts:>3}  "
            f"watermark lag {lag} (event time)"
        )
        if self.tty:
            bar = "#" * int(done * 24)
            text = f"  [{bar:<24}] {done:4.0%} {text}"
            self._width = max(self._width, len(text))
            self.out.write("\r" + text.ljust(self._width))
            self.out.flush()
        else:
            log.info("demo: %s", text.strip())
        return text


@dataclass
class DemoOptions:
    """Options of ``fraudstream demo``."""

    events: int = 200_000
    seed: int = 7
    rate: float | None = None
    """Events per second of wall time; None: as fast as possible."""
    out: Path = Path("fraudstream-demo-out")
    progress: bool = True
    model: Path | None = None
    """A JSON model file; None: the model shipped in the package."""
    batch_size: int | None = None


@dataclass
class DemoResult:
    """What a run produced."""

    summary: dict[str, Any]
    alerts: list[Alert]
    stream: DemoStream
    files: list[Path] = field(default_factory=list)


def run_demo(options: DemoOptions, out: TextIO | None = None) -> DemoResult:
    """Generates the stream, gets a model, runs the pipeline, prints the summary and writes
    the output files."""
    out = out or sys.stdout
    say = _printer(out)
    if options.events < 1_000:
        raise ValueError(f"--events must be at least 1000, got {options.events}")
    if options.rate is not None and options.rate <= 0:
        raise ValueError(f"--rate must be > 0, got {options.rate}")
    pace = "as fast as possible" if options.rate is None else f"paced at {options.rate:,.0f} events/s"
    say(f"fraudstream {__version__} demo: about {options.events:,} transactions, seed {options.seed}, {pace}")

    began = time.perf_counter()
    stream = generate_stream(options.events, seed=options.seed)
    kinds = [s.kind for s in stream.scenarios]
    hours = (stream.end_ms - stream.start_ms) / HOUR_MS
    say(
        f"  stream: {len(stream):,} transactions on {stream.cards:,} cards in {len(COUNTRIES)} countries, "
        f"{hours:.1f} h of event time, disorder <= {stream.disorder_ms / 1000:.0f} s "
        f"({time.perf_counter() - began:.2f} s)"
    )
    others = ", ".join(_count(kinds.count(k), k) for k in dict.fromkeys(kinds[1:]))
    euros = float(sum(s.amounts.sum() for s in stream.scenarios))
    say(
        f"  injected: the story's incident (23 small transactions, 4 countries, 6 h), {others} "
        f"= {int(stream.fraud.sum())} fraudulent transactions worth EUR {euros:,.0f}; an incident is "
        f"visible at its {_ordinal(VISIBLE_AT)} fraudulent transaction"
    )
    model, model_info = _model(options, say)
    detector = default_detector(model)
    warmed = _warm_up(detector, stream, say)
    rate = options.rate
    # flat out, the input queue stays full: a transaction waits behind up to 4 batches, so small
    # batches keep that wait short (128 rows: about the throughput of 1,024 at an eighth of the
    # latency); paced: a batch every 10 ms
    batch_size = options.batch_size or (128 if rate is None else max(1, min(4_096, int(rate / 100))))
    source = DemoSource(stream.columns, batch_size, rate)
    sink = CollectSink()
    timed = TimedDetector(detector)
    pipeline = Pipeline(source, timed, sink, capacity=4)
    tty = bool(getattr(out, "isatty", lambda: False)())
    progress = Progress(detector, source, out, tty=tty) if options.progress else None
    if progress is not None:
        progress.start()
    began = time.perf_counter()
    try:
        pipeline.run()
    finally:
        if progress is not None:
            progress.stop()
    wall = time.perf_counter() - began

    alerts = [a for o in sink.items if o is not None for a in o.alerts]
    latencies, processing = timed.latencies(), timed.processing()
    summary = _summarize(options, stream, alerts, latencies, detector, wall, model_info, warmed)
    summary["processing_ms"] = _percentiles(processing)
    _report(summary, alerts, stream, say)
    files = _write(options.out, summary, alerts, stream, latencies, say)
    return DemoResult(summary, alerts, stream, files)


def _printer(out: TextIO) -> Any:
    def say(line: str = "") -> None:
        out.write(line + "\n")
        out.flush()

    return say


def _model(options: DemoOptions, say: Any) -> tuple[Model, dict[str, Any]]:
    if options.model is not None:
        try:
            model = Model.load(options.model)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"--model {options.model}: {exc}") from None
        say(
            f"  model: {options.model} ({model.kind}, {len(model.inputs)} inputs), "
            f"alert at score >= {model.threshold:.2f}"
        )
        return model, {"file": str(options.model), "kind": model.kind, "threshold": model.threshold}
    model = default_model()
    trees = len(model.params.get("tree_sizes", ()))
    what = f"a random forest of {trees} trees" if trees else model.kind.replace("_", " ")
    say(
        f"  model: the one fraudstream run uses ({what} on {len(model.inputs)} streaming features, "
        f"trained on generated traffic of other seeds); alert at score >= {model.threshold:.2f}, "
        "beside the velocity rule"
    )
    return model, {
        "kind": model.kind,
        "inputs": model.feature_names,
        "threshold": model.threshold,
        "shipped": True,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation and summary


def _percentiles(values: npt.NDArray[np.float64]) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p99": None}
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def match_alerts(stream: DemoStream, alerts: list[Alert]) -> list[int | None]:
    """For each alert, the injected scenario it caught (None: a false alarm): an alert on a
    scenario's card at or after the scenario's first transaction."""
    by_card: dict[int, list[int]] = {}
    for i, s in enumerate(stream.scenarios):
        by_card.setdefault(s.card, []).append(i)
    matched: list[int | None] = []
    for a in alerts:
        hits = [i for i in by_card.get(a.card_id, []) if a.event_time >= int(stream.scenarios[i].times[0])]
        matched.append(max(hits, key=lambda i: int(stream.scenarios[i].times[0])) if hits else None)
    return matched


def _summarize(
    options: DemoOptions,
    stream: DemoStream,
    alerts: list[Alert],
    latencies: npt.NDArray[np.float64],
    detector: FraudDetector,
    wall: float,
    model_info: dict[str, Any],
    warmed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    matched = match_alerts(stream, alerts)
    judged = _judge(stream, alerts)
    scenarios: list[dict[str, Any]] = []
    for s, r in zip(stream.scenarios, judged, strict=True):
        row: dict[str, Any] = {
            "kind": s.kind,
            "card": s.card,
            "history": s.history,
            "transactions": len(s.txn_ids),
            "fraud_euros": float(s.amounts.sum()),
            "first_at": int(s.times[0]),
            "visible_at": s.visible_at,
            "visible_index": s.visible_index,
            "pattern": s.pattern,
            "detected": r.index is not None,
            "first_alert_index": r.index,
            "prevented_euros": r.prevented,
        }
        if r.index is not None:  # the alert judge() took: the card's first from the incident's start
            first = min(
                (a for a in alerts if a.card_id == s.card and a.trigger_txn_id >= int(s.txn_ids[0])),
                key=lambda a: a.trigger_txn_id,
            )
            delay = first.event_time - s.visible_at
            latency = first.latency_ms or 0.0
            row.update(
                on_time=r.index <= s.visible_index,
                rule=first.rule,
                reason=first.reason,
                alert_txn_id=first.trigger_txn_id,
                alert_at=first.event_time,
                event_time_delay_ms=delay,
                latency_ms=latency,
                detection_delay_ms=delay + latency,
                transactions_after_alert=int((s.txn_ids > first.trigger_txn_id).sum()),
            )
        scenarios.append(row)
    incident = scenarios[0]
    true_alerts = sum(m is not None for m in matched)
    metrics = _since(detector.metrics(), warmed or {})
    alert_latency = np.array([a.latency_ms or 0.0 for a in alerts], np.float64)
    index = [math.inf if r.index is None else r.index for r in judged]
    median = float(np.median(index))
    euros = sum(r.amount for r in judged)
    return {
        "events": len(stream),
        "events_per_s": len(stream) / wall if wall > 0 else 0.0,
        "alerts": len(alerts),
        "incident_detected": bool(incident["detected"]),
        "incident_detection_delay_ms": incident.get("detection_delay_ms"),
        "incident_first_alert_index": incident["first_alert_index"],
        "latency_ms": _percentiles(latencies),
        "precision": true_alerts / len(alerts) if alerts else 0.0,
        "recall": sum(s["detected"] for s in scenarios) / len(scenarios),
        "on_time": sum(bool(s.get("on_time")) for s in scenarios),
        "median_first_alert_index": None if math.isinf(median) else median,
        "prevented_euros": sum(r.prevented for r in judged),
        "fraud_euros": euros,
        "prevented_fraction": sum(r.prevented for r in judged) / euros if euros else 0.0,
        "wall_seconds": wall,
        "seed": options.seed,
        "rate": options.rate,
        "event_time_hours": (stream.end_ms - stream.start_ms) / HOUR_MS,
        "fraudulent_transactions": int(stream.fraud.sum()),
        "alerts_by_rule": metrics["alerts_by_rule"],
        "suppressed": metrics["suppressed"],
        "late": metrics["late"],
        "clamped": metrics["clamped"],
        "true_alerts": true_alerts,
        "alert_latency_ms": {
            **_percentiles(alert_latency),
            "max": float(alert_latency.max()) if len(alerts) else None,
        },
        "scenarios": scenarios,
        "model": model_info,
        "definitions": {
            "visible": f"an incident is visible at its {_ordinal(VISIBLE_AT)} fraudulent transaction in "
            "arrival order (the last when it has fewer), whatever the detector",
            "first_alert_index": "1-based index of the incident's fraudulent transaction that raised its "
            "first alert (an alert triggered by the card's own genuine transaction counts at the "
            "fraudulent ones before it); None: no alert by its last fraudulent transaction",
            "prevented_euros": "amount of the incident's fraudulent transactions that arrived after the "
            "alerting one",
            "latency_ms": "wall clock, per transaction: arrival at the pipeline -> its batch processed",
            "processing_ms": "wall clock, per transaction: the detector's time on its batch",
            "incident_detection_delay_ms": "alert event time - event time at which the story's "
            "incident became visible (negative: before), plus the alert's wall-clock latency from the "
            "trigger's arrival",
            "precision": "alerts on a card with injected fraud under way or past / all alerts",
            "recall": "injected incidents alerted by their last fraudulent transaction / injected incidents",
        },
    }


def _warm_up(detector: FraudDetector, stream: DemoStream, say: Any) -> dict[str, Any]:
    """Runs the stream's history through the detector, outputs discarded (a restored state
    would hold it); returns the detector's metrics after it."""
    history = stream.history or {}
    n = len(history.get("txn_id", ()))
    began = time.perf_counter()
    for lo in range(0, n, 65_536):
        detector.process({k: v[lo : lo + 65_536] for k, v in history.items()})
    if n:
        hours = (stream.start_ms - int(history["event_time"].min())) / HOUR_MS
        say(
            f"  warm-up: the cards' previous {hours:.0f} h ({n:,} transactions, no fraud) through the "
            f"detector first, as its restored state would hold them ({time.perf_counter() - began:.2f} s; "
            f"its {detector.metrics()['alerts']} alerts are not counted)"
        )
    return detector.metrics()


def _since(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The detector's counters since ``before`` (the warm-up's)."""
    out = dict(now)
    for key in ("suppressed", "late", "clamped", "alerts", "events"):
        out[key] = now[key] - before.get(key, 0)
    rules = before.get("alerts_by_rule", {})
    out["alerts_by_rule"] = {
        k: v - rules.get(k, 0) for k, v in now["alerts_by_rule"].items() if v > rules.get(k, 0)
    }
    return out


def _judge(stream: DemoStream, alerts: list[Alert]) -> list[IncidentResult]:
    """Each incident's first alert, its index and the euros prevented
    (:func:`fraudstream.fraud.prevention.judge`)."""
    assert stream.traffic is not None
    results, _, _ = judge(stream.traffic, alerts)
    return results


def _clock(ms: int, start: int) -> str:
    """Event time as ``+h:mm:ss`` since the stream's start."""
    s = max(0, ms - start) // 1000
    return f"+{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _delay_words(ms: float) -> str:
    sign = "-" if ms < 0 else "+"
    ms = abs(ms)
    if ms < 1_000:
        return f"{sign}{ms:.0f} ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.1f} s"
    return f"{sign}{ms / 60_000:.1f} min"


def _report(summary: dict[str, Any], alerts: list[Alert], stream: DemoStream, say: Any) -> None:
    start = stream.start_ms
    wall = max(summary["wall_seconds"], 1e-9)
    say()
    hours = summary["event_time_hours"]
    say(
        f"done: {summary['events']:,} transactions in {wall:.2f} s, {summary['events_per_s']:,.0f} events/s "
        f"({hours:.1f} h of event time at {hours * 3600 / wall:,.0f}x real time)"
    )
    by_rule = ", ".join(
        f"{k} {v}" for k, v in sorted(summary["alerts_by_rule"].items(), key=lambda kv: -kv[1])
    )
    say(
        f"alerts: {summary['alerts']} ({by_rule or 'none'}); one per card per incident "
        f"({summary['suppressed']} repeats held back by the 24 h cool-down)"
    )
    matched = match_alerts(stream, alerts)
    caught = [i for i, m in enumerate(matched) if m is not None][:6]
    false = [i for i, m in enumerate(matched) if m is None][:2]
    for i in sorted(caught + false, key=lambda i: alerts[i].event_time):
        a, m = alerts[i], matched[i]
        tag = stream.scenarios[m].kind if m is not None else "false alarm"
        say(f"  {_clock(a.event_time, start)}  card {a.card_id:<8} [{tag}] {_reasons(a)}")
    if len(alerts) > len(caught) + len(false):
        say(f"  ... {len(alerts) - len(caught) - len(false)} more in alerts.jsonl")
    say(
        f"per injected incident: the fraudulent transaction that raised its first alert (visible at the "
        f"{_ordinal(VISIBLE_AT)}) and the euros of those after it, prevented:"
    )
    for s in summary["scenarios"]:
        card = f"card {s['card']}" + ("" if s["history"] else " (new)")
        head = (
            f"  {s['kind']:<16} {card:<18} {s['transactions']:>3} transactions EUR {s['fraud_euros']:>9,.2f}"
        )
        if not s["detected"]:
            say(f"{head}  MISSED")
            continue
        when = "on time" if s["on_time"] else "late"
        say(
            f"{head}  alert at the {_ordinal(s['first_alert_index']):>4} ({when}, {s['rule']}, "
            f"{s['latency_ms']:.1f} ms)  prevented EUR {s['prevented_euros']:>9,.2f} "
            f"({s['prevented_euros'] / max(s['fraud_euros'], 1e-9):.0%})"
        )
    inc = summary["scenarios"][0]
    if inc["detected"]:
        after, total = inc["transactions_after_alert"], inc["transactions"]
        say(
            f"the story's incident: alerted at its {_ordinal(inc['first_alert_index'])} transaction "
            f"({_clock(inc['alert_at'], start)}, by {inc['rule']}, {inc['latency_ms']:.1f} ms after it "
            f"arrived; visible by definition at its {_ordinal(inc['visible_index'])}); {after} of its "
            f"{total} transactions, EUR {inc['prevented_euros']:,.2f} of {inc['fraud_euros']:,.2f}, came "
            "after the alert (the batch job flagged it 47 h after the last one)"
        )
    else:
        say("the story's incident was NOT detected")
    median = summary["median_first_alert_index"]
    say(
        f"prevented: EUR {summary['prevented_euros']:,.2f} of {summary['fraud_euros']:,.2f} "
        f"({summary['prevented_fraction']:.0%}); first alert at the {_ordinal(median) if median else '-'} "
        f"fraudulent transaction (median), {summary['on_time']} of {len(summary['scenarios'])} incidents "
        "alerted by the time they were visible"
    )
    lat, proc, al = summary["latency_ms"], summary.get("processing_ms", {}), summary["alert_latency_ms"]
    if lat["p50"] is not None:
        p50, p99 = proc.get("p50") or 0.0, proc.get("p99") or 0.0
        say(
            f"latency, arrival -> processed: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms per "
            f"transaction (in the detector: p50 {p50:.1f} ms, p99 {p99:.1f} ms; the rest is waiting "
            "behind earlier batches)"
        )
    if al["p50"] is not None:
        say(f"alert latency, trigger arrival -> alert: p50 {al['p50']:.1f} ms, max {al['max']:.1f} ms")
    detected, scenarios = sum(s["detected"] for s in summary["scenarios"]), len(summary["scenarios"])
    say(
        f"precision {summary['precision']:.2f} ({summary['true_alerts']} of {summary['alerts']} alerts on "
        f"injected fraud), recall {summary['recall']:.2f} ({detected} of {scenarios} incidents)"
    )


def _reasons(a: Alert) -> str:
    """An alert's reasons on one line: a rule's sentence; the model's score and top inputs."""
    if a.rule != "model":
        return a.reason
    head, *words = a.reasons
    return f"model: {head}: {', '.join(words)}" if words else f"model: {head}"


def _trigger(stream: DemoStream, txn_id: int) -> dict[str, Any]:
    """The triggering transaction's input values (for alerts.jsonl)."""
    row = int(np.flatnonzero(stream.columns["txn_id"] == txn_id)[0])
    c = stream.columns
    return {
        "terminal": int(c["terminal_id"][row]),
        "amount": float(c["amount"][row]),
        "country": int(c["country"][row]),
        "country_code": _core.unpack_code(int(c["country"][row])),
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ordinal(n: float) -> str:
    if n != int(n):
        return f"{n:g}th"
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---------------------------------------------------------------------------------------------
# Files


def _write(
    directory: Path,
    summary: dict[str, Any],
    alerts: list[Alert],
    stream: DemoStream,
    latencies: npt.NDArray[np.float64],
    say: Any,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    matched = match_alerts(stream, alerts)
    alerts_path = directory / "alerts.jsonl"
    with alerts_path.open("w") as f:
        for a, m in zip(alerts, matched, strict=True):
            doc = a.to_dict()
            doc["reason"] = a.reason
            doc["trigger"] = _trigger(stream, a.trigger_txn_id)
            doc["scenario"] = None if m is None else stream.scenarios[m].kind
            f.write(json.dumps(doc) + "\n")
    summary_path = directory / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    files = [alerts_path, summary_path]
    png = directory / "demo.png"
    if write_plot(png, summary, alerts, stream, latencies):
        files.append(png)
        say(f"wrote {alerts_path}, {summary_path.name}, {png.name}")
    else:
        say(f"wrote {alerts_path}, {summary_path.name}; for the picture (demo.png): {PLOT_HINT}")
    return files


def write_plot(
    path: Path,
    summary: dict[str, Any],
    alerts: list[Alert],
    stream: DemoStream,
    latencies: npt.NDArray[np.float64],
) -> bool:
    """The incident card's timeline and the latency histogram as a PNG; False when matplotlib
    (the ``plot`` extra) is not installed."""
    try:  # imported by name: matplotlib is optional, and typed only where it is installed
        figure = importlib.import_module("matplotlib.figure")
        backend = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        return False
    fig = figure.Figure(figsize=(12, 4.6), layout="constrained")
    backend.FigureCanvasAgg(fig)
    timeline, histogram = fig.subplots(1, 2, width_ratios=[3, 2])

    inc = stream.scenarios[0]
    info = summary["scenarios"][0]
    rows = np.flatnonzero(stream.columns["card_id"] == inc.card)
    hours = (stream.columns["event_time"][rows] - stream.start_ms) / HOUR_MS
    names = [_core.unpack_code(int(c)) for c in stream.columns["country"][rows]]
    places = sorted(set(names))
    y = np.array([places.index(n) for n in names])
    visible_h = (inc.visible_at - stream.start_ms) / HOUR_MS
    if info["detected"]:
        alert_h = (info["alert_at"] - stream.start_ms) / HOUR_MS
        label = (
            f"alert at its {_ordinal(info['first_alert_index'])} transaction: {info['rule']}, "
            f"{info['latency_ms']:.1f} ms after it arrived"
        )
        timeline.axvline(alert_h, color="tab:red", lw=2, label=label)
    else:
        alert_h = math.inf
    timeline.axvline(visible_h, color="tab:orange", ls="--", label=f"visible: {inc.pattern}")
    before = hours <= alert_h
    timeline.scatter(hours[before], y[before], s=36, color="tab:blue", label="before the alert", zorder=3)
    timeline.scatter(hours[~before], y[~before], s=36, color="tab:gray", label="after the alert", zorder=3)
    timeline.set_yticks(range(len(places)), places)
    timeline.set_ylim(-0.6, len(places) - 0.4)
    timeline.set_xlabel("event time since the stream start (h)")
    timeline.set_title(f"the story's incident: card {inc.card}, {len(rows)} small transactions")
    timeline.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=8, frameon=False)

    if len(latencies):
        bins = np.linspace(0.0, float(latencies.max()) * 1.05 + 1e-3, 50)
        histogram.hist(latencies, bins=bins, color="tab:blue", alpha=0.8)
        for i, a in enumerate(alerts):
            histogram.axvline(
                a.latency_ms or 0.0, color="tab:red", alpha=0.6, lw=1, label="alerts" if i == 0 else None
            )
        lat = summary["latency_ms"]
        histogram.set_title(f"arrival -> processed: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms")
        if alerts:
            histogram.legend(fontsize=8)
    histogram.set_xlabel("wall-clock latency (ms)")
    histogram.set_ylabel("transactions")
    fig.savefig(path, dpi=110)
    return True
