"""The design's materialized view (count and sum per category and hour) under test: an input
stream with late corrections and events too late for them, the oracle computed from the
produced transactions, and the pipeline's view records read back."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.config import Config, load_config
from fraudstream.generator import DEFAULT_START_MS, card_transactions
from fraudstream.kafka.schema import encode_transactions

HOUR = 3_600_000
START = (DEFAULT_START_MS // HOUR + 1) * HOUR
"""An hour boundary: the stream's first window."""
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "category-view.toml"
CLOSED_HOURS = 3
"""The main stream spans 3.5 hours: the windows of hours 0-2 close, hour 3 stays open."""


@dataclass
class ViewStream:
    """(card, message) pairs in the order to produce them, and what the view must hold."""

    records: list[tuple[int, bytes]]
    too_late: set[int] = field(default_factory=set)
    """txn_ids of events beyond the allowed lateness (the view never counts them)."""
    corrected: set[tuple[int, int]] = field(default_factory=set)
    """(category, window_start) of the windows late events correct (UPDATE rows)."""

    def oracle(self) -> dict[tuple[int, int], tuple[int, float]]:
        """(category, window_start) -> (count, sum of amounts) over the produced transactions,
        for the windows the main stream closes: obviously correct, from the JSON alone."""
        out: dict[tuple[int, int], list[Any]] = defaultdict(lambda: [0, 0.0])
        for _, value in self.records:
            t = json.loads(value)
            start = t["event_time"] // HOUR * HOUR
            if t["txn_id"] in self.too_late or start >= START + CLOSED_HOURS * HOUR:
                continue
            cell = out[(t["category"], start)]
            cell[0] += 1
            cell[1] += t["amount"]
        return {k: (int(v[0]), float(v[1])) for k, v in out.items()}


def category_stream(n: int, seed: int, updates: int = 150, too_late: int = 40) -> ViewStream:
    """``n`` generated transactions over 3.5 hours (disorder within the 5 s watermark bound),
    then ``updates`` events back in hour 2 (closed, within the hour of allowed lateness: UPDATE
    rows) and ``too_late`` in hour 0 (beyond it)."""
    rate = n / (3.5 * 3_600)
    main = card_transactions(
        n, cards=2_000, rate_per_s=rate, disorder_ms=5_000, start_ms=START + 5_000, seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    k = updates + too_late
    late = {
        "card": rng.choice(main["card"], k),
        "ts": np.concatenate(
            [START + 2 * HOUR + rng.integers(0, HOUR, updates), START + rng.integers(0, HOUR, too_late)]
        ),
        "amount": np.round(rng.gamma(2.0, 25.0, k), 2),
        "country": rng.integers(0, 30, k),
    }
    cols = {c: np.concatenate([main[c], late[c]]) for c in main}
    cols["txn_id"] = np.arange(n + k, dtype=np.int64)
    values = encode_transactions(cols)
    records = list(zip(cols["card"].tolist(), values, strict=True))
    stream = ViewStream(records, too_late=set(range(n + updates, n + k)))
    for value in values[n : n + updates]:
        t = json.loads(value)
        stream.corrected.add((t["category"], t["event_time"] // HOUR * HOUR))
    return stream


def example_config(bootstrap: str, topic: str, **kafka: Any) -> Config:
    """``examples/category-view.toml`` pointed at ``topic`` and its derived topics."""
    base = load_config(EXAMPLE, env={})
    names = {
        "bootstrap_servers": bootstrap,
        "input_topic": topic,
        "alerts_topic": f"{topic}-alerts",
        "scores_topic": f"{topic}-scored",
        "dead_letter_topic": f"{topic}-dlq",
        "changelog_topic": f"{topic}-changelog",
        "view_topic": f"{topic}-view",
        "group_id": f"{topic}-group",
        "session_timeout_ms": 2_000,
        "idle_timeout_ms": 0,  # no wall-clock ticks: the event times are of 2023
        **kafka,
    }
    for name, value in names.items():
        setattr(base.kafka, name, value)
    return base.validate()
