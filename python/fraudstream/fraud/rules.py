"""Alert rules declared as data, fired by early firing of :class:`~fraudstream.WindowedAggregation`.

A :class:`Rule` is a hopping window, the aggregates it keeps per card and a predicate over
them (evaluated in Rust); it fires the moment the predicate first holds for an open window
(``early_fire``), so detection delay is the time to process the triggering transaction. A
:class:`RuleSet` runs its rules side by side and is a processor
(:class:`fraudstream.processor.Processor`): ``process`` returns the alerts kept by one
:class:`fraudstream.alerts.Cooldown` over every rule (one alert per card per incident; the
others are counted as ``suppressed``), ``advance``/``flush`` close windows, and its state
(every rule's windows and the cool-down) has snapshots and real deltas for a changelog.

Invariants: outputs and state depend only on the sequence of rows given, never on how it is
cut into batches (the window engine's watermark advances after every event; candidates reach
the cool-down in the order of their triggering rows, rules in their declared order for one
row); a bad batch raises before any rule sees it.

>>> import numpy as np
>>> rules = RuleSet(default_rules(horizons=True), cooldown="24h")
>>> t0 = 1_700_000_000_000
>>> out = rules.process({
...     "card": np.full(5, 42), "ts": t0 + np.arange(5) * 30_000,
...     "amount": np.array([9.99, 12.5, 7.25, 30.0, 4.1]), "country": np.array([250, 276, 724, 250, 380]),
... })
>>> [(a.card_id, a.rule, a.trigger_row) for a in out.alerts]
[(42, 'velocity_5m', 4)]
>>> print(out.alerts[0].reason)
velocity_5m: 5 transactions in 4 countries within 5 min (total 63.84)

Rules can come from TOML (``RuleSet.from_toml``)::

    [[rules]]
    name = "spread_6h"
    size = "6h"
    slide = "15m"
    condition = "n >= 15 and countries >= 4"
    reason = "{n} transactions in {countries} countries within 6 h"
    [rules.aggregations]
    n = "count"
    countries = ["count_distinct", "country"]
"""

from __future__ import annotations

import hashlib
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream._columns import get_column, int_column, value_column
from fraudstream.alerts import Alert, Cooldown
from fraudstream.errors import ConfigError, InvalidBatchError, SnapshotError
from fraudstream.pieces import Pieces, join
from fraudstream.processor import ProcessorOutput, pack, pack_pieces, snapshot_pieces, unpack
from fraudstream.windows import (
    AggregationSpec,
    Duration,
    EmitKind,
    Hopping,
    WindowedAggregation,
    WindowOutput,
    hopping,
    to_millis,
)

IntArray = npt.NDArray[np.int64]
Columns = dict[str, np.ndarray[Any, Any]]


