"""The hostile records of issue 15: each a (name, key, value, expected reason) that the pipeline
must dead-letter with that reason, and never stop for.

Grouped by what they attack: the JSON parser, each field's presence, type and range, the
encoding, the record's size, the event clock, and the message envelope (null values, keys).
Records that need the stream around them (duplicates of a good record) are made by the test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

GOOD = {
    "txn_id": 7_000_000_001,
    "card_id": 424_242,
    "customer_id": 7,
    "terminal_id": 9,
    "amount": 12.5,
    "currency": "EUR",
    "country": "DE",
    "merchant": "Café Zürich",
    "event_time": 1_700_000_000_000,
}
"""A valid record; hostile ones change one thing in it (the card is not in the good traffic)."""

FIELDS = tuple(GOOD)
MISSING, TYPE, RANGE, JSON_ERR = "missing field", "invalid type", "must be", "malformed JSON"
FUTURE, TOMBSTONE, TOO_LARGE = "event time in the future", "null value (a tombstone)", "exceeds the limit"


@dataclass(frozen=True)
class Hostile:
    name: str
    key: bytes | None
    value: bytes | None
    reason: str
    """A substring of the dead letter's reason."""


def _doc(**change: object) -> bytes:
    return json.dumps({**GOOD, **change}).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != field}).encode()


def hostile_records(now_ms: int, max_record_bytes: int) -> list[Hostile]:
    """The corpus; ``now_ms`` is about when the records are produced (their message timestamps),
    ``max_record_bytes`` the pipeline's ``decode.max_record_bytes``."""
    good = _doc()
    raw_utf8 = json.dumps(GOOD, ensure_ascii=False).encode()  # "Café" as UTF-8 bytes, not escaped
    out: list[Hostile] = []

    def add(name: str, value: bytes | None, reason: str, key: bytes | None = b"hostile") -> None:
        out.append(Hostile(name, key, value, reason))

    # the JSON parser
    for i, cut in enumerate((1, 2, 10, 40, len(good) // 2, len(good) - 1)):
        add(f"truncated-{i}", good[:cut], JSON_ERR)
    for name, raw in [
        ("empty", b""),
        ("not-json", b"{not json"),
        ("null", b"null"),
        ("array", b"[]"),
        ("number", b"123"),
        ("string", b'"txn"'),
        ("open-brace-space", b"{ "),
        ("close-brace", b"}"),
        ("trailing-garbage", good + b"x"),
        ("two-objects", good + good),
        ("nan-literal", _doc().replace(b"12.5", b"NaN")),
        ("infinity-literal", _doc().replace(b"12.5", b"Infinity")),
        ("single-quotes", good.replace(b'"', b"'")),
        ("unquoted-keys", b"{txn_id: 1}"),
        ("comment", b"// c\n" + good),
        ("bom", b"\xef\xbb\xbf" + good),
        ("nested-arrays", b"[" * 20_000 + b"]" * 20_000),
        ("binary", bytes(range(256))),
        ("nul-bytes", b"\x00" * 64),
        ("utf16", json.dumps(GOOD).encode("utf-16")),
        ("hex-number", _doc().replace(b"12.5", b"0x10")),
        ("leading-zero", _doc().replace(b"12.5", b"012")),
        ("unterminated-string", b'{"txn_id": "abc'),
    ]:
        add(name, raw, JSON_ERR)
    add("nested-objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, MISSING)  # skipped, then txn_id missing
    # each field missing, and null
    for f in FIELDS:
        add(f"missing-{f}", _without(f), MISSING)
        add(f"null-{f}", _doc(**{f: None}), MISSING)
    # each field of a wrong type
    wrong: dict[str, list[object]] = {
        "txn_id": ["1", 1.5, True, [1]],
        "card_id": ["42", 4.2, {"a": 1}],
        "customer_id": ["7", False],
        "terminal_id": [9.9, "9"],
        "amount": ["12.5", [12.5], True],
        "currency": [978, ["EUR"]],
        "country": [276, {"DE": 1}],
        "merchant": [123, ["m"]],
        "event_time": ["1700000000000", 1.7e12 + 0.5, [1]],
    }
    for f, values in wrong.items():
        for i, v in enumerate(values):
            add(f"type-{f}-{i}", _doc(**{f: v}), TYPE)
    # out of range
    for f in ("txn_id", "card_id", "customer_id", "terminal_id"):
        add(f"negative-{f}", _doc(**{f: -1}), RANGE)
    add("txn_id-above-i64", _doc(txn_id=2**64), JSON_ERR)
    for name, change, reason in [
        ("amount-negative", {"amount": -0.01}, "amount"),
        ("amount-huge", {"amount": 1e10}, "amount"),
        ("currency-short", {"currency": "EU"}, "currency"),
        ("currency-long", {"currency": "EURO"}, "currency"),
        ("currency-digit", {"currency": "E1R"}, "currency"),
        ("currency-huge", {"currency": "E" * 50_000}, "currency"),
        ("country-short", {"country": "D"}, "country"),
        ("country-long", {"country": "DEU"}, "country"),
        ("country-digits", {"country": "12"}, "country"),
        ("country-unicode", {"country": "ÄÖ"}, "country"),
        ("event-time-zero", {"event_time": 0}, "event_time"),
        ("event-time-negative", {"event_time": -5}, "event_time"),
        ("event-time-1999", {"event_time": 946_684_799_999}, "event_time"),
        ("event-time-2100", {"event_time": 4_102_444_800_001}, "event_time"),
        ("event-time-year-3000", {"event_time": 32_503_680_000_000}, "event_time"),
        ("event-time-seconds", {"event_time": 1_700_000_000}, "event_time"),
    ]:
        add(name, _doc(**change), reason)
    add("amount-overflow", good.replace(b"12.5", b"1e309"), JSON_ERR)
    # encoding
    add("latin1-merchant", raw_utf8.replace("Café".encode(), "Café".encode("latin-1")), JSON_ERR)
    add("lone-continuation", raw_utf8.replace("Café".encode(), b"Caf\xa9"), JSON_ERR)
    add("overlong-utf8", raw_utf8.replace("Café".encode(), b"Caf\xc0\xaf"), JSON_ERR)
    add("surrogate-escape", good.replace(b"Caf\\u00e9", b"Caf\\ud800"), JSON_ERR)
    # size
    add("oversized-value", b'{"pad": "' + b"x" * (max_record_bytes + 10) + b'"}', TOO_LARGE)
    add("oversized-key", b"not json", JSON_ERR, key=b"K" * 1_000_000)
    # the event clock: valid records too far ahead of their message's timestamp
    for name, ahead in [("10-minutes", 600_000), ("1-day", 86_400_000), ("2099-12-31", None)]:
        t = 4_102_358_400_000 if ahead is None else now_ms + ahead
        add(f"future-{name}", _doc(event_time=t, txn_id=7_000_000_100 + len(out)), FUTURE)
    # the envelope
    add("tombstone", None, TOMBSTONE)
    add("tombstone-no-key", None, TOMBSTONE, key=None)
    add("empty-key-empty-value", b"", JSON_ERR, key=b"")
    return out


__all__ = ["GOOD", "Hostile", "hostile_records"]
