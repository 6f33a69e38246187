"""The transaction message schema (JSON), decoded in batches by the Rust core.

One JSON object per Kafka message; extra fields are ignored::

    {"txn_id": 1, "card_id": 42, "customer_id": 7, "terminal_id": 9, "amount": 12.5,
     "currency": "EUR", "country": "DE", "merchant": "Café Zürich", "event_time": 1700000000000}

``event_time`` is epoch milliseconds (UTC). ``country`` (ISO 3166 alpha-2) and ``currency``
(ISO 4217) become integer columns holding their packed letters (``pack_code``/``unpack_code``);
``merchant`` becomes a stable 64-bit hash. A record that cannot be decoded goes to the
dead-letter topic with its reason (see :func:`decode_batch`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream import _core
from fraudstream.config import DecodeSection

COUNTRIES = (
    "DE", "FR", "IT", "ES", "NL", "BE", "AT", "PT", "PL", "SE", "DK", "FI", "IE", "CZ", "GR",
    "HU", "RO", "BG", "HR", "SK", "SI", "LT", "LV", "EE", "LU", "MT", "CY", "GB", "CH", "NO",
)  # fmt: skip
"""Country codes the generator draws from (index = the generator's country number)."""


@dataclass
class DecodedBatch:
    """Good records as columns (``source_index`` = position in the input list) and the bad ones."""

    columns: dict[str, np.ndarray[Any, Any]]
    error_index: np.ndarray[Any, Any]
    error_reason: list[str]

    def __len__(self) -> int:
        return len(self.columns["txn_id"])


def decode_batch(values: list[bytes], limits: DecodeSection | None = None) -> DecodedBatch:
    """Decodes message values in one GIL-free Rust pass; never raises for bad records."""
    lim = limits or DecodeSection()
    columns, index, reasons = _core.decode_transactions(
        values,
        max_record_bytes=lim.max_record_bytes,
        min_time=lim.min_event_time_ms,
        max_time=lim.max_event_time_ms,
        max_amount=lim.max_amount,
    )
    return DecodedBatch(columns, index, reasons)


def encode_transactions(columns: dict[str, np.ndarray[Any, Any]], first_txn_id: int = 0) -> list[bytes]:
    """JSON messages for generator columns ``card``, ``ts``, ``amount``, ``country`` (an index into
    :data:`COUNTRIES`) and optionally ``txn_id``, ``customer``, ``terminal``."""
    n = len(columns["card"])
    txn = columns.get("txn_id", np.arange(first_txn_id, first_txn_id + n))
    cards = columns["card"].tolist()
    customers = columns.get("customer", columns["card"]).tolist()
    terminals = columns.get("terminal", (columns["card"] * 7919) % 10_000).tolist()
    amounts = columns["amount"].tolist()
    countries = [COUNTRIES[c % len(COUNTRIES)] for c in columns["country"].tolist()]
    times = columns["ts"].tolist()
    return [
        json.dumps(
            {
                "txn_id": t,
                "card_id": c,
                "customer_id": cu,
                "terminal_id": te,
                "amount": a,
                "currency": "EUR",
                "country": co,
                "merchant": f"m{te}",
                "event_time": ts,
            },
            separators=(",", ":"),
        ).encode()
        for t, c, cu, te, a, co, ts in zip(
            txn.tolist(), cards, customers, terminals, amounts, countries, times, strict=True
        )
    ]
