"""Producing with backpressure: when the producer's local queue is full (a slow or unavailable
broker), wait for it to drain instead of failing, polling delivery reports in short slices.

While the processing loop waits here it consumes nothing, so a slow sink holds the input back;
librdkafka's own prefetch queue is bounded (``queued.max.messages.kbytes``), so memory stays
bounded and nothing is dropped.

:func:`produce_batch_waiting` sends many records of one partition in one ``produce_batch``
call (no headers): the per-record Python call of ``produce`` was a large part of the loop's
time. The records keep their order: the local queue only frees room when this thread serves
delivery reports (``poll``), so within one call the records the queue refuses are the last ones,
and only those are sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NoReturn

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
            _raise_refused(exc.args[0], exc)
        except BufferError:
            if queue_was_empty:  # no room in an empty queue: waiting cannot help
                _never_fits(topic, len(kwargs.get("value") or b"") + len(kwargs.get("key") or b""))
            waited_since = _wait_for_room(producer, waited_since)


def produce_batch_waiting(
    producer: Producer, topic: str, records: Sequence[tuple[bytes | None, bytes | None]], partition: int
) -> float:
    """Every ``(key, value)`` of ``records`` to ``partition`` of ``topic``, in order, with one
    ``produce_batch`` call (more while the local queue is full). Returns the seconds spent
    waiting for room (0 when there was room)."""
    pending: list[dict[str, Any]] = [{"key": k, "value": v} for k, v in records]
    waited_since = None
    while pending:
        queue_was_empty = len(producer) == 0  # only this thread adds to it
        producer.produce_batch(topic, pending, partition=partition)
        refused = [m for m in pending if "_error" in m]
        if not refused:
            break
        err: KafkaError = refused[0]["_error"]
        if err.code() != KafkaError._QUEUE_FULL:
            _raise_refused(err, KafkaException(err))
        if queue_was_empty and len(refused) == len(pending):  # not even the first one fits
            _never_fits(topic, len(refused[0]["value"] or b"") + len(refused[0]["key"] or b""))
        for m in refused:
            del m["_error"]
        pending = refused
        waited_since = _wait_for_room(producer, waited_since)
    return 0.0 if waited_since is None else time.monotonic() - waited_since


def _raise_refused(err: KafkaError, exc: KafkaException) -> NoReturn:
    """A record refused for another reason than a full queue: fenced or fatal, or the error."""
    if err.fatal() or err.code() == KafkaError._FATAL:
        raise FencedError(f"the producer can no longer send: {err}") from exc
    raise exc


def _never_fits(topic: str, size: int) -> NoReturn:
    raise StreamError(
        f"a record of {size} bytes for {topic} can never fit the producer's queue "
        "(queue.buffering.max.kbytes / queue.buffering.max.messages are set too small)"
    ) from None


def _wait_for_room(producer: Producer, waited_since: float | None) -> float:
    """Serves delivery reports for a moment (which frees room); returns when waiting began."""
    if waited_since is None:
        waited_since = time.monotonic()
        log.debug("producer queue full: waiting for the broker")
    producer.poll(0.05)
    return waited_since
