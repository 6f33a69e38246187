"""The alert record: copies with a location, and its JSON bytes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fraudstream.alerts import Alert


def alert() -> Alert:
    return Alert(
        card_id=42,
        rule="model",
        reasons=("fraud score 0.91 (alert at 0.69)", "4 countries in 1 h"),
        event_time=1_700_000_000_123,
        trigger_txn_id=7,
        trigger_row=3,
        score=0.9123456789,
        model_version="abc",
        figures={"score": np.float64(0.9123456789), "n": np.int64(4), "ratio": 1 / 3},
        window=(1_700_000_000_000, 1_700_000_300_000),
    )


def test_located_is_a_copy_with_the_fields_set() -> None:
    a = alert()
    b = a.located(partition=2, offset=99, latency_ms=1.23456)
    assert b == dataclasses.replace(a, partition=2, offset=99, latency_ms=1.23456)
    assert (a.partition, a.offset, a.latency_ms) == (None, None, None)  # the original is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.offset = 1  # type: ignore[misc]


def test_located_refuses_a_field_alerts_do_not_have() -> None:
    with pytest.raises(TypeError, match="no field bogus"):
        alert().located(partition=1, bogus=2)


def test_to_json_is_compact_json_of_to_dict() -> None:
    a = alert().located(partition=2, offset=99, latency_ms=1.23456)
    raw = a.to_json()
    assert raw == json.dumps(a.to_dict(), separators=(",", ":")).encode()
    assert json.loads(raw)["figures"] == {"score": 0.912346, "n": 4, "ratio": 0.333333}
    assert json.loads(raw)["latency_ms"] == 1.235
