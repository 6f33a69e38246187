"""The transaction message schema (JSON), decoded in batches by the Rust core.

One JSON object per Kafka message; extra fields are ignored::

    {"txn_id": 1, "card_id": 42, "customer_id": 7, "terminal_id": 9, "amount": 12.5,
     "currency": "EUR", "country": "DE", "merchant": "Café Zürich", "category": 5812,
     "event_time": 1700000000000}

``fraudstream produce`` adds the generator's label, ``"fraud": 0`` or ``1``: the decoder ignores
it, an evaluation reads it back from the topic.

``event_time`` is epoch milliseconds (UTC). ``country`` (ISO 3166 alpha-2) and ``currency``
(ISO 4217) become integer columns holding their packed letters (``pack_code``/``unpack_code``);
``merchant`` becomes a stable 64-bit hash. ``category``, the merchant category code (ISO 18245,
an integer in ``[0, 9999]``), is optional: a record without one decodes with ``category = -1``.
A record that cannot be decoded goes to the dead-letter topic with its reason (see
:func:`decode_batch`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

CATEGORIES = (5411, 5812, 5541, 5999, 5311, 5732, 5912, 4111, 7011, 4829)
"""Merchant category codes the generator gives its terminals: grocery, restaurants, fuel,
miscellaneous retail, department stores, electronics, pharmacies, transport, hotels, money
transfer."""
NO_CATEGORY = -1
"""The ``category`` column of a record that has none."""


def merchant_category(terminal: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The merchant category of each terminal: a fixed function of the terminal id, so every
    transaction at a terminal (and every run of the generator) has the same category."""
    slot = (np.asarray(terminal, dtype=np.int64) * 2_654_435_761) % 1_000_003 % len(CATEGORIES)
    return np.asarray(CATEGORIES, dtype=np.int64)[slot]


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


def encode_transactions(columns: Mapping[str, np.ndarray[Any, Any]], first_txn_id: int = 0) -> list[bytes]:
    """JSON messages for transaction columns, named one of two ways:

    - the decoder's (:func:`decode_batch`, :func:`fraudstream.generator.labelled_transactions`):
      ``card_id``, ``event_time``, ``amount``, ``country`` (packed ISO alpha-2) and optionally
      ``txn_id``, ``customer_id``, ``terminal_id``;
    - :func:`fraudstream.generator.card_transactions`': ``card``, ``ts``, ``amount``,
      ``country`` (an index into :data:`COUNTRIES`) and optionally ``txn_id``, ``customer``,
      ``terminal``.

    Every message carries a ``category``: the column's, or its terminal's
    (:func:`merchant_category`); a ``category`` of -1 is left out.

    A ``fraud`` column (0/1) becomes the extra field ``"fraud"``: the decoder ignores it, and an
    evaluation reads the labels back from the input topic. Without ``txn_id``, ids count from
    ``first_txn_id``."""
    decoded = "card_id" in columns
    card_name, time_name = ("card_id", "event_time") if decoded else ("card", "ts")
    card = np.asarray(columns[card_name])
    n = len(card)
    txn = columns.get("txn_id", np.arange(first_txn_id, first_txn_id + n))
    cards = card.tolist()
    customers = columns.get("customer_id" if decoded else "customer", card).tolist()
    terminal = np.asarray(columns.get("terminal_id" if decoded else "terminal", (card * 7919) % 10_000))
    terminals = terminal.tolist()
    categories = np.asarray(columns.get("category", merchant_category(terminal))).tolist()
    amounts = columns["amount"].tolist()
    if decoded:
        names = {_core.pack_code(c): c for c in COUNTRIES}
        countries = [names.get(c) or _core.unpack_code(c) for c in columns["country"].tolist()]
    else:
        countries = [COUNTRIES[c % len(COUNTRIES)] for c in columns["country"].tolist()]
    times = columns[time_name].tolist()
    fraud = columns.get("fraud")
    labels = [None] * n if fraud is None else np.asarray(fraud).astype(np.int64).tolist()
    out = []
    for t, c, cu, te, a, co, cat, ts, label in zip(
        txn.tolist(), cards, customers, terminals, amounts, countries, categories, times, labels, strict=True
    ):
        doc = {
            "txn_id": t,
            "card_id": c,
            "customer_id": cu,
            "terminal_id": te,
            "amount": a,
            "currency": "EUR",
            "country": co,
            "merchant": f"m{te}",
            "category": cat,
            "event_time": ts,
        }
        if cat == NO_CATEGORY:
            del doc["category"]
        if label is not None:
            doc["fraud"] = label
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out
