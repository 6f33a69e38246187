"""The Prometheus endpoint of `fraudstream run`, scraped over HTTP during a real run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from eos_helpers import free_port, make_config, produce, scrape, stream_with_bursts

from fraudstream.kafka.pipeline import KafkaPipeline

pytestmark = pytest.mark.kafka


def test_metrics_endpoint_moves_during_a_run(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(2)
    config = make_config(kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=20)
    config.metrics.port = free_port()
    records = stream_with_bursts(20_000, seed=8, bursts=10)
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, records, 5_000.0))
    pipeline = KafkaPipeline(config)
    runner = threading.Thread(target=pipeline.run, kwargs={"idle_exit_s": 3.0, "max_seconds": 120})
    runner.start()
    feeder.start()
    samples = []
    deadline = time.monotonic() + 60
    while runner.is_alive() and time.monotonic() < deadline and len(samples) < 3:
        time.sleep(1.0)
        got = scrape(config.metrics.port)
        if got.get("fraudstream_events_consumed_total", 0) > 0:
            samples.append(got)
    feeder.join()
    runner.join(120)
    assert len(samples) >= 2, "the endpoint answered during the run"
    first, last = samples[0], samples[-1]
    assert last["fraudstream_events_consumed_total"] > first["fraudstream_events_consumed_total"]
    assert last["fraudstream_commits_total"] > first["fraudstream_commits_total"]
    assert last["fraudstream_commit_latency_ms_count"] >= last["fraudstream_commits_total"] - 1
    assert last["fraudstream_state_keys"] > 0
    assert any(k.startswith("fraudstream_watermark_ms{") for k in last)
    assert any(k.startswith("fraudstream_consumer_lag{") for k in last)
    final = pipeline.metrics.snapshot()
    # RunStats count committed results; Prometheus counts work done (redone after an abort too)
    assert pipeline.stats.consumed == len(records)
    assert final["fraudstream_events_consumed_total"] >= len(records)
    assert final["fraudstream_alerts_total"] >= pipeline.stats.alerts > 0
    assert final["fraudstream_event_to_alert_latency_ms_count"] == final["fraudstream_alerts_total"]
