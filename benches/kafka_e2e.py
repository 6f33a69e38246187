"""Kafka end to end, against the project's broker (started when none is running).

0. The ceilings (``benches/kafka_ceiling.py``), over the same pre-loaded records: a bare
   confluent-kafka ``consume(5000)`` loop that only takes ``value()`` (the most any Python
   consumer can do on this machine) and a bare exactly-once copy loop (each value produced in a
   transaction, offsets committed every 100 ms). Every pipeline figure is also printed as a
   ratio of the bare consume loop (``ceiling_ratio``) and of the copy loop (``eos_copy_ratio``).
   A third ceiling is the processing alone: the pipeline's own partition tasks (decode, dedup,
   processor, output records) over the same records already in memory, no Kafka client in the
   timed part (``processor_alone_per_s``; the pipeline as a ratio of it: ``processor_ratio``).
   No Kafka loop can outrun it, so it says how much of the gap to the consume loop is the
   processor's and how much the Kafka path's.
1. Sustained throughput, exactly-once: N transactions pre-loaded into a 6-partition topic, then
   the pipeline (one instance, the default fraud detector unless ``--processor`` says otherwise)
   processes them; events/s from its first consume to its last commit.
2. Event-to-alert latency at fixed input rates: a paced producer sends transactions (with
   injected bursts that trigger the velocity rule); for each alert, latency = when a
   read_committed consumer could read it - when its triggering transaction was produced.
   p50 / p99 / p99.9 over the alerts of transactions sent after the first ``--warmup-seconds``
   (the pipeline's first transactions: first snapshots, first sends to each partition). The
   rates are ``--rates``; ``half`` is half the maximum sustainable rate, the exactly-once
   throughput measured in 1. Each rate's latency is split into its segments
   (``benches/kafka_trace.py``: delivery, process, to_commit, commit, visible).
3. The same throughput with at-least-once (no transactions), for comparison.
4. With ``--process-threads 1,2``: the exactly-once throughput with each ``kafka.process_threads``,
   alternated ``--pairs`` times over the same records.

    python benches/kafka_e2e.py [--events 1000000] [--latency-seconds 20] [--processor detector]
                                [--rates 10000,half,50000] [--warmup-seconds 2]
                                [--process-threads 1,2 --pairs 3]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from kafka_ceiling import broker, ceilings, loaded_topic, messages, new_topic, print_ceilings, reader
from kafka_trace import SEGMENTS, decompose

from fraudstream.config import Config, DetectorSection, KafkaSection
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.task import PartitionTask
from fraudstream.kafka.topics import ensure_topics

CHUNK = 200
"""The paced producer sends this many transactions per call (every 4 ms at 50k/s)."""
PROCESSOR = "detector"
"""The ``[detector] kind`` every run of this benchmark uses (``--processor``)."""


def config_for(bootstrap: str, topic: str, exactly_once: bool = True) -> Config:
    section = KafkaSection.for_topic(
        bootstrap,
        topic,
        exactly_once=exactly_once,
        consume_batch=10_000,
        commit_max_records=200_000,
        replication_factor=1,  # the project's broker is a single node
        min_insync_replicas=1,
    )
    return Config(kafka=section, detector=DetectorSection(kind=PROCESSOR)).validate()


def throughput(
    bootstrap: str, topic: str, n: int, exactly_once: bool, process_threads: int = 1, run: str = ""
) -> dict[str, Any]:
    cfg = config_for(bootstrap, topic, exactly_once)
    # every run reads the same input, each into outputs of its own
    mode = ("eos" if exactly_once else "alo") + (f"-t{process_threads}{run}" if run else "")
    k = cfg.kafka
    k.process_threads = process_threads
    k.group_id, k.alerts_topic, k.scores_topic, k.dead_letter_topic, k.changelog_topic = (
        f"{topic}-{s}-{mode}" for s in ("group", "alerts", "scored", "dlq", "changelog")
    )
    stats = KafkaPipeline(cfg.validate()).run(idle_exit_s=2.0)
    assert stats.consumed == n, stats.as_dict()
    return {
        "events_per_s": n / stats.processing_seconds,  # first record consumed -> last commit
        "alerts": stats.alerts,
        "scored": stats.scored,
        "commit_ms_p99": stats.as_dict().get("commit_ms_p99"),
    }


def compare_threads(bootstrap: str, topic: str, n: int, threads: str, pairs: int) -> dict[str, list[int]]:
    """Exactly-once events/s with each ``kafka.process_threads`` of ``threads`` (``1,2``), the
    settings alternated ``pairs`` times over the same records (a shared machine drifts)."""
    counts = [int(t) for t in threads.split(",") if t]
    runs: dict[str, list[int]] = {str(t): [] for t in counts}
    for pair in range(pairs if counts else 0):
        for t in counts:
            rate = throughput(bootstrap, topic, n, exactly_once=True, process_threads=t, run=f"-{pair}")
            runs[str(t)].append(round(rate["events_per_s"]))
            print(
                f"exactly-once, kafka.process_threads = {t}: {rate['events_per_s']:>12,.0f} events/s "
                f"(pair {pair + 1})"
            )
    return runs


def processor_alone(bootstrap: str, topic: str, n: int) -> float:
    """Events/s of the pipeline's partition tasks over ``topic``'s records read into memory
    first: per partition, batches of the share of ``consume_batch`` a consume call gives it,
    partitions in turn, as the loop takes them; the columns read (``ConsumedBatch.of``) in the
    timed part, no Kafka call in it."""
    c = reader(bootstrap, topic, "alone")
    by_partition: dict[int, list[Any]] = {}
    seen, deadline = 0, time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        for m in c.consume(10_000, timeout=0.1):
            if m.error() is None:
                by_partition.setdefault(m.partition(), []).append(m)
                seen += 1
    c.close()
    assert seen == n, f"read {seen} of {n}"
    cfg = config_for(bootstrap, topic)
    factory = processor_factory(cfg)
    tasks = {p: PartitionTask(p, factory(), cfg) for p in by_partition}
    share = max(1, cfg.kafka.consume_batch // len(by_partition))
    longest = max(len(v) for v in by_partition.values())
    began = time.perf_counter()
    for start in range(0, longest, share):
        for p, msgs in by_partition.items():
            if start < len(msgs):
                tasks[p].process_batch(ConsumedBatch.of(msgs[start : start + share]))
    return n / (time.perf_counter() - began)


def latency(bootstrap: str, rate: int, seconds: float, warmup_s: float = 0.0) -> dict[str, Any]:
    topic = new_topic(bootstrap)
    n = int(rate * seconds)
    keys, values, _cards = messages(n, seed=2, bursts_every=200)
    chunks = [
        [{"key": k, "value": v} for k, v in zip(keys[i : i + CHUNK], values[i : i + CHUNK], strict=True)]
        for i in range(0, n, CHUNK)
    ]
    sent_at = np.zeros(len(chunks))  # per chunk: when it was handed to the producer
    cfg = config_for(bootstrap, topic)
    ensure_topics(cfg)  # the alert reader subscribes before the pipeline starts
    # the pipeline in its own process, configured through FRAUDSTREAM_<SECTION>_<KEY> variables
    env = {
        **os.environ,
        **{f"FRAUDSTREAM_KAFKA_{k.upper()}": str(v) for k, v in cfg.kafka.__dict__.items() if k != "client"},
        "FRAUDSTREAM_DETECTOR_KIND": PROCESSOR,
    }
    trace_path = f"/tmp/{topic}-trace.json"
    runner = subprocess.Popen(  # what `fraudstream run --idle-exit 8` runs, timed (kafka_trace.py)
        [sys.executable, str(Path(__file__).with_name("kafka_trace.py")), trace_path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seen: list[tuple[float, float, int, int]] = []  # sent, read, trigger partition and offset
    done = threading.Event()

    def read_alerts() -> None:
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-reader",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([cfg.kafka.alerts_topic])
        while not done.is_set():
            for m in c.consume(500, timeout=0.005):
                if m.error():
                    continue
                now = time.time()
                alert = json.loads(m.value())
                txn = alert["trigger_txn_id"]
                if 0 <= txn < n and sent_at[txn // CHUNK]:
                    seen.append((float(sent_at[txn // CHUNK]), now, alert["partition"], alert["offset"]))
        c.close()

    reader = threading.Thread(target=read_alerts)
    reader.start()
    time.sleep(3.0)  # let the pipeline and the reader join their groups (the pipeline idles out after 8 s)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    began = time.monotonic()
    for c, chunk in enumerate(chunks):  # one call per chunk: the load generator shares the 2 cores
        ahead = c * CHUNK / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
        p.produce_batch(topic, chunk)
        sent_at[c] = time.time()
        p.poll(0)
    p.flush(30)
    achieved = n / (time.monotonic() - began)
    runner.communicate(timeout=300)
    time.sleep(1.0)
    done.set()
    reader.join()
    with open(trace_path) as f:
        trace = json.load(f)
    os.unlink(trace_path)
    first = min((sent for sent, _, _, _ in seen), default=0.0)
    steady = [s for s in seen if s[0] >= first + warmup_s]
    a = np.array([(got - sent) * 1000 for sent, got, _, _ in steady] or [float("nan")])
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "p999": float(np.percentile(a, 99.9)),
        "alerts": len(steady),
        "warmup_alerts": len(seen) - len(steady),
        "achieved_rate": achieved,
        "parts": decompose(trace, steady),
    }


def print_parts(parts: dict[str, Any]) -> None:
    """The latency decomposition (:func:`kafka_trace.decompose`), one line per segment."""
    if not parts:
        return
    for name in SEGMENTS:
        q = parts[name]
        print(
            f"    {name:<10} p50 {q['p50']:>7.1f}  p99 {q['p99']:>7.1f}  mean {q['mean']:>7.1f}  "
            f"mean of the slowest 1% {q['mean_of_slowest_1pct']:>7.1f} ms"
        )
    c, g = parts["commits"], parts["full_gcs"]
    print(
        f"    commits: {c['n']} (p50 {c['p50']} ms, p99 {c['p99']} ms, max {c['max']} ms); "
        f"full collections: {g['n']} (longest {g['max_ms']} ms)"
    )


def main() -> None:
    global PROCESSOR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="10000,half,50000", help="half: half the exactly-once throughput")
    ap.add_argument(
        "--warmup-seconds", type=float, default=2.0, help="alerts of the first seconds not counted"
    )
    ap.add_argument("--processor", default="detector", help="[detector] kind: detector (default), velocity")
    ap.add_argument(
        "--process-threads",
        default="",
        help="e.g. 1,2: exactly-once throughput again with each kafka.process_threads, alternated",
    )
    ap.add_argument("--pairs", type=int, default=3, help="alternations for --process-threads")
    args = ap.parse_args()
    PROCESSOR = args.processor
    bootstrap = broker()
    topic = loaded_topic(bootstrap, args.events)
    ceiling = ceilings(bootstrap, topic, args.events)
    print_ceilings(ceiling)
    bare, copy = ceiling["bare_consume_per_s"], ceiling["bare_eos_copy_per_s"]
    alone = processor_alone(bootstrap, topic, args.events)
    print(
        f"the processing alone     : {alone:>12,.0f} events/s = {alone / bare:.2f}x the bare consume loop "
        f"({PROCESSOR}; records in memory, no Kafka client)"
    )
    eos_run = throughput(bootstrap, topic, args.events, exactly_once=True)
    eos = eos_run["events_per_s"]
    print(
        f"exactly-once throughput : {eos:>12,.0f} events/s = {eos / bare:.2f}x the bare consume loop, "
        f"{eos / copy:.2f}x the copy loop, {eos / alone:.2f}x the processing alone "
        f"({args.events:,} events, 6 partitions, 1 instance, {PROCESSOR}; "
        f"{eos_run['alerts']:,} alerts, "
        f"{eos_run['scored']:,} scored records, commit p99 {eos_run['commit_ms_p99']:.0f} ms)"
    )
    alo = throughput(bootstrap, topic, args.events, exactly_once=False)["events_per_s"]
    print(f"at-least-once throughput: {alo:>12,.0f} events/s = {alo / bare:.2f}x the bare consume loop")
    by_threads = compare_threads(bootstrap, topic, args.events, args.process_threads, args.pairs)
    lat: dict[str, dict[str, Any]] = {}
    half = int(round(eos / 2, -3))  # half the maximum sustainable rate, to the thousand
    rates = list(dict.fromkeys(half if r == "half" else int(r) for r in args.rates.split(",")))  # once each
    for rate in rates:
        lat[str(rate)] = latency(bootstrap, rate, args.latency_seconds, args.warmup_seconds)
        r = lat[str(rate)]
        print(
            f"event-to-alert latency at {rate:,}/s (achieved {r['achieved_rate']:,.0f}/s): "
            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, p99.9 {r['p999']:.1f} ms "
            f"over {r['alerts']:.0f} alerts ({r['warmup_alerts']} in the first {args.warmup_seconds:g} s "
            "not counted)"
        )
        print_parts(r["parts"])
    print(
        json.dumps(
            {
                "processor": PROCESSOR,
                "events": args.events,
                "bare_consume_per_s": round(bare),
                "bare_eos_copy_per_s": round(copy),
                "eos_events_per_s": round(eos),
                "ceiling_ratio": round(eos / bare, 3),
                "eos_copy_ratio": round(eos / copy, 3),
                "processor_alone_per_s": round(alone),
                "processor_ratio": round(eos / alone, 3),
                "alo_events_per_s": round(alo),
                "eos_events_per_s_by_process_threads": by_threads,
                "half_max_rate": half,
                "p99_at_half_max_ms": round(lat[str(half)]["p99"], 1) if str(half) in lat else None,
                "warmup_seconds": args.warmup_seconds,
                "latency_ms": {
                    k: {m: round(v[m], 1) for m in ("p50", "p99", "p999")} for k, v in lat.items()
                },
                "latency_parts_ms": {
                    k: {p: v["parts"][p]["p99"] for p in SEGMENTS} for k, v in lat.items() if v["parts"]
                },
            }
        )
    )


if __name__ == "__main__":
    main()
