"""The consumed batch's columns and the scored-transaction records, both built in one Rust
call: the same as reading each message and formatting each record in Python."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fakes import FakeMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.errors import InvalidBatchError
from fraudstream.kafka.consumed import ConsumedBatch
from fraudstream.kafka.task import score_records
from fraudstream.processor import DECISIONS


class ErrorMessage(FakeMessage):
    """A consumer error in place of a record (confluent-kafka returns these in the list)."""

    def error(self) -> str:  # type: ignore[override]
        return "partition EOF"


class OtherPartition(FakeMessage):
    def partition(self) -> int:
        return 3


def test_columns_are_what_each_message_says() -> None:
    msgs: list[Any] = [
        FakeMessage(b'{"a":1}', 10),
        FakeMessage(None, 11, _ts_type=0),  # a tombstone without a timestamp
        ErrorMessage(b"", 12),
        OtherPartition(b"x", 7, _timestamp=5),
        FakeMessage(b"y", 12, _timestamp=-3),
    ]
    batch = ConsumedBatch.of(msgs)
    assert batch.values == [b'{"a":1}', b"", b"", b"x", b"y"]
    assert batch.partitions.tolist() == [0, 0, -1, 3, 0]
    assert batch.offsets.tolist() == [10, 11, -1, 7, 12]
    assert batch.timestamps.tolist() == [1_700_000_000_000, -1, -1, 5, -1]
    assert batch.error_rows.tolist() == [2]
    assert [(p, rows.tolist()) for p, rows in batch.by_partition()] == [(0, [0, 1, 4]), (3, [3])]
    part = batch.take(np.array([3, 4]))
    assert part.messages == msgs[3:] and part.values == [b"x", b"y"] and part.offsets.tolist() == [7, 12]
    assert len(part.error_rows) == 0 and len(batch.take(np.array([1, 2])).error_rows) == 1


def test_an_object_that_is_not_a_message_is_refused() -> None:
    with pytest.raises(AttributeError):
        ConsumedBatch.of([object()])


def _python_record(txn: int, card: int, score: float, decision: int, offset: int, degraded: int) -> bytes:
    """The record as the task wrote it in Python before it was built in Rust."""
    s = "null" if score != score else f"{score:.6f}"
    flag = ',"degraded":true' if degraded else ""
    return (
        f'{{"txn_id":{txn},"card_id":{card},"score":{s},"decision":"{DECISIONS[decision]}",'
        f'"offset":{offset}{flag}}}'
    ).encode()


int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scores = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False),
    st.integers(0, 1 << 10).map(lambda k: k / 1024),  # exact ties at six decimals among them
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(int64s, int64s, scores, st.integers(0, len(DECISIONS) - 1), int64s, st.integers(0, 1)),
        max_size=30,
    )
)
def test_score_records_are_the_python_formatting_byte_for_byte(rows: list[tuple[Any, ...]]) -> None:
    n = len(rows)
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 6
    offsets = np.array(cols[4], dtype=np.int64)
    scored: dict[str, np.ndarray[Any, Any]] = {
        "row": np.arange(n, dtype=np.int64)[::-1].copy(),  # rows point into the offsets
        "txn_id": np.array(cols[0], dtype=np.int64),
        "card_id": np.array(cols[1], dtype=np.int64),
        "score": np.array(cols[2], dtype=np.float64),
        "decision": np.array(cols[3], dtype=np.int8),
        "degraded": np.array(cols[5], dtype=np.int8),
    }
    got = score_records(scored, offsets)
    want = [
        (str(r[1]).encode(), _python_record(r[0], r[1], r[2], r[3], int(offsets[n - 1 - i]), r[5]))
        for i, r in enumerate(rows)
    ]
    assert got == want
    for _, value in got:
        json.loads(value)  # NaN is null: valid JSON


def test_score_records_without_a_degraded_column_and_bad_decisions() -> None:
    scored: dict[str, np.ndarray[Any, Any]] = {
        "row": np.array([0]),
        "txn_id": np.array([1]),
        "card_id": np.array([2]),
        "score": np.array([0.5]),
        "decision": np.array([1]),
    }
    assert score_records(scored, np.array([9])) == [
        (b"2", b'{"txn_id":1,"card_id":2,"score":0.500000,"decision":"alert","offset":9}')
    ]
    with pytest.raises(InvalidBatchError, match="decision"):
        score_records({**scored, "decision": np.array([len(DECISIONS)])}, np.array([9]))
