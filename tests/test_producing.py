"""Producing with backpressure: a record that can never fit the producer's queue is an error,
not an endless wait; changelog records are cut to fit the queue."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from fraudstream.config import Config
from fraudstream.errors import StreamError
from fraudstream.kafka.changelog import CHUNK_BYTES
from fraudstream.kafka.pipeline import changelog_chunk_bytes
from fraudstream.kafka.producing import produce_waiting


def test_a_record_larger_than_the_producer_queue_raises_instead_of_waiting_forever() -> None:
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",  # never reached: the record is refused locally
            "queue.buffering.max.kbytes": 4,
            "log_level": 0,
        }
    )
    assert produce_waiting(producer, "t", value=b"x" * 1_000) == 0.0  # fits: queued
    producer.purge()
    producer.poll(0)
    with pytest.raises(StreamError, match=r"20000 bytes .* can never fit the producer's queue"):
        produce_waiting(producer, "t", value=b"x" * 20_000)


def test_changelog_records_fit_the_configured_producer_queue() -> None:
    assert changelog_chunk_bytes(Config()) == CHUNK_BYTES
    small = Config()
    small.kafka.client = {"queue.buffering.max.kbytes": "512"}
    assert changelog_chunk_bytes(small) == 128 * 1024
    tiny = Config()
    tiny.kafka.client = {"queue.buffering.max.kbytes": "1"}
    assert changelog_chunk_bytes(tiny) == 1024
