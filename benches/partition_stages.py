"""Where one partition's processing time goes: the Kafka pipeline's partition task over the
benchmark's records in memory (no Kafka client), each stage timed by the wall clock.

The records are ``benches/kafka_ceiling.py``'s (100k cards, 10k transactions/s of event time),
cut into batches of ``--batch`` rows (a poll's share of one partition: ``consume_batch`` over 6
partitions). The stages are the task's and the detector's own methods, wrapped with a timer;
a stage's time includes the stages it calls (``detector`` holds ``features`` ... ``alerts``).
Printed: events/s of the whole task, then microseconds per event and the share of each stage.
Then the state's snapshot after the run as the changelog writes it, cut into frames (once a
partition's changes outgrow its last snapshot, on the loop's thread inside a commit): its size
and time, its parts timed alone, and a copy of as many bytes in the same run as the floor.

    python benches/partition_stages.py [--events 300000] [--batch 800]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka_ceiling import messages

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes import FakeMessage

import fraudstream.alerts as alerts_module
import fraudstream.fraud.detector as detector_module
import fraudstream.fraud.features as features_module
import fraudstream.fraud.model as model_module
import fraudstream.fraud.rules as rules_module
import fraudstream.kafka.task as task_module
from fraudstream.config import Config
from fraudstream.kafka.changelog import SNAPSHOT, frames
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.processors import processor_factory

STAGES: list[tuple[Any, str, str]] = [
    (task_module, "decode_batch", "decode"),
    (task_module.PartitionTask, "_duplicates", "dedup"),
    (detector_module.FraudDetector, "process", "detector"),
    (features_module.StreamingFeatures, "process_evicting", "features"),
    (rules_module.RuleSet, "candidates", "rule windows"),
    (model_module.Model, "score", "model"),
    (alerts_module.Cooldown, "decide", "cool-down"),
    (detector_module.FraudDetector, "_model_alert", "model alerts (reasons)"),
    (task_module.PartitionTask, "_publish", "output records"),
]


def timed(spent: Counter[str], label: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - began

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=800)
    args = ap.parse_args()
    keys, values, _ = messages(args.events, seed=1)
    now = int(time.time() * 1000)  # (message timestamps: the arrival the latency is counted from)
    msgs = [FakeMessage(v, i, k, now) for i, (k, v) in enumerate(zip(keys, values, strict=True))]
    config = Config().validate()
    task = task_module.PartitionTask(0, processor_factory(config, {})(), config)
    batches = [ConsumedBatch.of(msgs[i : i + args.batch]) for i in range(0, len(msgs), args.batch)]
    spent: Counter[str] = Counter()
    for owner, name, label in STAGES:
        setattr(owner, name, timed(spent, label, getattr(owner, name)))
    alerts = 0
    began = time.perf_counter()
    for batch in batches:
        alerts += len(task.process_batch(batch).alerts)
    seconds = time.perf_counter() - began
    n = args.events
    rate, cost = n / seconds, seconds / n * 1e6
    print(f"partition task: {rate:,.0f} events/s, {cost:.2f} us per event, {alerts:,} alerts")
    per_event = {label: spent[label] / n * 1e6 for _, _, label in STAGES}
    for label, us in per_event.items():
        print(f"  {label:<24} {us:6.2f} us per event  {100 * spent[label] / seconds:5.1f}%")
    snapshot = snapshot_figures(task)
    ms, copy_ms = snapshot["ms"], snapshot["copy_ms"]
    print(
        f"state snapshot: {snapshot['mb']:.1f} MB in {ms:.0f} ms ({snapshot['mb_per_s']:,.0f} MB/s), "
        f"{ms / copy_ms:.1f}x a copy of as many bytes ({copy_ms:.0f} ms); "
        + ", ".join(f"{part} {t:.0f} ms" for part, t in snapshot["parts_ms"].items())
    )
    print(
        json.dumps(
            {
                "events": n,
                "batch": args.batch,
                "events_per_s": round(n / seconds),
                "alerts": alerts,
                "us_per_event": {k: round(v, 3) for k, v in per_event.items()},
                "snapshot": snapshot,
            }
        )
    )


def best_ms(call: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    """The fastest of ``runs`` calls, ms, and the last call's result."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - began)
    return min(times) * 1000, out


def snapshot_figures(task: task_module.PartitionTask) -> dict[str, Any]:
    """The task's state snapshot as the changelog writes it (its pieces cut into frames): size,
    time, its parts' times alone, a copy's time of as many bytes."""

    def written() -> int:
        return sum(len(f) for f in frames(SNAPSHOT, 1, task.snapshot_pieces()))

    ms, size = best_ms(written)
    detector = task.processor
    parts = {
        "features": detector.features.snapshot_pieces,  # type: ignore[attr-defined]
        "rules": detector.rules.snapshot_pieces,  # type: ignore[attr-defined]
        "dedup": task._filter().snapshot_array,  # type: ignore[union-attr]
    }
    parts_ms = {name: best_ms(call)[0] for name, call in parts.items()}
    parts_ms["packing, checksums and frames"] = max(0.0, ms - sum(parts_ms.values()))
    buffer = bytearray(size)
    copy_ms = best_ms(lambda: bytes(buffer))[0]
    return {
        "mb": round(size / 1e6, 2),
        "ms": round(ms, 1),
        "mb_per_s": round(size / 1e3 / ms),
        "copy_ms": round(copy_ms, 1),
        "parts_ms": {k: round(v, 1) for k, v in parts_ms.items()},
    }


if __name__ == "__main__":
    main()
