"""Views out: window results as records of a compacted Kafka topic, and reading them back.

Any window engine of a pipeline publishes its rows (``ProcessorOutput.rows``) to
``kafka.view_topic`` when it is set, in the same transaction as the alerts, the scored
transactions, the dead letters, the changelog and the offsets. The ``[view]`` section adds a
window engine of its own beside the processor (:func:`with_view`, a
:class:`~fraudstream.fanout.Fanout`): the design's materialized view,
``GROUP BY category, TUMBLE(event_time, 1 hour)`` with a count and a sum, is
``examples/category-view.toml``.

Record layout (documented in the README; one record per emitted row):

- key: ``b"<key>:<window_start>:<partition>"``, ASCII decimal integers: the group key, the
  window's start (epoch ms) and the input partition that computed the row. A window's FINAL
  row, its UPDATE rows (allowed lateness) and its EARLY rows share the key, so compaction
  keeps the latest: the corrected value.
- value: JSON ``{"key", "window_start", "window_end", "kind", "partition", <aggregates>}``
  with ``kind`` one of ``"final"``, ``"update"``, ``"early"``.
- the record goes to the view topic's partition of the same number as the input partition.

Invariant: a row is a *partial* aggregate of one input partition. The input is partitioned by
card, not by the view's key, so the rows of one (key, window) from several input partitions
add up to the whole: :func:`combine` does that for ``count``, ``sum``, ``min`` and ``max``
(``mean`` and ``count_distinct`` cannot be combined: a view that needs them whole reads an
input partitioned by its key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fraudstream.errors import ConfigError
from fraudstream.processor import Processor, WindowProcessor
from fraudstream.windows import (
    AggregationSpec,
    EmitKind,
    WindowedAggregation,
    WindowOutput,
    hopping,
    to_millis,
    tumbling,
)

if TYPE_CHECKING:
    from fraudstream.config import Config

KIND_NAMES = {EmitKind.FINAL: "final", EmitKind.UPDATE: "update", EmitKind.EARLY: "early"}
"""The ``kind`` of a view record, by :class:`~fraudstream.windows.EmitKind`."""
KEY_COLUMNS = ("card_id", "customer_id", "terminal_id", "currency", "country", "merchant", "category")
"""Decoded integer columns a view can group by (``fraudstream.kafka.schema``)."""
VALUE_COLUMNS = ("amount", *KEY_COLUMNS, "event_time")
"""Decoded columns an aggregation can read."""
COMBINABLE = frozenset({"count", "sum", "min", "max"})
"""Aggregations whose partial rows add up (:func:`combine`)."""
_AGGREGATION = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\))?\s*$")
_RESERVED = frozenset({"key", "window_start", "window_end", "kind", "partition"})

Record = tuple[bytes | None, bytes]


# ---------------------------------------------------------------------------------------------
# Rows -> records


def view_key(key: int, window_start: int, partition: int) -> bytes:
    """The Kafka key of a view row (see the module docstring)."""
    return f"{key}:{window_start}:{partition}".encode()


def view_records(rows: WindowOutput, partition: int) -> list[Record]:
    """One record per row of a window engine's output, keyed by key, window and partition."""
    if not len(rows):
        return []
    names = [c for c in rows.columns if c not in ("key", "window_start", "window_end", "kind")]
    values = [rows[n].tolist() for n in names]
    out: list[Record] = []
    for i, (key, start, end, kind) in enumerate(
        zip(
            rows["key"].tolist(),
            rows["window_start"].tolist(),
            rows["window_end"].tolist(),
            rows["kind"].tolist(),
            strict=True,
        )
    ):
        doc: dict[str, Any] = {
            "key": key,
            "window_start": start,
            "window_end": end,
            "kind": KIND_NAMES[EmitKind(kind)],
            "partition": partition,
        }
        for name, column in zip(names, values, strict=True):
            v = column[i]
            doc[name] = None if isinstance(v, float) and v != v else v  # NaN is not JSON
        out.append((view_key(key, start, partition), json.dumps(doc, separators=(",", ":")).encode()))
    return out


# ---------------------------------------------------------------------------------------------
# The [view] section -> a window engine beside the processor


def parse_aggregation(name: str, spec: str) -> AggregationSpec:
    """``"count"`` or ``"function(column)"`` (``"sum(amount)"``) as a window aggregation."""
    m = _AGGREGATION.match(spec)
    if m is None:
        raise ConfigError(f"view.aggregations.{name}: expected 'count' or 'function(column)', got {spec!r}")
    function, column = m.groups()
    if column is None:
        if function != "count":
            raise ConfigError(
                f"view.aggregations.{name}: {function!r} needs a column, e.g. '{function}(amount)'"
            )
        return "count"
    if column not in VALUE_COLUMNS:
        raise ConfigError(
            f"view.aggregations.{name}: column {column!r} is not a decoded column; "
            f"one of {', '.join(VALUE_COLUMNS)}"
        )
    return (function, column)