def _human(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


@dataclass(frozen=True)
class Rule:
    """An alert rule: per card, a hopping window, its aggregates and a predicate over them.

    ``reason`` is a ``str.format`` template over the aggregate names plus ``{window}``
    (e.g. ``"6 h"``), ``{card}`` and ``{rule}``.
    """

    name: str
    window: Hopping
    aggregations: Mapping[str, AggregationSpec]
    condition: str
    reason: str

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Rule:
        """A rule from a mapping (a TOML table): name, size, slide, aggregations (name ->
        ``"count"`` or ``[function, column]``), condition, reason."""
        try:
            aggs: dict[str, AggregationSpec] = {}
            for key, spec in dict(doc["aggregations"]).items():
                aggs[str(key)] = spec if isinstance(spec, str) else (str(spec[0]), str(spec[1]))
            return cls(
                name=str(doc["name"]),
                window=hopping(doc["size"], doc.get("slide", doc["size"])),
                aggregations=aggs,
                condition=str(doc["condition"]),
                reason=str(doc.get("reason", doc["condition"])),
            )
        except (KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"rule {dict(doc).get('name', '?')!r}: missing or malformed field {e}") from e


def default_rules(*, habit_column: str | None = None, horizons: bool = False) -> list[Rule]:
    """The rules the default detector runs beside its model: the design's velocity rule.

    - ``velocity_5m``: HOP(5 min, 1 min), COUNT(DISTINCT country) >= 3 and COUNT(*) >= 5;
    - with ``horizons`` (a rules-only detector, or a rule set of its own), the multi-horizon
      rules for slow incidents:

      - ``burst_1h``: HOP(1 h, 5 min), 8 transactions in 3 countries;
      - ``spread_6h``: HOP(6 h, 15 min), 15 transactions in 4 countries (the story: 23 small
        transactions in 4 countries in 6 hours);
      - ``spread_24h``: HOP(24 h, 1 h), 25 transactions in 4 countries;
    - with ``habit_column`` (a per-transaction amount over the card's usual amount, such as
      the feature ``CUSTOMER_ID_AMOUNT_RATIO``): ``spend_vs_habit_{1h,6h,24h}``, the summed
      ratio reaching 8, 12 and 20 usual transactions' worth.

    Beside the default model the horizon rules are model inputs instead (the indicators
    ``CARD_SPREAD_*`` of :mod:`fraudstream.fraud.derived`, over sliding windows): as separate
    alerts they doubled the false positives of the scenario evaluation and caught nothing the
    model did not (``docs/fraud.md``).
    """
    n: AggregationSpec = "count"
    countries: AggregationSpec = ("count_distinct", "country")
    total: AggregationSpec = ("sum", "amount")
    rules = [
        Rule(
            "velocity_5m",
            hopping("5m", "1m"),
            {"n": n, "countries": countries, "total": total},
            "countries >= 3 and n >= 5",
            "{rule}: {n} transactions in {countries} countries within {window} (total {total:.2f})",
        )
    ]
    for name, size, slide, count, spread in (
        ("burst_1h", "1h", "5m", 8, 3),
        ("spread_6h", "6h", "15m", 15, 4),
        ("spread_24h", "24h", "1h", 25, 4),
    ):
        if not horizons:
            break
        rules.append(
            Rule(
                name,
                hopping(size, slide),
                {"n": n, "countries": countries, "total": total},
                f"n >= {count} and countries >= {spread}",
                "{rule}: {n} transactions in {countries} countries within {window} (total {total:.2f})",
            )
        )
    if habit_column is not None:
        for size, slide, worth in (("1h", "5m", 8), ("6h", "15m", 12), ("24h", "1h", 20)):
            rules.append(
                Rule(
                    f"spend_vs_habit_{size}",
                    hopping(size, slide),
                    {"n": n, "habit": ("sum", habit_column), "total": total},
                    f"habit >= {worth}",
                    "{rule}: {n} transactions worth {habit:.1f} times the card's usual amount "
                    "within {window} (total {total:.2f})",
                )
            )
    return rules


@dataclass
class Candidates:
    """The rules' firings of one batch, before any cool-down, in the order of their
    triggering rows (rules in their declared order for one row)."""

    trigger: IntArray
    """Input row whose processing made the rule fire."""
    rule: IntArray
    """Index of the rule (``RuleSet.rules``)."""
    card: IntArray
    time: IntArray
    """Event time of the triggering row."""
    index: IntArray
    """Row of the firing in ``outputs[rule]``."""
    outputs: dict[int, WindowOutput]
    """Per rule that fired, its early rows."""

    def __len__(self) -> int:
        return len(self.trigger)


_MAGIC, _FORMAT = b"FSRS", 1
_HEADER = struct.Struct("<4sH8sI")


class RuleSet:
    """Runs rules over card transactions and raises one alert per card per incident.

    Args:
        rules: the rules (default: ``default_rules(horizons=True)``; see :meth:`from_toml`).
        card, time: key and event-time columns; the rules' aggregations name the others.
        txn_id: the transaction id column, for ``Alert.trigger_txn_id``; None: ``"txn_id"``
            when the batch has it, else the triggering row's index in the batch.
        cooldown: one alert per card per incident: a candidate alert (any rule) within this
            much event time of the card's kept alert is suppressed (:class:`~fraudstream.alerts.Cooldown`).
        out_of_orderness: the watermark delay of every rule's windows.
        wall_clock_time: event times are wall-clock times (live traffic): ``advance(now)``
            moves the windows' watermark to ``now - out_of_orderness``, closing the windows of
            quiet cards. False (replays of recorded or synthetic time): ``advance`` does nothing.
        track_changes: record the windows' changes for :meth:`changes` (a processor inside
            another that logs its own changes, such as the detector, turns it off).

    Outputs of :meth:`process`: ``alerts`` (:class:`~fraudstream.alerts.Alert`, in the order
    of their triggering rows), ``late_rows`` (rows too late for every rule's windows) and
    ``suppressed``. The rules' windows close silently (``final_rows=False``: no final rows are
    built, closing only frees state).
    """

    def __init__(
        self,
        rules: Sequence[Rule] | None = None,
        *,
        card: str = "card",
        time: str = "ts",
        txn_id: str | None = None,
        cooldown: Duration = "24h",
        out_of_orderness: Duration = "5s",
        wall_clock_time: bool = True,
        track_changes: bool = True,
    ) -> None:
        self.rules = list(default_rules(horizons=True) if rules is None else rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"rule names must be unique, got {names}")
        self.card, self.time, self.txn_id = card, time, txn_id
        self.cooldown = to_millis(cooldown, "cooldown")
        """The cool-down, ms."""
        self.out_of_orderness = to_millis(out_of_orderness, "out_of_orderness")
        self.wall_clock_time = wall_clock_time
        self.alert_cooldown = Cooldown(self.cooldown)
        self._engines = [
            WindowedAggregation(
                key=card,
                time=time,
                window=r.window,
                aggregations=r.aggregations,
                out_of_orderness=self.out_of_orderness,
                early_fire=r.condition,
                final_rows=False,  # only early rows raise alerts: closing builds no row
            )
            for r in self.rules
        ]
        self._values = sorted({c for e in self._engines for c in e.value_columns} - {card, time})
        self._tracking = track_changes
        for engine in self._engines:
            engine.track_changes(track_changes)
        description = [f"{self.out_of_orderness}|{self.cooldown}|{card}|{time}"]
        for r in self.rules:
            aggs = sorted((k, v if isinstance(v, str) else "/".join(v)) for k, v in r.aggregations.items())
            description.append(f"{r.name}|{r.window}|{aggs}|{r.condition}")
        self.fingerprint = hashlib.sha256("\n".join(description).encode()).digest()[:8]
        """8 bytes naming the configuration the state belongs to (rules, windows, cool-down)."""

    @classmethod
    def from_toml(cls, text: str, **kwargs: Any) -> RuleSet:
        """A rule set from TOML text with a ``[[rules]]`` array (see the module docstring);
        an optional top-level ``cooldown`` is used unless given as a keyword."""
        doc = tomllib.loads(text)
        if "cooldown" in doc:
            kwargs.setdefault("cooldown", doc["cooldown"])
        return cls([Rule.from_dict(r) for r in doc.get("rules", [])], **kwargs)

    @property
    def suppressed(self) -> int:
        """Candidate alerts dropped by the cool-down so far."""
        return self.alert_cooldown.suppressed

    @property
    def watermark(self) -> int | None:
        """The rules' watermark (they all see the same rows), None before any."""
        return self._engines[0].watermark if self._engines else None

    # -- the processor contract -----------------------------------------------------------

    def process(self, columns: Mapping[str, Any] | Any) -> ProcessorOutput:
        """Feeds a batch to every rule; returns the alerts kept by the cool-down.

        The batch is validated whole first (missing columns, wrong dtypes, non-finite values
        raise :class:`~fraudstream.errors.InvalidBatchError` or ``TypeError`` naming the column
        and row) and a bad batch changes nothing. Candidates (the early rows of every rule)
        are filtered by the cool-down with numpy; only the alerts kept become Python objects.
        """
        batch = self.validate(columns)
        ids = self._ids(columns)
        found, late = self.candidates(batch)
        before = self.alert_cooldown.suppressed
        keep = self.alert_cooldown.decide(found.card, found.time)
        alerts = [self.alert(found, k, ids) for k in np.flatnonzero(keep).tolist()]
        return ProcessorOutput(
            alerts=alerts, late_rows=late, suppressed=self.alert_cooldown.suppressed - before
        )

    def advance(self, wall_clock_ms: int) -> ProcessorOutput:
        """Idle time: with ``wall_clock_time``, every rule's watermark moves to at least
        ``wall_clock_ms - out_of_orderness`` (windows close, their state is freed; closing
        raises no alerts)."""
        if self.wall_clock_time:
            self.advance_to(int(wall_clock_ms) - self.out_of_orderness)
        return ProcessorOutput()

    def advance_to(self, watermark: int) -> None:
        """Raises every rule's watermark to at least ``watermark`` (closing raises no alerts)."""
        for engine in self._engines:
            engine.advance_to(watermark)

    def flush(self) -> ProcessorOutput:
        """End of input: closes every window (final rows raise no alerts)."""
        for engine in self._engines:
            engine.flush()
        return ProcessorOutput()

    def snapshot(self) -> bytes:
        """The whole state (every rule's windows, the cool-down) as versioned bytes."""
        return join(self.snapshot_pieces())

    def snapshot_pieces(self) -> Pieces:
        """:meth:`snapshot` in pieces, not joined (:mod:`fraudstream.pieces`)."""
        engines = (snapshot_pieces(e) for e in self._engines)
        return pack_pieces([self._header(), *engines, self.alert_cooldown.snapshot()])

    def changes(self) -> bytes:
        """The windows' changes since the last call (or restore), and the cool-down (small:
        the cards alerted within two periods) whole."""
        if not self._tracking:
            raise SnapshotError("this rule set does not track changes (track_changes=False)")
        return pack([self._header(), *(e.changes() for e in self._engines), self.alert_cooldown.snapshot()])

    def restore(self, data: bytes) -> None:
        """Replaces the state by a snapshot of a rule set of the same configuration."""
        parts = self._parts(data)
        for engine, part in zip(self._engines, parts, strict=False):
            engine.restore(part)
        self.alert_cooldown.restore(parts[-1])

    def apply_changes(self, data: bytes) -> None:
        """Applies :meth:`changes` bytes (in order, after the snapshot they follow)."""
        parts = self._parts(data)
        for engine, part in zip(self._engines, parts, strict=False):
            engine.apply_changes(part)
        self.alert_cooldown.restore(parts[-1])

    def state_size(self) -> dict[str, int]:
        """Keys with open windows (summed over the rules), open panes, approximate bytes."""
        sizes = [e.state_size() for e in self._engines]
        return {k: sum(s.get(k, 0) for s in sizes) for k in ("keys", "windows", "bytes")}

    def metrics(self) -> dict[str, Any]:
        """Counters: events, late (per rule), suppressed, the watermark."""
        counters = [e.counters() for e in self._engines]
        return {
            "events": counters[0]["events"] if counters else 0,
            "late_by_rule": {r.name: c["late"] for r, c in zip(self.rules, counters, strict=True)},
            "suppressed": self.suppressed,
            "watermark": self.watermark,
        }

    # -- the pieces, for processors composing a rule set (the fraud detector) ---------------

    def validate(self, columns: Mapping[str, Any] | Any) -> Columns:
        """The columns the rules read, converted and checked (whole finite numbers for card
        and time, finite values), without changing any state."""
        batch: Columns = {
            self.card: int_column(get_column(columns, self.card), self.card),
            self.time: int_column(get_column(columns, self.time), self.time),
        }
        for name in self._values:
            col = value_column(get_column(columns, name), name)
            if col.dtype == np.float64:
                bad = ~np.isfinite(col)
                if bad.any():
                    row = int(np.argmax(bad))
                    err = InvalidBatchError(f"column '{name}' row {row}: value {col[row]!r} is not finite")
                    err.column, err.row = name, row
                    raise err
            batch[name] = col
        n = len(batch[self.time])
        for name, col in batch.items():
            if len(col) != n:
                raise InvalidBatchError(f"column '{name}' has {len(col)} rows, expected {n}")
        return batch

    def candidates(
        self, batch: Columns, drop: tuple[IntArray, IntArray] | None = None
    ) -> tuple[Candidates, IntArray]:
        """Feeds a validated batch (:meth:`validate`) to every rule: their firings before any
        cool-down, and the rows too late for every rule's windows. ``drop=(rows, cards)``:
        every rule's windows of ``cards[i]`` are dropped before row ``rows[i]`` (the caller's
        cap on cards, see :meth:`fraudstream.WindowedAggregation.process`)."""
        outputs: dict[int, WindowOutput] = {}
        late: IntArray | None = None
        if drop is not None and not len(drop[0]):
            drop = None
        for order, engine in enumerate(self._engines):
            out = engine.process(batch, drop=drop)
            late = out.late_rows if late is None else np.intersect1d(late, out.late_rows)
            early = out["kind"] == EmitKind.EARLY
            if early.any():
                outputs[order] = out.select(early)
        late_rows = np.empty(0, np.int64) if late is None else late.astype(np.int64, copy=False)
        if not outputs:
            empty = np.empty(0, np.int64)
            return Candidates(empty, empty, empty, empty, empty, outputs), late_rows
        trigger = np.concatenate([o.trigger_rows for o in outputs.values()])
        rule = np.concatenate([np.full(len(o), i, np.int64) for i, o in outputs.items()])
        index = np.concatenate([np.arange(len(o), dtype=np.int64) for o in outputs.values()])
        card = np.concatenate([o["key"] for o in outputs.values()]).astype(np.int64, copy=False)
        by = np.lexsort((rule, trigger))
        trigger, rule, index, card = trigger[by], rule[by], index[by], card[by]
        found = Candidates(trigger, rule, card, batch[self.time][trigger], index, outputs)
        return found, late_rows

    def alert(self, found: Candidates, k: int, ids: IntArray | None) -> Alert:
        """The alert of candidate ``k``; ``ids``: the batch's transaction ids (None: row
        indices)."""
        order, i, row = int(found.rule[k]), int(found.index[k]), int(found.trigger[k])
        rule, out = self.rules[order], found.outputs[order]
        card = int(out["key"][i])
        figures = {name: out[name][i].item() for name in rule.aggregations}
        text = rule.reason.format(rule=rule.name, card=card, window=_human(rule.window.size), **figures)
        return Alert(
            card_id=card,
            rule=rule.name,
            reasons=(text,),
            event_time=int(found.time[k]),
            trigger_txn_id=int(ids[row]) if ids is not None else row,
            trigger_row=row,
            figures=figures,
            window=(int(out["window_start"][i]), int(out["window_end"][i])),
        )

    def _ids(self, columns: Mapping[str, Any] | Any) -> IntArray | None:
        name = self.txn_id
        if name is None:
            names = list(columns.schema.names) if hasattr(columns, "schema") else list(columns)
            name = "txn_id" if "txn_id" in names else None
        return None if name is None else int_column(get_column(columns, name), name)

    def _header(self) -> bytes:
        return _HEADER.pack(_MAGIC, _FORMAT, self.fingerprint, len(self.rules))

    def _parts(self, data: bytes) -> list[bytes]:
        try:  # the header is the first part, after its 8-byte length
            magic, version, fingerprint, count = _HEADER.unpack_from(data, 8)
        except struct.error:
            raise SnapshotError("not a rule set state (truncated header)") from None
        if magic != _MAGIC or version != _FORMAT:
            raise SnapshotError(
                f"not a rule set state of format {_FORMAT} (magic {magic!r}, version {version})"
            )
        if fingerprint != self.fingerprint or count != len(self.rules):
            raise SnapshotError(
                "rule set state belongs to other rules, windows or cool-down "
                f"(it has {count} rules; this set has {len(self.rules)}: {[r.name for r in self.rules]})"
            )
        return unpack(data, len(self.rules) + 2)[1:]
