"""A naive, obviously-correct reference of the window semantics of ``docs/semantics.md``.

The oracle favours clarity over speed. It keeps the raw events of every live window and
recomputes aggregates from them; it never uses panes, timers or accumulators, so it shares no
idea (and no bug) with the Rust engine beyond the contract itself.

Model (each rule cites the contract):

- Tumbling / hopping: one :class:`Window` object per ``(key, window start)``; an event at ``t``
  belongs to every ``[s, s + size)`` with ``s = offset + k * slide`` and ``s <= t < s + size``.
- Sessions: per key a list of :class:`Window` objects (sessions) with their raw events; an event
  opens ``[t, t + gap)`` and merges with every session it overlaps or touches.
- Watermark: per partition ``max event time - out_of_orderness`` (``-inf`` before the first
  event), combined by minimum over partitions that are not idle; it never moves backwards.
- Per event: judge the event against the watermark *before* it, add it, emit the rows it
  causes, then update the watermark and fire every due window in order of window end.
- A window fires when ``watermark >= end - 1`` and is dropped when
  ``watermark >= end - 1 + allowed_lateness``.

Interpretations of points the contract leaves open (documented so a disagreement with the
engine can be judged):

- Idleness: a partition's processing-time clock starts at its last event's ``now_ms``; a
  partition that never sent starts counting at the first ``now_ms`` the oracle is given (by
  :meth:`Oracle.tick` or a :meth:`Oracle.process` call with ``now_ms``). Idleness is checked at
  the start of each ``process(now_ms=...)`` call and on ``tick`` (never mid-batch).
- A session made by merging keeps the flags of its parts: it was "emitted before" if any part
  was, and has "fired early on the predicate" if any part had.
- A session that already fired and is reopened by a merge (its new end is beyond the
  watermark) is an open window again, so early firing applies to it
  ("windows not yet fired, i.e. ``end - 1 > watermark``").

Usage mirrors :class:`fraudstream.WindowedAggregation`::

    oracle = Oracle(key="card", time="ts", window=tumbling(10),
                    aggregations={"n": "count"}, early_fire=lambda a: a["n"] >= 3)
    rows, late = oracle.process({"card": [1, 1], "ts": [0, 4]})
    rows, late = oracle.flush()

Rows are dicts ``{"key", "window_start", "window_end", "kind", <aggregation name>...}`` exactly
like :meth:`fraudstream.WindowOutput.rows`; ``late`` are row numbers into the call's input.
After each call, :attr:`Oracle.last_groups` holds the rows grouped by cause and window end (the
order the contract fixes) and :attr:`Oracle.last_triggers` the input row that emitted each row
(like ``WindowOutput.trigger_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FINAL, UPDATE, EARLY = 0, 1, 2
"""The ``kind`` column (same numbers as :class:`fraudstream.EmitKind`)."""

Row = dict[str, Any]
Predicate = Callable[[dict[str, Any]], bool]

_FUNCTIONS = ("count", "sum", "min", "max", "mean", "count_distinct", "first", "last")


@dataclass
class Event:
    """One accepted event: its time, global arrival number and value columns."""

    time: int
    arrival: int
    values: dict[str, Any]


@dataclass
class Window:
    """A live window (tumbling/hopping) or session of one key, with its raw events."""

    key: int
    start: int
    end: int
    events: list[Event] = field(default_factory=list)
    emitted: bool = False
    """A final or update row was emitted for it (it "emitted before")."""
    fired: bool = False
    """The final/update row due at the current ``end`` has been emitted."""
    triggered: bool = False
    """Early firing on the predicate happened."""


@dataclass
class _Partition:
    max_time: float = -math.inf
    last_active: int | None = None
    idle: bool = False


class Oracle:
    """Reference implementation of keyed event-time windows (see the module docstring).

    Args mirror :class:`fraudstream.WindowedAggregation`; ``window`` is any object with the
    attributes of ``tumbling()`` (size, offset), ``hopping()`` (size, slide, offset) or
    ``session()`` (gap); ``early_fire`` is ``None``, ``"on_update"`` or a Python callable
    taking the aggregate dict (e.g. ``lambda a: a["countries"] >= 3 and a["n"] >= 5``).
    """

    def __init__(
        self,
        *,
        window: Any,
        aggregations: Mapping[str, str | tuple[str, str]],
        key: str = "key",
        time: str = "time",
        partition: str | None = None,
        out_of_orderness: int = 0,
        allowed_lateness: int = 0,
        early_fire: str | Predicate | None = None,
        partitions: int = 1,
        idle_timeout: int | None = None,
    ) -> None:
        if hasattr(window, "gap"):
            self.kind = "session"
            self.gap = int(window.gap)
        elif hasattr(window, "slide"):
            self.kind = "hopping"
            self.size, self.slide, self.offset = int(window.size), int(window.slide), int(window.offset)
        else:
            self.kind = "tumbling"
            self.size, self.offset = int(window.size), int(window.offset)
            self.slide = self.size
        self.specs: list[tuple[str, str, str | None]] = []
        for name, spec in aggregations.items():
            fn, col = (spec, None) if isinstance(spec, str) else spec
            assert fn in _FUNCTIONS, fn
            self.specs.append((name, fn, col))
        self.key, self.time, self.partition = key, time, partition
        self.delay = out_of_orderness
        self.lateness = allowed_lateness
        assert early_fire is None or early_fire == "on_update" or callable(early_fire)
        self.early = early_fire
        self.idle_timeout = idle_timeout
        self.parts = [_Partition() for _ in range(partitions)]
        self.wm: float = -math.inf
        self.windows: dict[tuple[int, int], Window] = {}  # tumbling/hopping: (key, start)
        self.sessions: dict[int, list[Window]] = {}  # sessions: key -> its sessions
        self.arrivals = 0
        self.counters = {"events": 0, "late": 0, "emitted": 0, "evicted": 0}  # no cap: never evicts
        self.last_groups: list[list[Row]] = []
        """Rows of the last call in groups whose order is fixed by the contract: each group is
        the rows of one cause (one event, or one watermark advance) with one window end; the
        order *inside* a group (keys sharing a window end) is not checked."""
        self.last_group_triggers: list[int] = []
        """For each group of :attr:`last_groups`, the input row (of the last call) whose
        processing emitted it, or -1 for ``advance_to``, ``tick``, ``flush`` and the idleness
        check at the start of ``process(now_ms=...)``."""
        self._trigger = -1

    # ------------------------------------------------------------------ public API

    @property
    def watermark(self) -> int | None:
        """The combined watermark, None before it is finite."""
        return int(self.wm) if math.isfinite(self.wm) else None

    @property
    def idle_partitions(self) -> list[int]:
        return [i for i, p in enumerate(self.parts) if p.idle]

    def process(
        self,
        columns: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        now_ms: int | None = None,
    ) -> tuple[list[Row], list[int]]:
        """Processes a batch, event by event: a mapping of columns (as the engine takes) or a
        list of events as dicts. Returns (rows, late row numbers)."""
        if not isinstance(columns, Mapping):
            events = list(columns)
            names = {self.key, self.time, *(c for _, _, c in self.specs if c)}
            if self.partition:
                names.add(self.partition)
            columns = {n: [e[n] for e in events] for n in names}
        self._start_call()
        if now_ms is not None:
            self._check_idleness(now_ms)
        keys = list(columns[self.key])
        times = list(columns[self.time])
        parts = list(columns[self.partition]) if self.partition else [0] * len(keys)
        late: list[int] = []
        for row in range(len(keys)):
            self._trigger = row
            values = {col: columns[col][row] for _, _, col in self.specs if col is not None}
            values = {c: (v.item() if hasattr(v, "item") else v) for c, v in values.items()}
            event = Event(int(times[row]), self.arrivals, values)
            self.arrivals += 1
            wm_before = self.wm
            if self.kind == "session":
                accepted = self._session_event(int(keys[row]), event, wm_before)
            else:
                accepted = self._sliding_event(int(keys[row]), event, wm_before)
            if accepted:
                self.counters["events"] += 1
            else:
                late.append(row)
                self.counters["late"] += 1
            self._observe(int(parts[row]), event.time, now_ms)
        self._trigger = -1
        return self._rows(), late

    def advance_to(self, t: int) -> tuple[list[Row], list[int]]:
        """Raises the watermark to at least ``t``."""
        self._start_call()
        self._raise_watermark(t)
        return self._rows(), []

    def tick(self, now_ms: int) -> tuple[list[Row], list[int]]:
        """Checks partition idleness at processing time ``now_ms``."""
        self._start_call()
        self._check_idleness(now_ms)
        return self._rows(), []

    def flush(self) -> tuple[list[Row], list[int]]:
        """End of input: the watermark jumps to +infinity."""
        self._start_call()
        self._raise_watermark(math.inf)
        return self._rows(), []

    def state_size(self) -> dict[str, int]:
        """Keys with live windows and live windows (sessions)."""
        if self.kind == "session":
            live = {k: s for k, s in self.sessions.items() if s}
            return {"keys": len(live), "windows": sum(len(s) for s in live.values())}
        return {"keys": len({k for k, _ in self.windows}), "windows": len(self.windows)}

    # ------------------------------------------------------------------ aggregates

    def aggregate(self, events: list[Event]) -> dict[str, Any]:
        """Every aggregation, computed from the raw events."""
        out: dict[str, Any] = {}
        for name, fn, col in self.specs:
            if fn == "count" or col is None:
                out[name] = len(events)
                continue
            values = [e.values[col] for e in events]
            if fn == "sum":
                out[name] = float(math.fsum(values))
            elif fn == "min":
                out[name] = float(min(values))
            elif fn == "max":
                out[name] = float(max(values))
            elif fn == "mean":
                out[name] = math.fsum(values) / len(values)
            elif fn == "count_distinct":
                out[name] = len(set(values))  # Python folds -0.0 into 0.0 too
            elif fn == "first":  # earliest time; ties: earlier arrival
                out[name] = float(min(events, key=lambda e: (e.time, e.arrival)).values[col])
            elif fn == "last":  # latest time; ties: later arrival
                out[name] = float(max(events, key=lambda e: (e.time, e.arrival)).values[col])
        return out

    def _row(self, w: Window, kind: int) -> Row:
        return {
            "key": w.key,
            "window_start": w.start,
            "window_end": w.end,
            "kind": kind,
            **self.aggregate(w.events),
        }

    def _emit(self, group: list[Row], w: Window, kind: int) -> None:
        group.append(self._row(w, kind))
        self.counters["emitted"] += 1

    @property
    def last_triggers(self) -> list[int]:
        """For each row of the last call, the input row that emitted it (-1: none)."""
        return [t for g, t in zip(self.last_groups, self.last_group_triggers, strict=True) for _ in g]

    def _start_call(self) -> None:
        self.last_groups, self.last_group_triggers, self._trigger = [], [], -1

    def _rows(self) -> list[Row]:
        return [row for group in self.last_groups for row in group]

    def _push_group(self, rows: list[Row]) -> None:
        """Records the rows of one cause (in increasing window end) as per-end groups."""
        for i, row in enumerate(rows):
            if i > 0 and rows[i - 1]["window_end"] == row["window_end"]:
                self.last_groups[-1].append(row)
            else:
                self.last_groups.append([row])
                self.last_group_triggers.append(self._trigger)

    # ------------------------------------------------------------------ events

    def _window_starts(self, t: int) -> list[int]:
        """Starts of every window holding ``t``, increasing."""
        s = self.offset + (t - self.offset) // self.slide * self.slide  # latest start <= t
        starts = []
        while s + self.size > t:
            starts.append(s)
            s -= self.slide
        return sorted(starts)

    def _after_add(self, w: Window, wm: float, rows: list[Row]) -> None:
        """Rows caused by adding an event to ``w`` (``wm`` is the watermark before it)."""
        if w.end - 1 <= wm:
            # The window already fired: emit it again at once.
            self._emit(rows, w, UPDATE if w.emitted else FINAL)
            w.emitted = w.fired = True
            return
        w.fired = False  # open (or reopened by a session merge)
        if self.early == "on_update":
            self._emit(rows, w, EARLY)
        elif callable(self.early) and not w.triggered and self.early(self.aggregate(w.events)):
            w.triggered = True
            self._emit(rows, w, EARLY)

    def _sliding_event(self, key: int, event: Event, wm: float) -> bool:
        starts = self._window_starts(event.time)
        live = [s for s in starts if not (s + self.size - 1 + self.lateness <= wm)]
        if not live:
            return False  # late for all its windows: side output, no state change
        rows: list[Row] = []
        for s in live:  # increasing window end
            w = self.windows.setdefault((key, s), Window(key, s, s + self.size))
            w.events.append(event)
            self._after_add(w, wm, rows)
        self._push_group(rows)
        return True

    def _session_event(self, key: int, event: Event, wm: float) -> bool:
        sessions = self.sessions.setdefault(key, [])
        merged = Window(key, event.time, event.time + self.gap, [event])
        touching = [s for s in sessions if s.start <= merged.end and s.end >= merged.start]
        if not touching and merged.end - 1 + self.lateness <= wm:
            if not sessions:
                del self.sessions[key]
            return False
        # Merge until no live session overlaps or touches the merged one.
        while touching:
            for s in touching:
                sessions.remove(s)
                merged.start = min(merged.start, s.start)
                merged.end = max(merged.end, s.end)
                merged.events = s.events + merged.events
                merged.emitted |= s.emitted
                merged.triggered |= s.triggered
            touching = [s for s in sessions if s.start <= merged.end and s.end >= merged.start]
        merged.events.sort(key=lambda e: e.arrival)
        sessions.append(merged)
        rows: list[Row] = []
        self._after_add(merged, wm, rows)
        self._push_group(rows)
        return True

    # ------------------------------------------------------------------ watermark

    def _all_windows(self) -> list[Window]:
        if self.kind == "session":
            return [s for ss in self.sessions.values() for s in ss]
        return list(self.windows.values())

    def _combined(self) -> float | None:
        active = [p.max_time - self.delay for p in self.parts if not p.idle]
        return min(active) if active else None

    def _observe(self, p: int, t: int, now_ms: int | None) -> None:
        part = self.parts[p]
        if now_ms is not None:
            part.last_active = now_ms
        part.idle = False
        part.max_time = max(part.max_time, t)
        combined = self._combined()
        if combined is not None:
            self._raise_watermark(combined)

    def _check_idleness(self, now_ms: int) -> None:
        if self.idle_timeout is None:
            return
        for part in self.parts:
            if part.last_active is None:
                part.last_active = now_ms
            elif now_ms - part.last_active > self.idle_timeout:
                part.idle = True
        combined = self._combined()
        if combined is not None:
            self._raise_watermark(combined)

    def _raise_watermark(self, t: float) -> None:
        if t <= self.wm:
            return
        self.wm = t
        due = [w for w in self._all_windows() if not w.fired and w.end - 1 <= self.wm]
        rows: list[Row] = []
        for w in sorted(due, key=lambda w: (w.end, w.key)):
            self._emit(rows, w, UPDATE if w.emitted else FINAL)
            w.emitted = w.fired = True
        self._push_group(rows)
        # Drop the state of windows past their allowed lateness.
        for k, w in list(self.windows.items()):
            if w.end - 1 + self.lateness <= self.wm:
                del self.windows[k]
        for key, ss in list(self.sessions.items()):
            ss[:] = [s for s in ss if not (s.end - 1 + self.lateness <= self.wm)]
            if not ss:
                del self.sessions[key]