def make_view_engine(config: Config) -> WindowedAggregation:
    """The ``[view]`` section's window engine (raises :class:`ConfigError` naming the key)."""
    v = config.view
    if v.key not in KEY_COLUMNS:
        raise ConfigError(f"view.key must be one of {', '.join(KEY_COLUMNS)}, got {v.key!r}")
    if not v.aggregations:
        raise ConfigError("view.aggregations must name at least one aggregation")
    clash = sorted(set(v.aggregations) & _RESERVED)
    if clash:
        raise ConfigError(f"view.aggregations.{clash[0]}: the name is a field of every view record")
    aggregations = {name: parse_aggregation(name, spec) for name, spec in v.aggregations.items()}
    size = to_millis(v.size, "view.size")
    window = hopping(size, to_millis(v.slide, "view.slide")) if v.slide else tumbling(size)
    try:
        return WindowedAggregation(
            key=v.key,
            time="event_time",
            window=window,
            aggregations=aggregations,
            out_of_orderness=v.out_of_orderness,
            allowed_lateness=v.allowed_lateness,
            early_fire="on_update" if v.early else None,
        )
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"[view]: {exc}") from None


def view_processor(config: Config) -> WindowProcessor:
    """The ``[view]`` engine as a processor: its rows are the view; it raises no alert. Idle
    partitions close their windows by the wall clock (``kafka.idle_timeout_ms``), as the
    ``[rule]`` engine does."""
    return WindowProcessor(
        make_view_engine(config),
        idle_lag_ms=to_millis(config.view.out_of_orderness, "view.out_of_orderness"),
    )


def check_view(config: Config) -> None:
    """The ``[view]`` section and ``kafka.view_topic`` agree, and the engine can be built."""
    if not config.view.key:
        return
    if not config.kafka.view_topic:
        raise ConfigError(
            "view.key is set but kafka.view_topic is empty: the view would be computed and dropped"
        )
    make_view_engine(config)


def with_view(config: Config, factory: Callable[[], Processor]) -> Callable[[], Processor]:
    """``factory`` with the ``[view]`` engine beside its processor (a
    :class:`~fraudstream.fanout.Fanout` whose rows are the view's), or ``factory`` itself when
    ``view.key`` is empty."""
    if not config.view.key:
        return factory
    from fraudstream.fanout import Fanout

    check_view(config)
    return lambda: Fanout(factory(), view_processor(config), rows_from=1)


# ---------------------------------------------------------------------------------------------
# Reading a view back


def latest(values: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes, dict[str, Any]]:
    """The latest row per Kafka key, from ``(key, value)`` pairs in offset order: what the
    compacted topic keeps. A tombstone (None value) deletes its key."""
    rows: dict[bytes, dict[str, Any]] = {}
    for key, value in values:
        if key is None:
            continue
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(value)
    return rows


def combine(
    rows: Iterable[Mapping[str, Any]], aggregations: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The partial rows of every input partition added up per (key, window): counts and sums
    added, minima and maxima combined. ``aggregations`` (name -> function, e.g. the ``[view]``
    section's) says how; by default every aggregate is added, which is right for ``count`` and
    ``sum`` only. ``kind`` of a combined row is ``"update"`` when any part is one. Raises
    ValueError for an aggregation that cannot be combined."""
    functions: dict[str, str] = {}
    for name, spec in (aggregations or {}).items():
        m = _AGGREGATION.match(spec)
        function = m.group(1) if m else spec
        if function not in COMBINABLE:
            raise ValueError(f"{name} = {spec!r}: partial rows of {function!r} cannot be combined")
        functions[name] = function
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        at = (int(row["key"]), int(row["window_start"]))
        names = [n for n in row if n not in _RESERVED]
        have = out.get(at)
        if have is None:
            out[at] = {**{k: row[k] for k in ("key", "window_start", "window_end", "kind")},
                       "partitions": 1, **{n: row[n] for n in names}}  # fmt: skip
            continue
        have["partitions"] += 1
        if row["kind"] == "update":
            have["kind"] = "update"
        for n in names:
            function = functions.get(n, "sum")
            a, b = have.get(n), row[n]
            if a is None or b is None:
                have[n] = b if a is None else a
            elif function == "min":
                have[n] = min(a, b)
            elif function == "max":
                have[n] = max(a, b)
            else:
                have[n] = a + b
    return [out[k] for k in sorted(out)]


__all__ = [
    "COMBINABLE",
    "KEY_COLUMNS",
    "KIND_NAMES",
    "check_view",
    "combine",
    "latest",
    "make_view_engine",
    "parse_aggregation",
    "view_key",
    "view_processor",
    "view_records",
    "with_view",
]
