"""Kafka: exactly-once consume -> process -> produce with confluent-kafka, for any processor.

- :mod:`~fraudstream.kafka.schema`: the JSON transaction schema, batch decoding (in Rust) and
  encoding (for the load generator and tests).
- :mod:`~fraudstream.kafka.task`: :class:`PartitionTask`, one partition's decode -> dedup ->
  processor -> output records, with no Kafka calls (tests and the chaos oracle call it).
- :mod:`~fraudstream.kafka.tasks`: the task manager (assignment, restore, revocation, loss).
- :mod:`~fraudstream.kafka.transactions`: the transactional producer (commit, abort, fencing).
- :mod:`~fraudstream.kafka.pipeline`: :class:`KafkaPipeline`, the poll loop of one instance.
- :mod:`~fraudstream.kafka.processors`: the processor of the ``[detector]`` section.
- :mod:`~fraudstream.kafka.changelog`: state snapshots and changes in a changelog topic.
"""

from fraudstream.kafka.pipeline import KafkaPipeline, RunStats
from fraudstream.kafka.schema import COUNTRIES, decode_batch, encode_transactions
from fraudstream.kafka.task import PartitionTask

__all__ = ["COUNTRIES", "KafkaPipeline", "PartitionTask", "RunStats", "decode_batch", "encode_transactions"]
