"""Producing with backpressure: a record that can never fit the producer's queue is an error,
not an endless wait; changelog records are cut to fit the queue."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from fraudstream.config import Config
from fraudstream.errors import FencedError, StreamError
from fraudstream.kafka.changelog import CHUNK_BYTES
from fraudstream.kafka.pipeline import changelog_chunk_bytes
from fraudstream.kafka.producing import produce_waiting
from fraudstream.kafka.transactions import TXN_RETRY_BACKOFF_MS, TransactionalProducer, producer_settings
from fraudstream.kafka.watchdog import Watchdog


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


def test_a_fatal_error_surfacing_in_poll_is_a_fenced_error() -> None:
    """The fencing can surface in the loop's poll (records waiting to join the transaction
    when a newer producer took the id): the pipeline must see FencedError, not a raw error."""

    class FencedClient:
        def poll(self, timeout: float) -> int:
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))

    config = Config()
    config.kafka.bootstrap_servers = "127.0.0.1:1"  # never reached
    txn = TransactionalProducer(config, Watchdog(60, 60, lambda: None))
    txn.producer = FencedClient()  # type: ignore[assignment]
    with pytest.raises(FencedError, match="fenced by a newer instance"):
        txn.poll()


def test_the_producer_retries_a_busy_transaction_quickly_unless_the_client_section_says_otherwise() -> None:
    """A transaction's first requests often meet the previous commit's markers still being
    written and are retried after ``retry.backoff.ms``: librdkafka's 100 ms held a quarter of
    the commits that long (benches/txn_round_trips.py)."""
    config = Config()
    settings = producer_settings(config)
    assert settings["retry.backoff.ms"] == TXN_RETRY_BACKOFF_MS <= 20
    assert settings["transactional.id"] == f"{config.kafka.group_id}-{config.kafka.instance_id}"
    config.kafka.client = {"retry.backoff.ms": "250"}
    assert producer_settings(config)["retry.backoff.ms"] == "250"
    assert producer_settings(config, batch_bytes=4096)["batch.size"] == 4096
