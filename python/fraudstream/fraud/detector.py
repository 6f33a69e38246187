"""The fraud detector: rules, streaming features and model scoring as one processor.

:class:`FraudDetector` implements the processor contract (:class:`fraudstream.processor.Processor`):
``process``, ``advance``, ``flush``, ``snapshot``, ``changes``, ``restore``, ``apply_changes``;
the in-process :class:`~fraudstream.pipeline.Pipeline` (the demo) and the exactly-once Kafka
pipeline run it the same way.

Input columns (names set by :class:`DetectorColumns`; the defaults are the Kafka decoder's,
:func:`fraudstream.kafka.schema.decode_batch`; other columns are ignored):

================  =========  ==========================================================
``txn_id``        int64      transaction id (named by alerts and score rows)
``card_id``       int64      the card: key of the rules and of the card features
``terminal_id``   int64      terminal / merchant (terminal features, new-terminal flag)
``amount``        float64    finite
``country``       int64      any integer code (the decoder's packed ISO alpha-2)
``event_time``    int64      epoch milliseconds, UTC; bounded disorder (``out_of_orderness``)
``arrival_ms``    float64    optional: wall-clock epoch ms at which the transaction arrived
                             (Kafka: the message timestamp); alert latency is measured from
                             it, or from the start of ``process`` when absent
================  =========  ==========================================================

``extra_features`` names further float64 batch columns the model and the feature rules read
as features beside the streaming ones, as they are: features joined from a table or a store
before the detector (:mod:`fraudstream.fraud.profiles`). They are part of the replay log.

Every transaction is scored in the call it arrives in, in arrival order:

1. **Event clock.** The detector keeps a monotone clock: a row at event time ``t`` is
   featurized at ``t_eff = max(t, every earlier t)`` and given the synthetic id ``seq`` (a
   per-detector arrival counter), so ``(t_eff, seq)`` strictly increases, which the streaming
   features require. Features are thus computed at arrival over what arrived before; a
   transaction behind the clock is featurized at the clock (its windows end at ``t_eff``, an
   error bounded by the disorder) and counted as ``clamped``. The calendar features
   (``TX_DURING_WEEKEND``, ``TX_DURING_NIGHT``) read ``t_eff`` too.
2. **Rules** reading only the input columns (``card``, ``ts``, ``amount``, ``country``,
   ``terminal``, ``txn_id``; :func:`~fraudstream.fraud.rules.default_rules`) run on the real
   event times, with the watermark's bounded disorder; early firing raises a candidate at the
   very transaction that makes the pattern visible. Rows too late for every rule window are
   counted as ``late`` (they are still scored).
3. **Features, model and feature rules.** :class:`~fraudstream.fraud.features.StreamingFeatures`
   over ``(t_eff, seq)``, then the :class:`~fraudstream.fraud.model.Model` (a candidate when
   the score reaches the threshold; its reasons name the inputs that pushed the score up) and
   the rules that read a feature column (such as ``spend_vs_habit_*`` over
   ``CUSTOMER_ID_AMOUNT_RATIO``).
4. **One cool-down.** Every candidate goes through one :class:`~fraudstream.alerts.Cooldown`
   (event time of the trigger, per card), ordered by triggering row, then rules in declared
   order, then feature rules, then the model: one alert per card per incident, the others
   counted as ``suppressed``.

Outputs (:class:`~fraudstream.processor.ProcessorOutput`): ``alerts``
(:class:`~fraudstream.alerts.Alert`), ``scores`` (one row per input row: ``row``, ``txn_id``,
``card_id``, ``score`` — the model's probability, NaN when no model is configured —
and ``decision``, a :data:`~fraudstream.processor.DECISIONS` code: pass, alert, or flagged
when a rule or the model fired but the cool-down held the alert back) and ``suppressed``.

**A cap on live cards** (``max_cards``): a card is live from a transaction until its latest
transaction is the detector's state horizon behind the event clock (the longest of: the longest
card feature window, the longest rule window plus the disorder bound, two cool-downs; by then
every piece of its state has expired by itself) or until it is evicted. A transaction of a card
that is not live while ``max_cards`` are live first evicts the card seen least recently: the one
whose latest transaction is the oldest by the event clock, ties in arrival order. The evicted
card's state goes everywhere at that row, before the row is scored: its card features, its
windows in every rule, its cool-down entry; its later transactions start afresh, as a card never
seen. Evictions are counted (:meth:`FraudDetector.counters`, ``evicted``); they are a function
of the rows alone, so a restore or a replay evicts the same cards at the same rows, and how
the rows are cut into batches changes no eviction. Work: a hash-map update and a queue push per
transaction (O(1) amortised), and per eviction a drop in each piece of state.

Invariants: every output (latency aside) is a pure function of the arrival-ordered rows and
the ``advance`` calls: how the rows are cut into batches changes no alert, score or decision,
nor the state's bytes (the streaming features' snapshot lists the keys live at the engine's
time in key order, whenever its sweep frees expired ones). A bad batch raises before any state
changes (the event clock and ``seq`` included). State is bounded by the feature and rule
windows and the cards alerted within two cool-downs (see ``docs/fraud.md``), and by
``max_cards`` whatever the input; nothing is
buffered: duplicates are the caller's to drop (the Kafka partition task deduplicates), a
repeated transaction is scored again.

Changes for a changelog are a replay log (:class:`~fraudstream.processor.InputLog`): the
state-relevant input columns of each batch and each effective ``advance``; ``apply_changes``
replays them through the same code path, which rebuilds the state bit for bit.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream._columns import get_column, int_column, value_column
from fraudstream.alerts import Alert, Cooldown
from fraudstream.errors import ConfigError, FlushedError, InvalidBatchError, SnapshotError
from fraudstream.fraud.derived import DERIVED_FEATURES, can_derive, derive
from fraudstream.fraud.features import StreamingFeatures, TransactionColumns
from fraudstream.fraud.model import Model
from fraudstream.fraud.reasons import RowValues, explain_rows, reasons
from fraudstream.fraud.rules import Candidates, Rule, RuleSet, default_rules
from fraudstream.pieces import Pieces, join
from fraudstream.processor import (
    ALERT,
    FLAGGED,
    PASS,
    InputLog,
    ProcessorOutput,
    pack_pieces,
    snapshot_pieces,
    unpack,
)
from fraudstream.windows import Duration, to_millis

Columns = dict[str, np.ndarray[Any, Any]]
IntArray = npt.NDArray[np.int64]

INPUT_NAMES = ("txn_id", "card", "ts", "terminal", "amount", "country")
"""The names rules see for the input columns, whatever the batch calls them; also the
columns of the replay log."""

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

CUSTOMER_WINDOWS = ("1h", "6h", "1d", "7d", "30d")
"""The detector's default card windows: the streaming defaults and 6 h (what a slow incident
shows within hours: the story's 23 transactions in 4 countries took 6)."""


