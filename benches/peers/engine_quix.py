"""Quix Streams: the Kafka variant, against the project's broker (``scripts/kafka up``).

The parent (run.py) loads the CSV into a fresh one-partition topic beforehand, as the project's
JSON transaction messages (``fraudstream.kafka.schema.encode_transactions``; key = card id),
followed by one end-of-input marker (card -1) timed 10 minutes after the last event: Quix
Streams has no end of input, so the marker's event time closes every remaining window (as
fraudstream's ``flush()`` does), and the app stops once the marker has been processed.

- ``timestamp_extractor`` = the message's ``event_time``; ``hopping_window(5 min, 1 min,
  grace_ms=5 s)`` with ``.agg(count=Count(), total=Sum("amount"), countries=<distinct>)`` and
  ``.final(closing_strategy="partition")``: windows close on the partition's stream time, like
  a single global watermark (the default "key" strategy closes a card's windows only when that
  card sends a later event).
- Quix closes a window when ``stream time - grace >= end`` (Flink/fraudstream: ``>= end - 1``)
  and judges lateness after taking the event's own timestamp into the stream time.
- State in RocksDB in a temporary dir; changelog topics off (fraudstream's in-process rows keep
  no changelog either); at-least-once; commit interval 5 s (the default).

startup_s: imports, Application set-up, consumer group join and partition assignment (until
the first message is processed). processing_s: first message to the last window result after the
marker (the app then stops after ``--idle-stop`` seconds without new messages, not counted).
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DISORDER_MS,
    MIN_COUNT,
    MIN_COUNTRIES,
    SIZE_MS,
    SLIDE_MS,
    parse_args,
    write_result,
)

END_MARKER_CARD = -1


def main() -> None:
    args = parse_args(
        __doc__ or "",
        [
            ("--bootstrap", {"required": True}),
            ("--topic", {"required": True}),
            ("--idle-stop", {"type": float, "default": 5.0}),
        ],
    )
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum
    from quixstreams.dataframe.windows.aggregations import Aggregator

    class CountDistinct(Aggregator):
        """COUNT(DISTINCT column): the distinct values as a list (JSON-serializable state)."""

        def initialize(self) -> list[Any]:
            return []

        def agg(self, old: list[Any], new: Any, timestamp: int) -> list[Any]:
            v = new.get(self.column)
            if v not in old:
                old = [*old, v]
            return old

        def result(self, value: list[Any]) -> int:
            return len(value)

    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"peers-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=False,
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )
    topic = app.topic(
        args.topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ts_type: value["event_time"],
    )
    marks: dict[str, Any] = {"first": None, "wall_first": None, "end": None, "events": 0, "alerts": 0}
    out = open(args.alerts, "w")  # noqa: SIM115 - closed after app.run()

    def on_message(value: dict[str, Any]) -> None:
        if marks["first"] is None:
            marks["first"] = time.perf_counter()
            marks["wall_first"] = time.time()
        if value["card_id"] == END_MARKER_CARD:
            marks["end"] = time.perf_counter()
        else:
            marks["events"] += 1

    def write_alert(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> None:
        if value["n"] >= MIN_COUNT and value["countries"] >= MIN_COUNTRIES:
            out.write(
                f"{key},{value['start']},{value['end']},{value['n']},{value['countries']},{value['total']!r}\n"
            )
            marks["alerts"] += 1
        marks["last"] = time.perf_counter()

    sdf = app.dataframe(topic)
    sdf = sdf.update(on_message)
    windows = (
        sdf.hopping_window(duration_ms=SIZE_MS, step_ms=SLIDE_MS, grace_ms=DISORDER_MS)
        .agg(n=Count(), total=Sum("amount"), countries=CountDistinct("country"))
        .final(closing_strategy="partition")
    )
    windows.update(write_alert, metadata=True)
    # Stops once nothing new arrived for --idle-stop seconds; the end of processing is when the
    # marker's window results were written (the last window output after the marker).
    app.run(timeout=args.idle_stop)
    out.close()
    if marks["first"] is None or marks["end"] is None:
        raise SystemExit(f"the end-of-input marker was not consumed ({marks['events']} events)")
    done = max(marks["end"], marks.get("last") or 0.0)
    write_result(
        args,
        version=version("quixstreams"),
        events=marks["events"],
        processing_started=marks["wall_first"],
        processing_s=done - marks["first"],
        alerts=marks["alerts"],
        note="hopping_window(5m, 1m, grace 5 s).agg(...).final(closing_strategy='partition'), "
        "1 partition, RocksDB state, no changelog, at-least-once",
    )


if __name__ == "__main__":
    main()
