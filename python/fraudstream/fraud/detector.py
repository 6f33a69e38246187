"""The fraud detector: streaming features, rules and model scoring as one pipeline processor.

:class:`FraudDetector` is a :class:`~fraudstream.pipeline.Processor` (``process(batch)``,
``flush()``, ``on_idle()``, ``metrics()``): the in-process demo runs it in
:class:`~fraudstream.pipeline.Pipeline`, and the Kafka loop can call it on decoded columns.

Input columns (names set by :class:`DetectorColumns`; the defaults are the Kafka decoder's,
:func:`fraudstream.kafka.schema.decode_batch`; other columns are ignored):

================  =========  ==========================================================
``txn_id``        int64      transaction id, unique (orders transactions with equal times)
``card_id``       int64      the card: key of the rules and of the card features
``terminal_id``   int64      terminal / merchant (terminal features, new-terminal flag)
``amount``        float64    finite
``country``       int64      any integer code (the decoder's packed ISO alpha-2)
``event_time``    int64      epoch milliseconds, UTC; bounded disorder (``out_of_orderness``)
``arrival_ms``    float64    optional: wall-clock epoch ms at which the transaction arrived
                             (Kafka: the message timestamp); latency is measured from it, or
                             from the start of ``process`` when absent
================  =========  ==========================================================

Each batch takes two paths, then one cool-down:

1. **Rules, in arrival order.** Rules reading only the input columns (``card``, ``ts``,
   ``amount``, ``country``, ``terminal``; :func:`~fraudstream.fraud.rules.default_rules`) run
   on the batch as it arrives, with the watermark's bounded disorder; early firing raises an
   alert at the very transaction that makes the pattern visible.
2. **Features and model, in event-time order.** Streaming features need (time, id) order, so
   transactions wait in a reorder buffer until the watermark (``max event time -
   out_of_orderness``) passes them, then go through
   :class:`~fraudstream.fraud.features.StreamingFeatures`, the :class:`~fraudstream.fraud.model.Model`
   (an alert when the score reaches the model's threshold, with the inputs that pushed the
   score up as its reason) and the rules that read a feature column (such as the
   ``spend_vs_habit_*`` rules over ``CUSTOMER_ID_AMOUNT_RATIO``). A transaction older than one
   already released (beyond the disorder bound) cannot be featurized: it is counted as
   ``late`` and skipped by this path (the rules still saw it).
3. **One alert per card per incident.** An alert is kept unless the card had a kept alert
   (from any rule or the model) within ``cooldown`` of event time; the rest are counted as
   ``suppressed``.

Every alert names its triggering transaction, its event time and the wall-clock latency from
that transaction's arrival to the alert.

The reorder buffer holds about ``out_of_orderness`` of traffic; the feature and rule state is
bounded by their windows (see ``docs/fraud.md``). Snapshots of the whole detector (for a
Kafka changelog) are not implemented yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream._columns import get_column, int_column, value_column
from fraudstream.errors import ConfigError, InvalidBatchError
from fraudstream.fraud.features import StreamingFeatures, TransactionColumns
from fraudstream.fraud.model import Model
from fraudstream.fraud.rules import Alert, Rule, RuleSet, default_rules
from fraudstream.pipeline import IdleWatermark
from fraudstream.windows import Duration, to_millis

Columns = dict[str, np.ndarray[Any, Any]]

INPUT_NAMES = ("txn_id", "card", "ts", "terminal", "amount", "country")
"""The names rules see for the input columns, whatever the batch calls them."""

FEATURE_COLUMNS = TransactionColumns(
    id="txn_id",
    time="ts",
    customer="card",
    terminal="terminal",
    amount="amount",
    fraud=None,
    country="country",
)
"""How the detector's features read its columns (the card is the features' customer); train a
model on features computed with these to score it here."""


@dataclass(frozen=True)
class DetectorColumns:
    """Names of the input columns in the batches (the Kafka decoder's by default)."""

    txn_id: str = "txn_id"
    card: str = "card_id"
    terminal: str = "terminal_id"
    amount: str = "amount"
    country: str = "country"
    time: str = "event_time"
    arrival: str = "arrival_ms"


@dataclass(frozen=True)
class FraudAlert:
    """An alert raised by :class:`FraudDetector`.

    ``txn_id``/``time`` are the triggering transaction and its event time; ``rule`` is a rule
    name or ``"model"``; ``latency_ms`` is the wall-clock time from the trigger's arrival to
    the alert; ``trigger`` holds its input values (``terminal``, ``amount``, ``country``).
    """

    card: int
    txn_id: int
    time: int
    rule: str
    reason: str
    latency_ms: float
    score: float | None = None
    trigger: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    window: tuple[int, int] | None = None

    @property
    def source(self) -> str:
        """``"model"`` or ``"rule"``."""
        return "model" if self.rule == "model" else "rule"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "card": self.card,
            "txn_id": self.txn_id,
            "event_time": self.time,
            "rule": self.rule,
            "reason": self.reason,
            "score": self.score,
            "latency_ms": self.latency_ms,
            "trigger": dict(self.trigger),
            "figures": dict(self.figures),
            "window": None if self.window is None else list(self.window),
        }


