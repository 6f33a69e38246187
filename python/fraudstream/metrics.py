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
        self.consumed = Counter("fraudstream_events_consumed", "Records read from the input", registry=r)
        self.processed = Counter(
            "fraudstream_events_processed", "Records processed by the engine", registry=r
        )
        self.dead_lettered = Counter(
            "fraudstream_dead_lettered", "Records sent to the dead-letter topic", registry=r
        )
        self.alerts = Counter("fraudstream_alerts", "Alerts produced", registry=r)
        self.evicted = Counter(
            "fraudstream_evicted_keys",
            "Keys evicted by a cap on live keys (oldest event first), counted as their transactions commit",
            registry=r,
        )
        self.commits = Counter("fraudstream_commits", "Committed transactions", registry=r)
        self.aborts = Counter("fraudstream_aborts", "Aborted transactions", registry=r)
        self.fencings = Counter(
            "fraudstream_fencings",
            "Previous owners' transactional ids fenced at a takeover, their open transaction aborted",
            registry=r,
        )
        self.backpressure = Counter(
            "fraudstream_backpressured_seconds", "Time spent waiting for a full producer queue", registry=r
        )
        # the backpressure figures of the in-process queues (BoundedQueue.metrics()), for the
        # Kafka loop: its input queue is the consumer's fetch queue, its output the producer's
        self.input_queue = Gauge(
            "fraudstream_input_queue_length",
            "Records fetched from Kafka, waiting to be processed",
            registry=r,
        )
        self.backpressured_ms_per_s = Gauge(
            "fraudstream_backpressured_time_ms_per_second",
            "Milliseconds per second spent waiting for a full producer queue (the last second)",
            registry=r,
        )
        self.busy_ms_per_s = Gauge(
            "fraudstream_busy_time_ms_per_second",
            "Milliseconds per second spent processing records (the last second)",
            registry=r,
        )
        self.busy = Counter("fraudstream_busy_seconds", "Time spent processing records", registry=r)
        self.lag = Gauge(
            "fraudstream_consumer_lag", "Records behind the end of the partition", ["partition"], registry=r
        )
        self.watermark = Gauge("fraudstream_watermark_ms", "Event-time watermark", ["partition"], registry=r)
        self.watermark_lag = Gauge(
            "fraudstream_watermark_lag_ms", "Wall clock minus the watermark", ["partition"], registry=r
        )
        self.keys = Gauge("fraudstream_state_keys", "Keys with open windows", registry=r)
        self.windows = Gauge("fraudstream_state_windows", "Open panes or sessions", registry=r)
        self.state_bytes = Gauge("fraudstream_state_bytes", "Approximate bytes of window state", registry=r)
        self.commit_latency = Histogram(
            "fraudstream_commit_latency_ms",
            "Time to commit one transaction",
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.alert_latency = Histogram(
            "fraudstream_event_to_alert_latency_ms",
            "From the triggering record's timestamp to its alert being produced",
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        # the online feature store ([store]), summed over the partitions' processors
        self.store_degraded = Counter(
            "fraudstream_store_degraded",
            "Transactions scored with the feature store's defaults: the store was down or over its budget",
            registry=r,
        )
        self.store_lookups = Counter(
            "fraudstream_store_lookups", "Transactions whose features were looked up in the store", registry=r
        )
        self.store_cache_hits = Counter(
            "fraudstream_store_cache_hits", "Distinct keys of a batch served by the local cache", registry=r
        )
        self.store_fetched = Counter(
            "fraudstream_store_fetched",
            "Keys read from the store's server (one round trip a batch)",
            registry=r,
        )
        self.store_failures = Counter(
            "fraudstream_store_failures",
            "Round trips to the store that failed (down, timeout, error): one per cool-off at most",
            registry=r,
        )
        # the profiles table (detector.profiles_table), summed over the partitions' processors
        self.profile_lookups = Counter(
            "fraudstream_profile_lookups", "Transactions looked up in the profiles table", registry=r
        )
        self.profiles_missing = Counter(
            "fraudstream_profiles_missing",
            "Transactions whose card had no profile: scored with the declared defaults, profile_missing = 1",
            registry=r,
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
