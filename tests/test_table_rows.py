"""Table records from Kafka, without a broker: decoding and applying them.

The table a stream of records leaves must not depend on how the records were cut into consume
batches (a restart reads the topic in other batches), and must equal the obvious oracle: per
key, apply the records one by one, the newest version time winning, a tombstone deleting.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream import _core
from fraudstream.config import TableSection
from fraudstream.kafka.table_source import VERSION_COLUMN, apply_rows, decode_rows

SECTION = TableSection(topic="t", columns=["home_country", "avg_amount"])


class Msg:
    def __init__(self, key: bytes | None, value: bytes | None) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def record(key: int, version: int | None, amount: Any = 1.0, home: Any = "FR") -> Msg:
    if version is None:
        return Msg(str(key).encode(), None)
    return Msg(
        str(key).encode(),
        json.dumps({"updated_at": version, "avg_amount": amount, "home_country": home}).encode(),
    )


def table_of(msgs: list[Msg], cuts: list[int]) -> dict[int, tuple[float, float]]:
    table = _core.LookupTable(columns=[*SECTION.columns, VERSION_COLUMN])
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(msgs))), len(msgs)]
    for lo, hi in itertools.pairwise(bounds):
        apply_rows(table, decode_rows(msgs[lo:hi], SECTION))
    keys = np.arange(10, dtype=np.int64)
    found = table.lookup(keys)
    return {
        int(k): (float(found["avg_amount"][i]), float(found[VERSION_COLUMN][i]))
        for i, k in enumerate(keys)
        if found["matched"][i]
    }


def oracle(msgs: list[Msg]) -> dict[int, tuple[float, float]]:
    held: dict[int, tuple[float, float]] = {}
    for m in msgs:
        key = int(m.key() or b"")
        value = m.value()
        if value is None:
            held.pop(key, None)
            continue
        r = json.loads(value)
        if key not in held or r["updated_at"] >= held[key][1]:
            held[key] = (float(r["avg_amount"]), float(r["updated_at"]))
    return held


records = st.lists(
    st.tuples(st.integers(0, 9), st.one_of(st.none(), st.integers(0, 5)), st.integers(0, 100)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(records, st.lists(st.integers(0, 40), max_size=6))
def test_the_table_is_the_oracle_whatever_the_batches(
    spec: list[tuple[int, int | None, int]], cuts: list[int]
) -> None:
    msgs = [record(k, v, float(a)) for k, v, a in spec]
    expected = oracle(msgs)
    assert table_of(msgs, cuts) == expected
    assert table_of(msgs, []) == expected


def test_stale_versions_are_counted_and_ignored() -> None:
    table = _core.LookupTable(columns=[*SECTION.columns, VERSION_COLUMN])
    assert apply_rows(table, decode_rows([record(1, 10, 5.0)], SECTION)) == 0
    assert apply_rows(table, decode_rows([record(1, 9, 7.0), record(1, 8, 8.0)], SECTION)) == 2
    found = table.lookup(np.array([1], np.int64))
    assert found["avg_amount"].tolist() == [5.0] and found[VERSION_COLUMN].tolist() == [10.0]


def test_bad_records_are_rejected_with_their_reason() -> None:
    msgs = [
        Msg(b"x1", b"{}"),
        Msg(None, b"{}"),
        Msg(b"99999999999999999999", b"{}"),
        Msg(b"1", b"[1]"),
        Msg(b"2", b'{"updated_at": true}'),
        Msg(b"3", b'{"updated_at": 1, "home_country": "NOT A CODE AT ALL"}'),
        Msg(b"4", b"not json"),
        Msg(b"5", b'{"updated_at": 1, "avg_amount": {"a": 1}}'),
        Msg(b"6", b'{"updated_at": 1, "avg_amount": false}'),
        Msg(b"7", None),  # a tombstone: fine
        Msg(b"8", b'{"updated_at": 3, "avg_amount": null}'),  # null: NaN, fine
    ]
    rows = decode_rows(msgs, SECTION)
    assert rows.keys == [7, 8] and rows.deleted == [True, False]
    assert all(math.isnan(v) for v in rows.values[1])  # absent and null: NaN
    reasons = rows.rejected
    assert len(reasons) == 9
    assert sum("is not an int64" in r for r in reasons) == 3
    assert "key 1: not a JSON object with the version time 'updated_at'" in reasons
    assert "key 2: version time 'updated_at' is not an integer (epoch ms)" in reasons
    assert any(r.startswith("key 3: 'home_country'") for r in reasons)
    assert any(r.startswith("key 5: 'avg_amount' is a dict") for r in reasons)
    assert any(r.startswith("key 6: 'avg_amount' is a bool") for r in reasons)


def test_codes_are_packed_as_the_decoder_packs_countries() -> None:
    rows = decode_rows([record(1, 1, 2.5, "DE")], SECTION)
    assert rows.values == [[float(_core.pack_code("DE") or 0), 2.5]]
