"""Prometheus metrics of a running pipeline, on their own registry.

``PipelineMetrics(port, addr)`` serves ``/metrics`` over HTTP (``[metrics] port`` or
``--metrics-port``, on ``[metrics] host``, default 127.0.0.1; a port in use is a
:class:`~fraudstream.errors.ConfigError`, exit code 2 of ``fraudstream run``); the same
figures are readable from Python with :meth:`snapshot`. Each pipeline gets its own registry,
so several pipelines (or tests) can live in one process.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fraudstream.errors import ConfigError

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)


class PipelineMetrics:
    """Counters, gauges and histograms of one pipeline instance."""

    def __init__(self, port: int = 0, addr: str = "127.0.0.1") -> None:
        r = self.registry = CollectorRegistry()

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=r)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, buckets=LATENCY_BUCKETS_MS, registry=r)

        self.consumed = counter("fraudstream_events_consumed", "Records read from the input")
        self.processed = counter("fraudstream_events_processed", "Records processed by the engine")
        self.dead_lettered = counter("fraudstream_dead_lettered", "Records sent to the dead-letter topic")
        self.alerts = counter("fraudstream_alerts", "Alerts produced")
        self.evicted = counter(
            "fraudstream_evicted_keys",
            "Keys evicted by a cap on live keys (oldest event first), counted as their transactions commit",
        )
        self.commits = counter("fraudstream_commits", "Committed transactions")
        self.aborts = counter("fraudstream_aborts", "Aborted transactions")
        self.fencings = counter(
            "fraudstream_fencings",
            "Previous owners' transactional ids fenced at a takeover, their open transaction aborted",
        )
        self.backpressure = counter(
            "fraudstream_backpressured_seconds", "Time spent waiting for a full producer queue"
        )
        # the backpressure figures of the in-process queues (BoundedQueue.metrics()), for the
        # Kafka loop: its input queue is the consumer's fetch queue, its output the producer's
        self.input_queue = gauge(
            "fraudstream_input_queue_length", "Records fetched from Kafka, waiting to be processed"
        )
        self.backpressured_ms_per_s = gauge(
            "fraudstream_backpressured_time_ms_per_second",
            "Milliseconds per second spent waiting for a full producer queue (the last second)",
        )
        self.busy_ms_per_s = gauge(
            "fraudstream_busy_time_ms_per_second",
            "Milliseconds per second spent processing records (the last second)",
        )
        self.busy = counter("fraudstream_busy_seconds", "Time spent processing records")
        self.lag = gauge("fraudstream_consumer_lag", "Records behind the end of the partition", "partition")
        self.watermark = gauge("fraudstream_watermark_ms", "Event-time watermark", "partition")
        self.watermark_lag = gauge(
            "fraudstream_watermark_lag_ms", "Wall clock minus the watermark", "partition"
        )
        self.keys = gauge("fraudstream_state_keys", "Keys with open windows")
        self.windows = gauge("fraudstream_state_windows", "Open panes or sessions")
        self.state_bytes = gauge("fraudstream_state_bytes", "Approximate bytes of window state")
        self.commit_latency = histogram("fraudstream_commit_latency_ms", "Time to commit one transaction")
        self.alert_latency = histogram(
            "fraudstream_event_to_alert_latency_ms",
            "From the triggering record's timestamp to its alert being produced",
        )
        # the online feature store ([store]), summed over the partitions' processors
        self.store_degraded = counter(
            "fraudstream_store_degraded",
            "Transactions scored with the feature store's defaults: the store was down or over its budget",
        )
        self.store_lookups = counter(
            "fraudstream_store_lookups", "Transactions whose features were looked up in the store"
        )
        self.store_cache_hits = counter(
            "fraudstream_store_cache_hits", "Distinct keys of a batch served by the local cache"
        )
        self.store_fetched = counter(
            "fraudstream_store_fetched", "Keys read from the store's server (one round trip a batch)"
        )
        self.store_failures = counter(
            "fraudstream_store_failures",
            "Round trips to the store that failed (down, timeout, error): one per cool-off at most",
        )
        # the profiles table (detector.profiles_table), summed over the partitions' processors
        self.profile_lookups = counter(
            "fraudstream_profile_lookups", "Transactions looked up in the profiles table"
        )
        self.profiles_missing = counter(
            "fraudstream_profiles_missing",
            "Transactions whose card had no profile: scored with the declared defaults, profile_missing = 1",
        )
        self.port = 0
        if port:
            try:
                server, thread = start_http_server(port, addr=addr, registry=r)
            except OSError as exc:  # in use, or an address this host does not have
                raise ConfigError(
                    f"metrics endpoint {addr}:{port} cannot be served ({exc.strerror or exc}); "
                    "set metrics.port (0 = off) or metrics.host"
                ) from None
            self.port = server.server_port
            self._server, self._thread = server, thread

    def close(self) -> None:
        """Stops the HTTP endpoint (if any)."""
        server = getattr(self, "_server", None)
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()
            server.server_close()

    def snapshot(self) -> dict[str, Any]:
        """Every sample by name (labelled samples as ``name{label=value}``)."""
        out: dict[str, Any] = {}
        for metric in self.registry.collect():
            for s in metric.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{label}}}" if label else s.name] = s.value
        return out