@dataclass
class DetectorOutput:
    """What one call returns: the alerts kept, and figures of the call."""

    alerts: list[FraudAlert]
    events: int = 0
    """Transactions in the batch."""
    scored: int = 0
    """Transactions released by the reorder buffer to the features and the model."""
    latency_ms: float | None = None
    """From the arrival of the batch's oldest transaction to the end of the call."""
    processing_ms: float = 0.0
    """Wall-clock time of the call itself."""

    def __len__(self) -> int:
        return len(self.alerts)


class _ReorderBuffer:
    """Holds transactions until the watermark passes them; releases them in (time, id) order.

    The watermark is ``max time seen - delay`` and never moves backwards. Rows strictly
    before it are released, so every later on-time row (time >= watermark) sorts after them.
    A row that sorts before the last one released is late: it is dropped and counted. Each
    batch is kept as one sorted run; a release takes the prefix of every run below the
    watermark and sorts only those rows, so a call costs what it releases, not what is held.
    """

    def __init__(self, delay_ms: int) -> None:
        self.delay = delay_ms
        self.runs: list[Columns] = []
        self.watermark: int | None = None
        self.max_time: int | None = None
        self.last: tuple[int, int] | None = None
        self.late = 0
        self.duplicates = 0

    def __len__(self) -> int:
        return sum(len(run["ts"]) for run in self.runs)

    def push(self, cols: Columns) -> Columns | None:
        ts, ids = cols["ts"], cols["txn_id"]
        if self.last is not None and len(ts):
            t0, i0 = self.last
            late = (ts < t0) | ((ts == t0) & (ids <= i0))
            if late.any():
                self.late += int(late.sum())
                cols = {k: v[~late] for k, v in cols.items()}
        if len(cols["ts"]):
            order = np.lexsort((cols["txn_id"], cols["ts"]))
            self.runs = [*self.runs, {k: v[order] for k, v in cols.items()}]
            top = int(cols["ts"].max())
            self.max_time = top if self.max_time is None else max(self.max_time, top)
            self._raise(self.max_time - self.delay)
        return self._release(self.watermark)

    def advance_to(self, t: int) -> Columns | None:
        self._raise(t)
        return self._release(self.watermark)

    def drain(self) -> Columns | None:
        return self._release(None)

    def _raise(self, t: int) -> None:
        if self.watermark is None or t > self.watermark:
            self.watermark = t

    def _release(self, before: int | None) -> Columns | None:
        taken: list[Columns] = []
        kept: list[Columns] = []
        for run in self.runs:
            ts = run["ts"]
            cut = len(ts) if before is None else int(np.searchsorted(ts, before, side="left"))
            if cut:
                taken.append({k: v[:cut] for k, v in run.items()})
            if cut < len(ts):
                kept.append({k: v[cut:] for k, v in run.items()} if cut else run)
        if not taken:
            return None
        self.runs = kept
        out = taken[0] if len(taken) == 1 else {k: np.concatenate([t[k] for t in taken]) for k in taken[0]}
        if len(taken) > 1:
            order = np.lexsort((out["txn_id"], out["ts"]))
            out = {k: v[order] for k, v in out.items()}
        dup = (out["ts"][1:] == out["ts"][:-1]) & (out["txn_id"][1:] == out["txn_id"][:-1])
        if dup.any():
            self.duplicates += int(dup.sum())
            keep = np.r_[True, ~dup]
            out = {k: v[keep] for k, v in out.items()}
        self.last = (int(out["ts"][-1]), int(out["txn_id"][-1]))
        return out


