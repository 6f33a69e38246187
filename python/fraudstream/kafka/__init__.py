"""Kafka: exactly-once consume -> process -> produce with confluent-kafka.

- :mod:`fraudstream.kafka.schema`: the JSON transaction schema, batch decoding (in Rust) and
  encoding (for the load generator and tests).
- :mod:`fraudstream.kafka.pipeline`: :class:`KafkaPipeline`, the transactional processing loop
  with state in a changelog topic and a dead-letter topic.
"""

from fraudstream.kafka.pipeline import KafkaPipeline, RunStats
from fraudstream.kafka.schema import COUNTRIES, decode_batch, encode_transactions

__all__ = ["COUNTRIES", "KafkaPipeline", "RunStats", "decode_batch", "encode_transactions"]
