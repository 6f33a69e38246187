"""Producing with backpressure: when the producer's local queue is full (a slow or unavailable
broker), wait for it to drain instead of failing, polling delivery reports in short slices.

While the processing loop waits here it consumes nothing, so a slow sink holds the input back;
librdkafka's own prefetch queue is bounded (``queued.max.messages.kbytes``), so memory stays
bounded and nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from fraudstream.errors import FencedError, StreamError

log = logging.getLogger(__name__)


def produce_waiting(producer: Producer, topic: str, **kwargs: Any) -> float:
    """``producer.produce(topic, **kwargs)``, waiting while the local queue is full. Returns the
    seconds spent waiting (0 when there was room)."""
    waited_since = None
    while True:
        queue_was_empty = len(producer) == 0  # only this thread adds to it
        try:
            producer.produce(topic, **kwargs)
            return 0.0 if waited_since is None else time.monotonic() - waited_since
        except KafkaException as exc:  # a fenced transactional producer refuses every record
            err = exc.args[0]
            if err.fatal() or err.code() == KafkaError._FATAL:
                raise FencedError(f"the producer can no longer send: {err}") from exc
            raise
        except BufferError:
            if queue_was_empty:  # no room in an empty queue: waiting cannot help
                size = len(kwargs.get("value") or b"") + len(kwargs.get("key") or b"")
                raise StreamError(
                    f"a record of {size} bytes for {topic} can never fit the producer's queue "
                    "(queue.buffering.max.kbytes / queue.buffering.max.messages are set too small)"
                ) from None
            if waited_since is None:
                waited_since = time.monotonic()
                log.debug("producer queue full: waiting for the broker")
            producer.poll(0.05)