def _describe(name: str, value: float) -> str:
    """A feature value in words (for the reasons of model alerts)."""
    if name.startswith("CUSTOMER_ID_NB_COUNTRIES_"):
        return f"{value:.0f} countries in {_window_words(name)}"
    if name.startswith("CUSTOMER_ID_NB_TX_"):
        return f"{value:.0f} transactions in {_window_words(name)}"
    if name == "CUSTOMER_ID_AMOUNT_RATIO":
        return f"amount {value:.1f}x the card's usual"
    if name.startswith("CUSTOMER_ID_AMOUNT_ZSCORE_"):
        return f"amount {value:+.1f} sd from the card's {_window_words(name)}"
    if name.startswith("CUSTOMER_ID_AVG_AMOUNT_"):
        return f"average {value:.2f} over {_window_words(name)}"
    if name == "CUSTOMER_ID_MS_SINCE_PREV_TX":
        return f"{_duration_words(value)} since the card's previous transaction"
    if name == "CUSTOMER_ID_NEW_TERMINAL":
        return "a terminal new to the card" if value else "a terminal the card knows"
    if name == "TX_AMOUNT":
        return f"{value:.2f} paid"
    if name == "TX_DURING_NIGHT":
        return "at night" if value else "by day"
    return f"{name} = {value:g}"


def _window_words(name: str) -> str:
    label = name.rsplit("_", 2)[-2]  # ..._1HOUR_WINDOW -> 1HOUR
    for unit, word in (("DAY", "d"), ("HOUR", "h"), ("MIN", "min"), ("SEC", "s"), ("MS", "ms")):
        if label.endswith(unit) and label[: -len(unit)].isdigit():
            return f"{label[: -len(unit)]} {word}"
    return label


def _duration_words(ms: float) -> str:
    for size, unit in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


def _uses_features(rule: Rule) -> bool:
    return any(not isinstance(s, str) and s[1] not in INPUT_NAMES for s in rule.aggregations.values())


def _wall_ms() -> float:
    return time.time_ns() / 1e6


