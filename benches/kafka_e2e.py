"""Kafka end to end, against the project's broker (started when none is running).

0. The ceilings (``benches/kafka_ceiling.py``), over the same pre-loaded records: a bare
   confluent-kafka ``consume(5000)`` loop that only takes ``value()`` (the most any Python
   consumer can do on this machine) and a bare exactly-once copy loop (each value produced in a
   transaction, offsets committed every 100 ms). Every pipeline figure is also printed as a
   ratio of the bare consume loop (``ceiling_ratio``) and of the copy loop (``eos_copy_ratio``).
1. Sustained throughput, exactly-once: N transactions pre-loaded into a 6-partition topic, then
   the pipeline (one instance, the default fraud detector unless ``--processor`` says otherwise)
   processes them; events/s from its first consume to its last commit.
2. Event-to-alert latency at fixed input rates: a paced producer sends transactions (with
   injected bursts that trigger the velocity rule); for each alert, latency = when a
   read_committed consumer could read it - when its triggering transaction was produced.
   p50 / p99 / p99.9.
3. The same throughput with at-least-once (no transactions), for comparison.

    python benches/kafka_e2e.py [--events 1000000] [--latency-seconds 20] [--processor detector]

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
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from kafka_ceiling import broker, ceilings, loaded_topic, messages, new_topic, print_ceilings

from fraudstream.config import Config, DetectorSection, KafkaSection
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.topics import ensure_topics

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


def throughput(bootstrap: str, topic: str, n: int, exactly_once: bool) -> dict[str, Any]:
    cfg = config_for(bootstrap, topic, exactly_once)
    mode = "eos" if exactly_once else "alo"  # both runs read the same input, each its own outputs
    k = cfg.kafka
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


def latency(bootstrap: str, rate: int, seconds: float) -> dict[str, float]:
    topic = new_topic(bootstrap)
    n = int(rate * seconds)
    keys, values, _cards = messages(n, seed=2, bursts_every=200)
    sent_at: dict[int, float] = {}
    cfg = config_for(bootstrap, topic)
    cfg.kafka.consume_batch = 2_000
    ensure_topics(cfg)  # the alert reader subscribes before the pipeline starts
    # the pipeline in its own process, configured through FRAUDSTREAM_<SECTION>_<KEY> variables
    env = {
        **os.environ,
        **{f"FRAUDSTREAM_KAFKA_{k.upper()}": str(v) for k, v in cfg.kafka.__dict__.items() if k != "client"},
        "FRAUDSTREAM_DETECTOR_KIND": PROCESSOR,
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "run", "--idle-exit", "8"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    latencies: list[float] = []
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
                txn = json.loads(m.value())["trigger_txn_id"]
                if txn in sent_at:
                    latencies.append((now - sent_at[txn]) * 1000)
        c.close()

    reader = threading.Thread(target=read_alerts)
    reader.start()
    time.sleep(3.0)  # let the pipeline and the reader join their groups (the pipeline idles out after 8 s)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    began = time.monotonic()
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        p.produce(topic, key=k, value=v)
        sent_at[i] = time.time()
        if i % 200 == 0:
            p.poll(0)
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    p.flush(30)
    achieved = n / (time.monotonic() - began)
    runner.communicate(timeout=300)
    time.sleep(1.0)
    done.set()
    reader.join()
    if not latencies:
        return {
            "p50": float("nan"),
            "p99": float("nan"),
            "p999": float("nan"),
            "alerts": 0,
            "achieved_rate": achieved,
        }
    a = np.array(latencies)
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "p999": float(np.percentile(a, 99.9)),
        "alerts": len(a),
        "achieved_rate": achieved,
    }


def main() -> None:
    global PROCESSOR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="10000,50000")
    ap.add_argument("--processor", default="detector", help="[detector] kind: detector (default), velocity")
    args = ap.parse_args()
    PROCESSOR = args.processor
    bootstrap = broker()
    topic = loaded_topic(bootstrap, args.events)
    ceiling = ceilings(bootstrap, topic, args.events)
    print_ceilings(ceiling)
    bare, copy = ceiling["bare_consume_per_s"], ceiling["bare_eos_copy_per_s"]
    eos_run = throughput(bootstrap, topic, args.events, exactly_once=True)
    eos = eos_run["events_per_s"]
    print(
        f"exactly-once throughput : {eos:>12,.0f} events/s = {eos / bare:.2f}x the bare consume loop, "
        f"{eos / copy:.2f}x the copy loop ({args.events:,} events, 6 partitions, 1 instance, {PROCESSOR}; "
        f"{eos_run['alerts']:,} alerts, "
        f"{eos_run['scored']:,} scored records, commit p99 {eos_run['commit_ms_p99']:.0f} ms)"
    )
    alo = throughput(bootstrap, topic, args.events, exactly_once=False)["events_per_s"]
    print(f"at-least-once throughput: {alo:>12,.0f} events/s = {alo / bare:.2f}x the bare consume loop")
    lat: dict[str, dict[str, float]] = {}
    for rate in (int(r) for r in args.rates.split(",")):
        lat[str(rate)] = latency(bootstrap, rate, args.latency_seconds)
        r = lat[str(rate)]
        print(
            f"event-to-alert latency at {rate:,}/s (achieved {r['achieved_rate']:,.0f}/s): "
            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, p99.9 {r['p999']:.1f} ms "
            f"over {r['alerts']:.0f} alerts"
        )
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
                "alo_events_per_s": round(alo),
                "latency_ms": {
                    k: {m: round(v[m], 1) for m in ("p50", "p99", "p999")} for k, v in lat.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
