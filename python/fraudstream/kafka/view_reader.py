"""``fraudstream view``: a view topic read back as a ``read_committed`` consumer sees it, the
latest row per key (what compaction keeps), optionally the input partitions' parts added up.

Reads every partition from its beginning to its end (the last stable offset), joins no
consumer group and commits nothing. The record layout is :mod:`fraudstream.views`'.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from fraudstream.config import Config
from fraudstream.errors import ConfigError, StreamError
from fraudstream.kafka.reader import committed_records
from fraudstream.views import combine, latest, view_key


def read_view(config: Config, topic: str | None = None) -> list[dict[str, Any]]:
    """The latest committed row of every key of the view topic (``kafka.view_topic`` unless
    ``topic``), ordered by window then key then partition."""
    topic = topic or config.kafka.view_topic
    if not topic:
        raise ConfigError("no view topic: set kafka.view_topic or pass --topic")
    pairs = []
    for _, _, value, _ in committed_records(config, topic):
        if value is None:
            continue
        try:
            row = json.loads(value)
            key = view_key(row["key"], row["window_start"], row["partition"])
        except (ValueError, KeyError, TypeError):
            raise StreamError(f"{topic} holds a record that is not a view row: {value[:80]!r}") from None
        pairs.append((key, value))
    rows = list(latest(pairs).values())
    return sorted(rows, key=lambda r: (r["window_start"], r["key"], r["partition"]))


def print_view(
    config: Config,
    topic: str | None = None,
    *,
    combined: bool = False,
    fmt: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Prints the view's latest rows (``combined``: added up over input partitions, with the
    ``[view]`` section's aggregations when it has them) as JSON lines or a table; returns how
    many rows it printed."""
    out = out or sys.stdout
    err = err or sys.stderr
    fmt = fmt or ("table" if out.isatty() else "json")
    rows: list[dict[str, Any]] = read_view(config, topic)
    if combined:
        try:
            rows = combine(rows, config.view.aggregations if config.view.key else None)
        except ValueError as exc:
            raise ConfigError(f"--combine: {exc}") from None
    if fmt == "table" and rows:
        names = list(rows[0])
        print("  ".join(f"{n:>19}" if n.startswith("window") else f"{n:>10}" for n in names), file=out)
        for r in rows:
            print("  ".join(_cell(n, r.get(n)) for n in names), file=out)
    elif fmt != "table":
        for r in rows:
            print(json.dumps(r, separators=(", ", ": ")), file=out)
    where = f"{topic or config.kafka.view_topic} at {config.kafka.bootstrap_servers}"
    what = "windows, input partitions added up" if combined else "rows, the latest per key"
    print(f"{len(rows):,} {what} in {where} (read_committed)", file=err)
    return len(rows)


def _cell(name: str, v: Any) -> str:
    if name.startswith("window") and isinstance(v, int):
        return f"{datetime.fromtimestamp(v / 1000, UTC):%Y-%m-%d %H:%M:%S}"
    if isinstance(v, float):
        return f"{v:>10.2f}"
    return f"{v!s:>10}"


__all__ = ["print_view", "read_view"]
