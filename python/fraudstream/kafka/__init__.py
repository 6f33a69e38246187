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
- :mod:`~fraudstream.kafka.connect`: the broker check every command starts with.
- :mod:`~fraudstream.kafka.reader`: ``fraudstream alerts``, the committed output as a reader sees it.
- :mod:`~fraudstream.kafka.status`: the status line of ``fraudstream run`` on a terminal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudstream.kafka.pipeline import KafkaPipeline, RunStats
    from fraudstream.kafka.schema import COUNTRIES, decode_batch, encode_transactions
    from fraudstream.kafka.task import PartitionTask

# Imported on first use: ``python -m fraudstream.kafka.read_alerts`` imports this package
# first, and a package that imported the module it is about to run makes runpy warn.
_LAZY = {
    "KafkaPipeline": "pipeline",
    "RunStats": "pipeline",
    "COUNTRIES": "schema",
    "decode_batch": "schema",
    "encode_transactions": "schema",
    "PartitionTask": "task",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["COUNTRIES", "KafkaPipeline", "PartitionTask", "RunStats", "decode_batch", "encode_transactions"]
