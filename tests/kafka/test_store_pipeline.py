"""The exactly-once pipeline with the online feature store ([store]) against the real broker and
a real Redis server of the test's own: healthy, then with the server stopped between two runs
(every record still processed and committed, each scored with the defaults and counted as
degraded, the server tried once per cool-off), then with it back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from eos_helpers import make_config, produce, read_all, stream_with_bursts

from fraudstream.config import Config, StoreSection
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.store import DEFAULT_FEATURES

pytestmark = pytest.mark.kafka
PARTITIONS = 2


def run(config: Config) -> tuple[dict[str, int], dict[str, float]]:
    """One instance until its input is idle: its committed counts and its store metrics."""
    pipeline = KafkaPipeline(config)
    stats = pipeline.run(idle_exit_s=2, max_seconds=120)
    metrics = pipeline.metrics.snapshot()
    store = {
        name: metrics[f"fraudstream_store_{name}_total"]
        for name in ("lookups", "degraded", "failures", "fetched", "cache_hits")
    }
    return {"consumed": stats.consumed, "processed": stats.processed, "dead": stats.dead_lettered}, store


def test_the_pipeline_scores_every_record_with_the_store_up_down_and_back(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], private_redis: Any
) -> None:
    topic = kafka_topic_factory(PARTITIONS)
    config = make_config(kafka_bootstrap, topic)
    # a cool-off longer than a run: a dead store is tried once per run
    config.store = StoreSection(url=private_redis.url, timeout_ms=2_000, cooloff_ms=600_000)
    config.validate()
    records = stream_with_bursts(9_000, seed=21, bursts=3)
    first, second, third = records[:3_000], records[3_000:6_000], records[6_000:]
    client = redis.Redis.from_url(private_redis.url)
    for card, _ in first[:500]:
        client.hset(f"card:{card}", mapping=dict.fromkeys(DEFAULT_FEATURES, 1.0))
    client.close()

    produce(kafka_bootstrap, topic, first)
    counts, store = run(config)
    processed = counts["processed"]
    assert counts["consumed"] == len(first) == counts["processed"] + counts["dead"]
    assert store["lookups"] == counts["processed"]
    assert store["degraded"] == 0 and store["failures"] == 0
    assert store["fetched"] > 0

    private_redis.down()
    produce(kafka_bootstrap, topic, second)
    counts, store = run(config)  # a new instance: a cold cache, the server gone
    processed += counts["processed"]
    degraded = counts["processed"]
    assert counts["consumed"] == len(second) == counts["processed"] + counts["dead"]
    assert store["degraded"] == store["lookups"] == counts["processed"]
    assert store["failures"] == 1  # one try, then the breaker: no budget spent per batch

    private_redis.up()
    produce(kafka_bootstrap, topic, third)
    counts, store = run(config)
    processed += counts["processed"]
    assert counts["consumed"] == len(third) == counts["processed"] + counts["dead"]
    assert store["degraded"] == 0 and store["failures"] == 0

    # exactly once over the three runs: one committed scored record per processed transaction
    scored = [json.loads(m.value()) for m in read_all(kafka_bootstrap, config.kafka.scores_topic, PARTITIONS)]
    assert len(scored) == len({s["txn_id"] for s in scored}) == processed
    # the records scored while the server was gone say so
    assert sum(1 for s in scored if s.get("degraded") is True) == degraded
