"""Kafka end to end, against the project's broker (started when none is running).

1. Sustained throughput, exactly-once: N transactions pre-loaded into a 6-partition topic, then
   ``fraudstream run`` (one instance) processes them; events/s from its first consume to its last
   commit.
2. Event-to-alert latency at fixed input rates: a paced producer sends transactions (with
   injected bursts that trigger the velocity rule); for each alert, latency = when a
   read_committed consumer could read it - when its triggering transaction was produced.
   p50 / p99 / p99.9.
3. The same throughput with at-least-once (no transactions), for comparison.

    python benches/kafka_e2e.py [--events 1000000] [--latency-seconds 20]

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
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import Config, KafkaSection
from fraudstream.generator import card_transactions
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.schema import encode_transactions
from fraudstream.kafka.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def broker() -> str:
    out = subprocess.run([str(ROOT / "scripts/kafka"), "up"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def new_topic(bootstrap: str, partitions: int = 6) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result()
    time.sleep(1.0)
    return name


def config_for(bootstrap: str, topic: str, exactly_once: bool = True) -> Config:
    section = KafkaSection.for_topic(
        bootstrap, topic, exactly_once=exactly_once, consume_batch=10_000, commit_max_records=200_000
    )
    return Config(kafka=section).validate()


def messages(
    n: int, seed: int, bursts_every: int = 0
) -> tuple[list[bytes], list[bytes], np.ndarray[Any, Any]]:
    data = card_transactions(n, cards=100_000, rate_per_s=10_000.0, seed=seed)
    if bursts_every:  # every k-th event is one of a burst card's 6 transactions in 4 countries
        idx = np.arange(0, n, bursts_every)
        burst = idx // (6 * bursts_every) % 1_000_000 + 5_000_000
        data["card"][idx] = burst
        data["country"][idx] = np.array([1, 5, 9, 14, 5, 1])[(idx // bursts_every) % 6]
    keys = [str(c).encode() for c in data["card"].tolist()]
    return keys, encode_transactions(data), data["card"]


def preload(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    for k, v in zip(keys, values, strict=True):
        while True:
            try:
                p.produce(topic, key=k, value=v)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)


def throughput(bootstrap: str, n: int, exactly_once: bool) -> float:
    topic = new_topic(bootstrap)
    keys, values, _ = messages(n, seed=1)
    preload(bootstrap, topic, keys, values)
    pipeline = KafkaPipeline(config_for(bootstrap, topic, exactly_once))
    stats = pipeline.run(idle_exit_s=2.0)
    assert stats.consumed == n, stats.as_dict()
    return n / stats.processing_seconds  # first record consumed -> last commit


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="10000,50000")
    args = ap.parse_args()
    bootstrap = broker()
    eos = throughput(bootstrap, args.events, exactly_once=True)
    print(
        f"exactly-once throughput : {eos:>12,.0f} events/s ({args.events:,} events, 6 partitions, 1 instance)"
    )
    alo = throughput(bootstrap, args.events, exactly_once=False)
    print(f"at-least-once throughput: {alo:>12,.0f} events/s")
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
                "eos_events_per_s": round(eos),
                "alo_events_per_s": round(alo),
                "latency_ms": {
                    k: {m: round(v[m], 1) for m in ("p50", "p99", "p999")} for k, v in lat.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
