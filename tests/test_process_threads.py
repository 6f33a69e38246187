"""``kafka.process_threads``: partitions processed on worker threads while the loop sends the
finished ones. What exactly-once needs of it, checked without a broker (the end-to-end run with
two threads is in tests/kafka/test_pipeline_eos.py): outputs are sent in the order of the
partitions, and a refused send (the transaction aborts and every task is rewound) returns only
once no task is still running, so a rewind never races a task's processing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.transactions import CommitAborted


class SlowTask:
    """A partition task that waits for ``go`` (when given) and takes a while to finish."""

    def __init__(self, go: threading.Event | None = None) -> None:
        self.go = go
        self.started = threading.Event()
        self.finished = False

    def process_batch(self, batch: Any) -> str:
        self.started.set()
        if self.go is not None:
            self.go.wait(10)
            time.sleep(0.2)  # still running when the first partition's send is refused
        self.finished = True
        return f"out-{batch}"


def loop(tasks: dict[int, SlowTask], processed: Any) -> Any:
    """The part of a KafkaPipeline that ``_process_side_by_side`` uses."""
    return SimpleNamespace(
        _workers=ThreadPoolExecutor(2), tasks=SimpleNamespace(tasks=tasks), _processed=processed
    )


def test_outputs_are_sent_in_partition_order_whatever_finishes_first() -> None:
    go = threading.Event()
    tasks = {0: SlowTask(go), 1: SlowTask(), 2: SlowTask()}  # partition 0 finishes last
    sent: list[tuple[int, str]] = []

    def processed(partition: int, batch: Any, out: str) -> None:
        sent.append((partition, out))
        go.set()

    pipeline = loop(tasks, processed)
    go_later = threading.Timer(0.05, go.set)
    go_later.start()
    KafkaPipeline._process_side_by_side(pipeline, [(0, "a"), (1, "b"), (2, "c")])  # type: ignore[arg-type]
    assert sent == [(0, "out-a"), (1, "out-b"), (2, "out-c")]


def test_a_refused_send_returns_only_once_no_task_is_running() -> None:
    go = threading.Event()
    slow = SlowTask(go)
    tasks = {0: SlowTask(), 1: slow}

    def processed(partition: int, batch: Any, out: str) -> None:
        assert slow.started.wait(10)  # partition 1 is being processed (a task not started is cancelled)
        go.set()
        raise CommitAborted("the transaction takes no more records")

    pipeline = loop(tasks, processed)
    with pytest.raises(CommitAborted):
        KafkaPipeline._process_side_by_side(pipeline, [(0, "a"), (1, "b")])  # type: ignore[arg-type]
    assert slow.finished, "the abort would rewind a task another thread is still processing"
