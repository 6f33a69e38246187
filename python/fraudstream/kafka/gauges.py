"""The pipeline's gauges: state size, watermarks, consumer lag and the load figures.

Updated once a second from the poll loop, also while it idles (so the consumer lag falls to 0
once everything is committed), and once more at exit. Asking the client for lag is a call per
partition, hence the cadence. A partition no longer owned loses its labelled samples.
"""

from __future__ import annotations

import contextlib
import json
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from fraudstream.kafka.stats import RunStats
from fraudstream.kafka.tasks import TaskManager
from fraudstream.metrics import PipelineMetrics

STORE_METRICS = {
    "store_rows": "store_lookups",
    "store_degraded": "store_degraded",
    "store_cache_hits": "store_cache_hits",
    "store_fetched": "store_fetched",
    "store_failures": "store_failures",
    "profiles_looked_up": "profile_lookups",
    "profiles_missing": "profiles_missing",
}
"""A processor's ``counters()`` (:data:`fraudstream.store.STORE_COUNTERS`, and the profile
lookup's of :class:`~fraudstream.fraud.profiles.ProfileEnrichment`) -> the
:class:`~fraudstream.metrics.PipelineMetrics` counter each adds to."""


class PipelineGauges:
    """Sets the gauges of :class:`~fraudstream.metrics.PipelineMetrics` from the loop's state."""

    def __init__(self, metrics: PipelineMetrics, input_topic: str) -> None:
        self.metrics = metrics
        self.input_topic = input_topic
        self.busy_s = 0.0
        """Seconds spent processing consumed records (decode, processor, sending)."""
        self.input_queue = 0
        """Records fetched by the consumer, waiting for the loop (librdkafka's statistics)."""
        self.next_update = 0.0
        self._from = {"busy": 0.0, "backpressure": 0.0}
        self._partitions: set[int] = set()
        self._evicted_counted = 0
        self._fencings_counted = 0
        self._store_seen: dict[int, tuple[int, dict[str, int]]] = {}

    def on_consumer_stats(self, text: str) -> None:
        """librdkafka's statistics (each second): records fetched and waiting for the loop."""
        try:
            partitions = json.loads(text)["topics"][self.input_topic]["partitions"]
            self.input_queue = sum(int(v.get("fetchq_cnt", 0)) for k, v in partitions.items() if k != "-1")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # no assignment yet

    def update(self, now: float, tasks: TaskManager, consumer: Consumer, stats: RunStats) -> None:
        """Every gauge, from the tasks, the client and the run's counters."""
        elapsed = max(now - (self.next_update - 1.0), 1e-3) if self.next_update else 1.0
        self.next_update = now + 1.0
        m = self.metrics
        m.input_queue.set(self.input_queue)
        busy = self.busy_s - self._from["busy"]
        waited = stats.backpressure_s - self._from["backpressure"]
        m.busy.inc(busy)
        m.busy_ms_per_s.set(1000 * busy / elapsed)
        m.backpressured_ms_per_s.set(1000 * max(0.0, waited) / elapsed)
        self._from = {"busy": self.busy_s, "backpressure": stats.backpressure_s}
        for gone in self._partitions - set(tasks.tasks):
            for gauge in (m.lag, m.watermark, m.watermark_lag):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self._partitions = set(tasks.tasks)
        now_ms = time.time() * 1000
        # evictions once each, as their transactions commit (see TaskManager.evicted)
        m.evicted.inc(tasks.evicted - self._evicted_counted)
        self._evicted_counted = tasks.evicted
        # fencings are counted in RunStats where they happen (fencing.PreviousOwners, which has
        # no metrics): each one once, here
        m.fencings.inc(stats.fencings - self._fencings_counted)
        self._fencings_counted = stats.fencings
        keys = windows = nbytes = 0
        for p, task in tasks.tasks.items():
            self.count_store(p, task.processor)
            size_of = getattr(task.processor, "state_size", None)
            size = size_of() if callable(size_of) else {}
            keys += int(size.get("keys", 0))
            windows += int(size.get("windows", 0))
            nbytes += int(size.get("bytes", 0))
            wm = getattr(task.processor, "watermark", None)
            if isinstance(wm, int):
                m.watermark.labels(p).set(wm)
                m.watermark_lag.labels(p).set(now_ms - wm)
            position = tasks.positions.get(p)
            if position is not None:
                try:
                    _, high = consumer.get_watermark_offsets(TopicPartition(self.input_topic, p), cached=True)
                    m.lag.labels(p).set(max(0, high - position))
                except KafkaException:
                    pass  # lag is informative; never fail processing for it
        m.keys.set(keys)
        m.windows.set(windows)
        m.state_bytes.set(nbytes)

    def count_store(self, partition: int, processor: object) -> None:
        """The feature store's counters of a partition's processor since the last update (a
        processor built anew, after a rebalance, counts from 0)."""
        counters = getattr(processor, "counters", None)
        if not callable(counters):
            return
        now = {k: int(v) for k, v in counters().items() if k in STORE_METRICS}
        if not now:
            return
        built, before = self._store_seen.get(partition, (id(processor), {}))
        if built != id(processor):
            before = {}
        m = self.metrics
        for name, value in now.items():
            getattr(m, STORE_METRICS[name]).inc(max(0, value - before.get(name, 0)))
        self._store_seen[partition] = (id(processor), now)


__all__ = ["PipelineGauges"]
