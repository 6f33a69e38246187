"""What an operator reads while ``fraudstream run`` works: the load gauges move, and consumer
lag reads 0 once everything is processed and committed (the gauges update each second from the
loop, not only after commits, so an idle pipeline does not keep its last busy figure)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from eos_helpers import make_config, produce, stream_with_bursts

from fraudstream.kafka.pipeline import KafkaPipeline

pytestmark = pytest.mark.kafka


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def test_lag_falls_to_zero_once_committed_and_the_load_gauges_move(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(2)
    records = stream_with_bursts(8_000, seed=4, bursts=5)
    produce(kafka_bootstrap, topic, records)
    pipeline = KafkaPipeline(make_config(kafka_bootstrap, topic, consume_batch=500))
    seen_lag = []

    original = pipeline._update_gauges

    def watch(now: float) -> None:  # every gauge update of the loop, as a scrape would see it
        original(now)
        seen_lag.append(total(pipeline.metrics.snapshot(), "fraudstream_consumer_lag"))

    pipeline._update_gauges = watch  # type: ignore[method-assign]
    began = time.monotonic()
    stats = pipeline.run(idle_exit_s=3.0, max_seconds=120)
    assert stats.consumed == len(records), f"consumed {stats.consumed} in {time.monotonic() - began:.0f} s"
    final = pipeline.metrics.snapshot()
    assert final["fraudstream_busy_seconds_total"] > 0
    assert "fraudstream_input_queue_length" in final
    assert "fraudstream_backpressured_time_ms_per_second" in final
    assert "fraudstream_busy_time_ms_per_second" in final
    # idle for 3 s after the last commit: updates happened meanwhile, and they read no lag
    assert len(seen_lag) >= 3
    assert seen_lag[-1] == 0 and seen_lag[-2] == 0