def detector_features() -> StreamingFeatures:
    """The detector's default streaming features: card windows :data:`CUSTOMER_WINDOWS` with
    distinct countries, the default terminal windows, the detector's column names."""
    return StreamingFeatures(customer_windows=CUSTOMER_WINDOWS, columns=FEATURE_COLUMNS)


SCORE_COLUMNS = ("row", "txn_id", "card_id", "score", "decision")
"""The ``scores`` columns of every ``process`` output."""

_MAGIC, _FORMAT = b"FSFD", 1
_HEADER = struct.Struct("<4sH8s")
_SCALARS = struct.Struct("<qqqqqqqq")
_NONE = -(2**63)
_FLUSH = 2**63 - 1
"""Logged as the wall clock of an ``advance`` that was a ``flush`` (every window closed)."""


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


def _uses_features(rule: Rule) -> bool:
    return any(not isinstance(s, str) and s[1] not in INPUT_NAMES for s in rule.aggregations.values())


def _wall_ms() -> float:
    return time.time_ns() / 1e6


class FraudDetector:
    """Rules, streaming features and model scoring over transaction batches; a processor.

    Args:
        rules: the alert rules (default: :func:`~fraudstream.fraud.rules.default_rules`).
            Rules read the columns ``card``, ``ts``, ``amount``, ``country``, ``terminal``,
            ``txn_id`` whatever the input calls them; a rule that reads a feature column
            (such as ``default_rules(habit_column="CUSTOMER_ID_AMOUNT_RATIO")``) runs after
            the features.
        model: scores every transaction; an alert when the score reaches ``model_threshold``
            (default: the model's own ``threshold``). None: rules only (scores are NaN).
        features: the streaming features (default: card windows 1 h, 1, 7 and 30 days with
            distinct countries; terminal windows 1, 7 and 30 days). Its column names are
            replaced by the detector's.
        columns: input column names.
        cooldown: one alert per card per incident: a candidate within this much event time
            of the card's kept alert (any rule or the model) is suppressed.
        out_of_orderness: the disorder bound of event times (the rules' watermark delay).
        wall_clock_time: event times are wall-clock times (live traffic): ``advance(now)``
            moves the rules' watermark to ``now - out_of_orderness``. False (replays of
            recorded or synthetic time, such as the demo's): ``advance`` does nothing.
        clock: wall clock in epoch milliseconds (for latencies only; never for state).
        extra_features: batch columns read as features as they are (see the module docstring).
        max_cards: at most this many live cards, the one seen least recently evicted first
            (see the module docstring); None: unbounded.
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
        wall_clock_time: bool = True,
        clock: Callable[[], float] = _wall_ms,
        extra_features: Sequence[str] = (),
        max_cards: int | None = None,
    ) -> None:
        self.columns = columns or DetectorColumns()
        self.extra_features = tuple(extra_features)
        rule_list = list(default_rules() if rules is None else rules)
        self.cooldown = to_millis(cooldown, "cooldown")
        self.out_of_orderness = to_millis(out_of_orderness, "out_of_orderness")
        self.wall_clock_time = wall_clock_time
        self.max_cards = max_cards
        base = features or detector_features()
        # a card stays live until every piece of its state has expired by itself
        spans = [getattr(r.window, "size", 0) or getattr(r.window, "gap", 0) for r in rule_list]
        self.card_horizon = max(
            max(to_millis(w, "customer window") for w in base.customer_windows),
            max(spans, default=0) + self.out_of_orderness,
            2 * self.cooldown,
        )
        """How long a card stays live after its latest transaction (event clock), ms."""
        self.features = StreamingFeatures(
            customer_windows=base.customer_windows,
            terminal_windows=base.terminal_windows,
            label_delay=base.label_delay,
            columns=FEATURE_COLUMNS,
            max_cards=max_cards,
            card_horizon=self.card_horizon,
        )
        available = {"TX_AMOUNT", *self.features.feature_names}
        derivable = can_derive(available)
        if derivable:
            available |= set(DERIVED_FEATURES)
        clash = sorted((available | set(INPUT_NAMES)).intersection(self.extra_features))
        if clash:
            raise ConfigError(f"extra_features {clash} would hide the detector's own columns")
        available |= set(self.extra_features)
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
        names = [r.name for r in rule_list]
        if len(set(names)) != len(names) or "model" in names:
            raise ConfigError(f"rule names must be unique and not 'model', got {names}")

        def rule_set(rules: list[Rule]) -> RuleSet | None:
            if not rules:
                return None
            # cool-down 0: the detector's one cool-down decides over every candidate
            return RuleSet(
                rules,
                card="card",
                time="ts",
                txn_id="txn_id",
                cooldown=0,
                out_of_orderness=self.out_of_orderness,
                track_changes=False,
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
        reads = set(model.feature_names if model is not None else ())
        for r in feature_rules:
            reads |= {s[1] for s in r.aggregations.values() if not isinstance(s, str)}
        self._derive = derivable and bool(reads & set(DERIVED_FEATURES))
        """Whether the derived columns are computed (only when the model or a rule reads one)."""
        self.model_threshold = (
            float(model_threshold) if model_threshold is not None else (model.threshold if model else 1.0)
        )
        if not 0.0 <= self.model_threshold <= 1.0:
            raise ConfigError(f"model_threshold must be in [0, 1], got {self.model_threshold}")
        self.model_version = model.version if model is not None else None
        self.clock = clock
        # candidate sources in the cool-down's order: rules, feature rules, the model
        self._names = [*(r.name for r in arrival_rules), *(r.name for r in feature_rules), "model"]
        self._feature_base = len(arrival_rules)
        self._cooldown = Cooldown(self.cooldown)
        self._log = InputLog()
        description = [
            f"{self.out_of_orderness}|{self.features.customer_windows}|{self.features.terminal_windows}",
            f"{self.features.label_delay}|{self.features.feature_names}",
            *(r.fingerprint.hex() for r in (self.rules, self.feature_rules) if r is not None),
            "|".join(self._names),
        ]
        self._uncapped_fingerprint = hashlib.sha256("\n".join(description).encode()).digest()[:8]
        if max_cards is not None:  # (only then: the state of uncapped detectors keeps its name)
            description.append(f"max_cards={max_cards}|{self.card_horizon}")
        self.fingerprint = hashlib.sha256("\n".join(description).encode()).digest()[:8]
        """8 bytes naming what the state belongs to (rules, features, disorder bound, card
        cap); a new model or cool-down may take over a detector's state, other rules or
        features not (with a card cap, the cool-down is part of the card horizon). A capped
        detector also takes the state of the same detector without a cap (a cap set on a
        running deployment): its live cards are the cards held, by their latest transaction."""
        # state beside the engines; plain Python ints: metrics() may run on another thread
        self._clock: int | None = None
        """The event clock: the newest event time seen."""
        self._seq = 0
        self._advanced: int | None = None
        """The highest watermark ``advance`` set."""
        self.flushed = False
        """``flush`` closed every rule window (later rows are late for the rules)."""
        self.events = 0
        self.clamped = 0
        self.late = 0
        self.alerts = 0
        self._by_rule = [0] * len(self._names)

    # -- the processor contract -----------------------------------------------------------

    def process(self, columns: Mapping[str, Any] | Any) -> ProcessorOutput:
        """Scores every transaction of the batch and returns the alerts kept (see the module
        docstring).

        The batch is validated whole first (missing columns, wrong dtypes, non-finite amounts
        raise :class:`~fraudstream.errors.InvalidBatchError` or ``TypeError`` naming the
        column) and a bad batch changes nothing."""
        if self.flushed:
            raise FlushedError("process() after flush(): the input has ended; build a new detector")
        began = self.clock()
        cols, arrival = self._normalize(columns, began)
        if not len(cols["ts"]):
            return ProcessorOutput(scores=_no_scores())
        out = self._step(cols, arrival)
        self._log.batch(cols)
        return out

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        """Idle time: with ``wall_clock_time``, the rules' watermark moves to at least
        ``wall_clock_ms - out_of_orderness``: the windows of quiet cards close and their
        state is freed. No alerts come from it (closing windows raise none)."""
        if self.wall_clock_time and self._advance(int(wall_clock_ms)):
            self._log.advance(int(wall_clock_ms))
        return ProcessorOutput()

    def flush(self) -> ProcessorOutput:
        """End of input: every rule window closes (final windows raise no alerts). Nothing is
        held, so nothing is left to score."""
        if self._advance(_FLUSH):
            self._log.advance(_FLUSH)
        return ProcessorOutput()

    def snapshot(self) -> bytes:
        """The whole state as versioned bytes: a header (magic, format, configuration
        fingerprint), the event clock, ``seq`` and the counters, the features, each rule
        set and the cool-down (see the module docstring for what the bytes depend on)."""
        return join(self.snapshot_pieces())

    def snapshot_pieces(self) -> Pieces:
        """:meth:`snapshot` in pieces, not joined (:mod:`fraudstream.pieces`)."""
        c = self._clock
        scalars = _SCALARS.pack(
            _NONE if c is None else c,
            self._seq,
            _NONE if self._advanced is None else self._advanced,
            int(self.flushed),
            self.events,
            self.clamped,
            self.late,
            self.alerts,
        )
        return pack_pieces(
            [
                _HEADER.pack(_MAGIC, _FORMAT, self.fingerprint),
                scalars,
                np.asarray(self._by_rule, np.int64).tobytes(),
                snapshot_pieces(self.features),
                b"" if self.rules is None else snapshot_pieces(self.rules),
                b"" if self.feature_rules is None else snapshot_pieces(self.feature_rules),
                self._cooldown.snapshot(),
            ]
        )

    def changes(self) -> bytes:
        """The inputs since the last call (or restore) as a replay log: each processed batch's
        state-relevant columns and each ``advance`` or ``flush`` that moved the watermark."""
        return self._log.take()

    def restore(self, data: bytes) -> None:
        """Replaces the state by a :meth:`snapshot` of a detector with the same rules and
        features (:class:`~fraudstream.errors.SnapshotError` otherwise); clears the log."""
        try:  # the header is the first part, after its 8-byte length
            magic, version, fingerprint = _HEADER.unpack_from(data, 8)
        except struct.error:
            raise SnapshotError("not a fraud detector state (truncated header)") from None
        if magic != _MAGIC or version != _FORMAT:
            raise SnapshotError(
                f"not a fraud detector state of format {_FORMAT} (magic {magic!r}, version {version})"
            )
        uncapped = self.max_cards is not None and fingerprint == self._uncapped_fingerprint
        if fingerprint != self.fingerprint and not uncapped:
            raise SnapshotError(
                "fraud detector state belongs to other rules, features or disorder bound "
                f"(this detector: rules {self._names[:-1]}, features {self.features.feature_names[:3]}...)"
            )
        _, scalars, by_rule, features, rules, feature_rules, cooldown = unpack(data, 7)
        if len(scalars) != _SCALARS.size or len(by_rule) != 8 * len(self._names):
            raise SnapshotError("fraud detector state has malformed counters")
        self.features.restore(features)
        for rule_set, part in ((self.rules, rules), (self.feature_rules, feature_rules)):
            if rule_set is not None:
                rule_set.restore(part)
        self._cooldown.restore(cooldown)
        c, seq, advanced, flushed, events, clamped, late, alerts = _SCALARS.unpack(scalars)
        self._clock = None if c == _NONE else c
        self._advanced = None if advanced == _NONE else advanced
        self.flushed = bool(flushed)
        self._seq, self.events, self.clamped, self.late, self.alerts = seq, events, clamped, late, alerts
        self._by_rule = np.frombuffer(by_rule, np.int64).tolist()
        self._log.clear()

    def apply_changes(self, data: bytes) -> None:
        """Replays :meth:`changes` bytes through the same code path as ``process``/``advance``
        (outputs discarded); the replayed inputs are not logged again."""

        def batch(cols: Columns) -> None:
            missing = [k for k in (*INPUT_NAMES, *self.extra_features) if k not in cols]
            if missing:
                raise SnapshotError(f"changes record lacks columns {missing}")
            self._step({k: cols[k] for k in (*INPUT_NAMES, *self.extra_features)}, None)

        InputLog.replay(data, batch, self._advance)

    @property
    def watermark(self) -> int | None:
        """The rules' watermark (event time), None before the first transaction."""
        return self._watermark()

    def counters(self) -> dict[str, int]:
        """Transactions scored, clamped and late, alerts, and cards evicted by ``max_cards``
        (``evicted``, as every processor reports evictions; part of the state)."""
        return {
            "events": self.events,
            "clamped": self.clamped,
            "late": self.late,
            "alerts": self.alerts,
            "evicted": int(self.features.counters()["cards_evicted"]),
        }

    def state_size(self) -> dict[str, int]:
        """Cards with feature state (``keys``), open rule windows, approximate bytes."""
        features = self.features.state_size()
        rules = [r.state_size() for r in (self.rules, self.feature_rules) if r is not None]
        return {
            "keys": int(features["customers"]),
            "windows": sum(r["windows"] for r in rules),
            "bytes": int(features["bytes"]) + sum(r["bytes"] for r in rules),
        }

    def metrics(self) -> dict[str, Any]:
        """Counters of the detector (safe to call from another thread while it runs)."""
        wm = self._watermark()
        top = self._clock
        return {
            "events": self.events,
            "scored": self.events,
            "clamped": self.clamped,
            "late": self.late,
            "alerts": self.alerts,
            "alerts_by_rule": {n: k for n, k in zip(self._names, self._by_rule, strict=True) if k},
            "suppressed": self._cooldown.suppressed,
            "evicted": int(self.features.counters()["cards_evicted"]),
            "watermark": wm,
            "max_event_time": top,
            "watermark_lag_ms": None if wm is None or top is None else top - wm,
            "flushed": self.flushed,
        }

    # -- one batch ------------------------------------------------------------------------

    def _normalize(self, batch: Mapping[str, Any] | Any, now: float) -> tuple[Columns, np.ndarray[Any, Any]]:
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
        given = dict(
            zip(INPUT_NAMES, (c.txn_id, c.card, c.time, c.terminal, c.amount, c.country), strict=True)
        )
        for name, col in cols.items():
            if len(col) != n:
                raise InvalidBatchError(
                    f"column '{given[name]}' has {len(col)} rows, expected {n} (as column '{c.time}')"
                )
        bad = ~np.isfinite(cols["amount"])
        if bad.any():
            row = int(np.argmax(bad))
            err = InvalidBatchError(
                f"column '{c.amount}' row {row}: value {cols['amount'][row]!r} is not finite"
            )
            err.column, err.row = c.amount, row
            raise err
        for name in self.extra_features:
            extra = value_column(get_column(batch, name), name).astype(np.float64, copy=False)
            if len(extra) != n:
                raise InvalidBatchError(f"column '{name}' has {len(extra)} rows, expected {n}")
            cols[name] = extra
        if _has(batch, c.arrival):
            arrival = value_column(get_column(batch, c.arrival), c.arrival).astype(np.float64, copy=False)
            if len(arrival) != n:
                raise InvalidBatchError(f"column '{c.arrival}' has {len(arrival)} rows, expected {n}")
        else:
            arrival = np.full(n, now)
        return cols, arrival

    def _step(self, cols: Columns, arrival: np.ndarray[Any, Any] | None) -> ProcessorOutput:
        """The state transition of one validated batch, and its outputs (``arrival`` None:
        a replay, outputs not built)."""
        n = len(cols["ts"])
        t = cols["ts"]
        t_eff = np.maximum.accumulate(t)
        if self._clock is not None:
            t_eff = np.maximum(t_eff, self._clock)
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)

        # candidates of every source: (trigger rows, cool-down order, cards, source, positions)
        parts: list[tuple[IntArray, IntArray, IntArray, int, IntArray]] = []
        found: Candidates | None = None
        found_f: Candidates | None = None
        checked = None if self.rules is None else self.rules.validate(cols)
        # features first: they say which cards the cap evicts at which rows (none without it)
        feats, evicted = self.features.process_evicting({**cols, "txn_id": seq, "ts": t_eff})
        drop = evicted if len(evicted[0]) else None
        if self.rules is not None:
            assert checked is not None
            found, late = self.rules.candidates(checked, drop)
            self.late += len(late)
            parts.append((found.trigger, found.rule, found.card, 0, np.arange(len(found), dtype=np.int64)))
        if self._derive:
            feats.update(derive(feats))
        feats.update({name: cols[name] for name in self.extra_features})
        if self.feature_rules is not None:
            batch = {**cols, **feats}
            found_f, _ = self.feature_rules.candidates(self.feature_rules.validate(batch), drop)
            parts.append(
                (
                    found_f.trigger,
                    found_f.rule + self._feature_base,
                    found_f.card,
                    1,
                    np.arange(len(found_f), dtype=np.int64),
                )
            )
        scores = self.model.score(feats) if self.model is not None else None
        if scores is not None:
            rows = np.flatnonzero(scores >= self.model_threshold).astype(np.int64)
            parts.append(
                (rows, np.full(len(rows), len(self._names) - 1, np.int64), cols["card"][rows], 2, rows)
            )

        trigger = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        order = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        card = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int64)
        source = np.concatenate([np.full(len(p[0]), p[3], np.int64) for p in parts]) if parts else trigger
        position = np.concatenate([p[4] for p in parts]) if parts else trigger
        by = np.lexsort((order, trigger))
        trigger, order, card, source, position = trigger[by], order[by], card[by], source[by], position[by]
        suppressed_before = self._cooldown.suppressed
        keep = self._cooldown.decide(card, t[trigger], rows=trigger, forget=drop)

        self._clock = int(t_eff[-1])
        self._seq += n
        self.events += n
        self.clamped += int(np.count_nonzero(t_eff != t))
        kept = np.flatnonzero(keep)
        self.alerts += len(kept)
        for k, count in enumerate(np.bincount(order[kept], minlength=len(self._names)).tolist()):
            self._by_rule[k] += count
        if arrival is None:
            return ProcessorOutput()

        decision = np.full(n, PASS, np.int8)
        decision[trigger] = FLAGGED
        decision[trigger[kept]] = ALERT
        alerts: list[Alert] = []
        model_rows = trigger[kept[source[kept] == 2]]
        # every positive input ranked: reasons() merges or leaves out some and takes the next
        explained = iter(
            explain_rows(self.model, feats, model_rows, top=len(self.model.inputs))
            if self.model is not None
            else []
        )
        for k in kept.tolist():
            row, pos = int(trigger[k]), int(position[k])
            if source[k] == 0:
                assert self.rules is not None and found is not None
                alert = self.rules.alert(found, pos, cols["txn_id"])
            elif source[k] == 1:
                assert self.feature_rules is not None and found_f is not None
                alert = self.feature_rules.alert(found_f, pos, cols["txn_id"])
            else:
                assert scores is not None
                alert = self._model_alert(cols, feats, float(scores[row]), row, next(explained))
            alerts.append(alert.located(latency_ms=max(0.0, float(self.clock() - arrival[row]))))
        return ProcessorOutput(
            alerts=alerts,
            scores={
                "row": np.arange(n, dtype=np.int64),
                "txn_id": cols["txn_id"],
                "card_id": cols["card"],
                "score": scores if scores is not None else np.full(n, np.nan),
                "decision": decision,
            },
            suppressed=self._cooldown.suppressed - suppressed_before,
        )

    def _model_alert(
        self, cols: Columns, feats: Columns, score: float, row: int, ranked: list[tuple[str, float]]
    ) -> Alert:
        """The alert of a model score at ``row``; ``ranked``: its inputs that raised it, best first
        (:func:`~fraudstream.fraud.reasons.reasons` words the first three that say something;
        ``figures`` holds the score and the value of every input a reason states)."""
        values = RowValues(feats, row)
        said = reasons(ranked, values)
        figures = {"score": score, **{name: values[name] for _, names in said for name in names}}
        words = tuple(text for text, _ in said)
        return Alert(
            card_id=int(cols["card"][row]),
            rule="model",
            reasons=(f"fraud score {score:.2f} (alert at {self.model_threshold:.2f})", *words),
            event_time=int(cols["ts"][row]),
            trigger_txn_id=int(cols["txn_id"][row]),
            trigger_row=row,
            score=score,
            model_version=self.model_version,
            figures=figures,
        )

    # -- the watermark --------------------------------------------------------------------

    def _watermark(self) -> int | None:
        """The rules' watermark: the newest event time less the disorder bound, or what
        ``advance`` set, whichever is higher."""
        behind = None if self._clock is None else self._clock - self.out_of_orderness
        if behind is None or self._advanced is None:
            return self._advanced if behind is None else behind
        return max(behind, self._advanced)

    def _advance(self, wall_clock_ms: int) -> bool:
        """Moves the rules' watermark for ``advance(wall_clock_ms)`` (``_FLUSH``: closes every
        window); False when that changes nothing (then it is not logged)."""
        if self.rules is None and self.feature_rules is None:
            return False
        if self.flushed:
            return False
        if wall_clock_ms == _FLUSH:
            for rule_set in (self.rules, self.feature_rules):
                if rule_set is not None:
                    rule_set.flush()
            self.flushed = True
            return True
        target = wall_clock_ms - self.out_of_orderness
        wm = self._watermark()
        if wm is not None and target <= wm:
            return False
        for rule_set in (self.rules, self.feature_rules):
            if rule_set is not None:
                rule_set.advance_to(target)
        self._advanced = target
        return True


def _no_scores() -> Columns:
    return {
        "row": np.empty(0, np.int64),
        "txn_id": np.empty(0, np.int64),
        "card_id": np.empty(0, np.int64),
        "score": np.empty(0, np.float64),
        "decision": np.empty(0, np.int8),
    }


def _has(batch: Mapping[str, Any] | Any, name: str) -> bool:
    if hasattr(batch, "schema") and hasattr(batch, "column"):
        return name in list(batch.schema.names)
    return name in batch


__all__ = ["FEATURE_COLUMNS", "INPUT_NAMES", "SCORE_COLUMNS", "DetectorColumns", "FraudDetector"]