class FraudDetector:
    """Features, rules and model scoring over transaction batches; a pipeline processor.

    Args:
        rules: the alert rules (default: :func:`~fraudstream.fraud.rules.default_rules`).
            Rules read the columns ``card``, ``ts``, ``amount``, ``country``, ``terminal``
            whatever the input calls them; a rule that reads a feature column (such as
            ``default_rules(habit_column="CUSTOMER_ID_AMOUNT_RATIO")``) runs on the
            event-time-ordered path.
        model: scores every transaction; an alert when the score reaches ``model_threshold``
            (default: the model's own ``threshold``). None: rules only.
        features: the streaming features (default: card windows 1 h, 1, 7 and 30 days with
            distinct countries; terminal windows 1, 7 and 30 days). Its column names are
            replaced by the detector's.
        columns: input column names.
        cooldown: one alert per card per incident: a card's alerts within this much event
            time of a kept one are suppressed.
        out_of_orderness: the disorder bound of event times (watermark delay of the rules and
            of the reorder buffer).
        idle: how the reorder buffer's watermark moves when no batch arrives (see
            :class:`~fraudstream.pipeline.IdleWatermark`); None: held transactions wait for the
            next batch or ``flush()``.
        clock: wall clock in epoch milliseconds (for latencies).
    """

    def __init__(
        self,
        *,
        rules: Sequence[Rule] | None = None,
        model: Model | None = None,
        model_threshold: float | None = None,
        features: StreamingFeatures | None = None,
        columns: DetectorColumns | None = None,
        cooldown: Duration = "24h",
        out_of_orderness: Duration = "5s",
        idle: IdleWatermark | None = None,
        clock: Callable[[], float] = _wall_ms,
    ) -> None:
        self.columns = columns or DetectorColumns()
        rule_list = list(default_rules() if rules is None else rules)
        self.cooldown = to_millis(cooldown, "cooldown")
        self.out_of_orderness = to_millis(out_of_orderness, "out_of_orderness")
        if features is None:
            self.features = StreamingFeatures(columns=FEATURE_COLUMNS)
        else:
            self.features = StreamingFeatures(
                customer_windows=features.customer_windows,
                terminal_windows=features.terminal_windows,
                label_delay=features.label_delay,
                columns=FEATURE_COLUMNS,
            )
        available = {"TX_AMOUNT", *self.features.feature_names}
        arrival_rules = [r for r in rule_list if not _uses_features(r)]
        feature_rules = [r for r in rule_list if _uses_features(r)]
        for r in feature_rules:
            unknown = sorted(
                {s[1] for s in r.aggregations.values() if not isinstance(s, str)}
                - available
                - set(INPUT_NAMES)
            )
            if unknown:
                raise ConfigError(f"rule {r.name!r} reads unknown columns {unknown}")

        def rule_set(rules: list[Rule]) -> RuleSet | None:
            if not rules:
                return None
            return RuleSet(
                rules, card="card", time="ts", cooldown=cooldown, out_of_orderness=out_of_orderness
            )

        self.rules = rule_set(arrival_rules)
        self.feature_rules = rule_set(feature_rules)
        self.model = model
        if model is not None:
            missing = [n for n in model.feature_names if n not in available]
            if missing:
                raise ConfigError(
                    f"the model reads features the detector does not compute: {missing}; "
                    f"available: {sorted(available)}"
                )
        self.model_threshold = (
            float(model_threshold) if model_threshold is not None else (model.threshold if model else 1.0)
        )
        if not 0.0 <= self.model_threshold <= 1.0:
            raise ConfigError(f"model_threshold must be in [0, 1], got {self.model_threshold}")
        self.idle = idle
        self.clock = clock
        self._buffer = _ReorderBuffer(self.out_of_orderness)
        self._last_alert: dict[int, int] = {}
        self._prune_at = 4_096
        self._last_tick: float | None = None
        # plain Python counters: metrics() may be called from another thread during process()
        self.events = 0
        self.scored = 0
        self.alerts = 0
        self.suppressed = 0
        self.alerts_by_rule: dict[str, int] = {}
        self.max_event_time: int | None = None

    # -- the processor interface ----------------------------------------------------------

    def process(self, batch: Mapping[str, Any] | Any) -> DetectorOutput:
        """Runs a batch through both paths and returns the alerts kept (see the module doc).

        The batch is validated whole first (missing columns, wrong dtypes, non-finite amounts
        raise :class:`~fraudstream.errors.InvalidBatchError` or ``TypeError`` naming the
        column) and a bad batch changes nothing."""
        began = self.clock()
        cols = self._normalize(batch, began)
        self._last_tick = None
        n = len(cols["ts"])
        self.events += n
        if n:
            top = int(cols["ts"].max())
            self.max_event_time = top if self.max_event_time is None else max(self.max_event_time, top)
        candidates: list[FraudAlert] = []
        if self.rules is not None and n:
            found = self.rules.process(cols)
            now = self.clock()
            candidates += [self._rule_alert(a, cols, a.row, now) for a in found]
        released = self._buffer.push(cols) if n else None
        scored = 0
        if released is not None:
            scored = len(released["ts"])
            candidates += self._ordered(released)
        kept = self._cool_down(candidates)
        end = self.clock()
        latency = float(end - cols["arrival"].min()) if n else None
        return DetectorOutput(kept, n, scored, latency, float(end - began))

    def on_idle(self, idle_for_s: float) -> DetectorOutput | None:
        """No batch for ``idle_for_s`` seconds: moves the reorder buffer's watermark by the
        rule of ``idle`` and scores what it releases."""
        if self.idle is None or idle_for_s * 1000 < to_millis(self.idle.after, "after"):
            return None
        now = time.monotonic()
        wm = self._buffer.watermark
        if self.idle.rule == "wall_clock":
            target = int(self.clock()) - to_millis(self.idle.lag, "lag")
        elif wm is None:
            return None
        else:
            since = self._last_tick if self._last_tick is not None else now - idle_for_s
            target = wm + max(1, int((now - since) * 1000))
        self._last_tick = now
        released = self._buffer.advance_to(target)
        if released is None:
            return None
        kept = self._cool_down(self._ordered(released))
        return DetectorOutput(kept, 0, len(released["ts"]))

    def flush(self) -> DetectorOutput:
        """End of input: every held transaction is scored; the rules' windows close (final
        windows raise no alerts)."""
        released = self._buffer.drain()
        kept = self._cool_down(self._ordered(released)) if released is not None else []
        for rules in (self.rules, self.feature_rules):
            if rules is not None:
                rules.flush()
        return DetectorOutput(kept, 0, 0 if released is None else len(released["ts"]))

    def metrics(self) -> dict[str, Any]:
        """Counters of the detector (safe to call from another thread while it runs)."""
        wm = self._buffer.watermark
        top = self.max_event_time
        suppressed = self.suppressed + sum(
            r.suppressed for r in (self.rules, self.feature_rules) if r is not None
        )
        return {
            "events": self.events,
            "scored": self.scored,
            "held": len(self._buffer),
            "late": self._buffer.late,
            "duplicates": self._buffer.duplicates,
            "alerts": self.alerts,
            "alerts_by_rule": dict(self.alerts_by_rule),
            "suppressed": suppressed,
            "watermark": wm,
            "max_event_time": top,
            "watermark_lag_ms": None if wm is None or top is None else top - wm,
        }

    # -- the paths ------------------------------------------------------------------------

    def _normalize(self, batch: Mapping[str, Any] | Any, now: float) -> Columns:
        c = self.columns
        cols: Columns = {
            "txn_id": int_column(get_column(batch, c.txn_id), c.txn_id),
            "card": int_column(get_column(batch, c.card), c.card),
            "ts": int_column(get_column(batch, c.time), c.time),
            "terminal": int_column(get_column(batch, c.terminal), c.terminal),
            "amount": value_column(get_column(batch, c.amount), c.amount).astype(np.float64, copy=False),
            "country": int_column(get_column(batch, c.country), c.country),
        }
        n = len(cols["ts"])
        for name, col in cols.items():
            if len(col) != n:
                raise InvalidBatchError(f"column '{name}' has {len(col)} rows, expected {n}")
        bad = ~np.isfinite(cols["amount"])
        if bad.any():
            row = int(np.argmax(bad))
            err = InvalidBatchError(
                f"column '{c.amount}' row {row}: value {cols['amount'][row]!r} is not finite"
            )
            err.column, err.row = c.amount, row
            raise err
        if _has(batch, c.arrival):
            arrival = value_column(get_column(batch, c.arrival), c.arrival).astype(np.float64, copy=False)
            if len(arrival) != n:
                raise InvalidBatchError(f"column '{c.arrival}' has {len(arrival)} rows, expected {n}")
        else:
            arrival = np.full(n, now)
        cols["arrival"] = arrival
        return cols

    def _ordered(self, released: Columns) -> list[FraudAlert]:
        """Features, model and feature rules over transactions in (time, id) order."""
        self.scored += len(released["ts"])
        feats = self.features.process(released)
        out: list[FraudAlert] = []
        if self.feature_rules is not None:
            batch = {**{k: released[k] for k in INPUT_NAMES}, **feats}
            found = self.feature_rules.process(batch)
            now = self.clock()
            out += [self._rule_alert(a, released, a.row, now) for a in found]
        if self.model is not None:
            scores = self.model.score(feats)
            now = self.clock()
            for row in np.flatnonzero(scores >= self.model_threshold).tolist():
                out.append(self._model_alert(released, feats, scores, row, now))
        return out

    def _rule_alert(self, a: Alert, cols: Columns, row: int, now: float) -> FraudAlert:
        return FraudAlert(
            card=a.card,
            txn_id=int(cols["txn_id"][row]),
            time=a.time,
            rule=a.rule,
            reason=a.reason,
            latency_ms=max(0.0, float(now - cols["arrival"][row])),
            trigger=_trigger(cols, row),
            figures=dict(a.figures),
            window=(a.window_start, a.window_end),
        )

    def _model_alert(
        self, cols: Columns, feats: Columns, scores: npt.NDArray[np.float64], row: int, now: float
    ) -> FraudAlert:
        assert self.model is not None
        score = float(scores[row])
        top = self._explain(feats, row)
        figures = {name: float(feats[name][row]) for name, _ in top}
        words = ", ".join(_describe(name, float(feats[name][row])) for name, _ in top)
        reason = f"model: fraud score {score:.2f} (alert at {self.model_threshold:.2f})"
        return FraudAlert(
            card=int(cols["card"][row]),
            txn_id=int(cols["txn_id"][row]),
            time=int(cols["ts"][row]),
            rule="model",
            reason=f"{reason}: {words}" if words else reason,
            latency_ms=max(0.0, float(now - cols["arrival"][row])),
            score=score,
            trigger=_trigger(cols, row),
            figures={"score": score, **figures},
        )

    def _explain(self, feats: Columns, row: int, top: int = 3) -> list[tuple[str, float]]:
        """The inputs that raised the score most: ``coef * standardized value`` of a logistic
        regression; for trees, the inputs furthest from their training mean."""
        model = self.model
        assert model is not None
        parts: list[tuple[str, float]] = []
        coef = model.params.get("coef") if model.kind == "logistic_regression" else None
        for i, inp in enumerate(model.inputs):
            z = (float(inp.apply(np.array([feats[inp.name][row]]))[0]) - model.mean[i]) / model.scale[i]
            weight = float(coef[i]) * z if coef is not None else abs(z)
            if math.isfinite(weight) and weight > 0:
                parts.append((inp.name, weight))
        parts.sort(key=lambda p: -p[1])
        return parts[:top]

    def _cool_down(self, candidates: list[FraudAlert]) -> list[FraudAlert]:
        """Keeps the first alert per card and incident; within a call, the earliest in event
        time wins (so a model alert at an earlier transaction beats a rule's at a later one)."""
        kept: list[FraudAlert] = []
        for a in sorted(candidates, key=lambda a: (a.time, a.txn_id)):
            last = self._last_alert.get(a.card)
            if last is not None and abs(a.time - last) < self.cooldown:
                self.suppressed += 1
                continue
            self._last_alert[a.card] = a.time if last is None else max(last, a.time)
            kept.append(a)
            self.alerts += 1
            self.alerts_by_rule[a.rule] = self.alerts_by_rule.get(a.rule, 0) + 1
        if len(self._last_alert) > self._prune_at and self.max_event_time is not None:
            horizon = self.max_event_time - 2 * self.cooldown
            self._last_alert = {k: v for k, v in self._last_alert.items() if v >= horizon}
            self._prune_at = max(4_096, 2 * len(self._last_alert))
        return kept


def _has(batch: Mapping[str, Any] | Any, name: str) -> bool:
    if hasattr(batch, "schema") and hasattr(batch, "column"):
        return name in list(batch.schema.names)
    return name in batch


def _trigger(cols: Columns, row: int) -> dict[str, Any]:
    return {
        "terminal": int(cols["terminal"][row]),
        "amount": float(cols["amount"][row]),
        "country": int(cols["country"][row]),
    }
