"""Customer profiles as model features: a table lookup before the detector.

A profiles table (``[tables.NAME]``, read from a compacted Kafka topic by
:mod:`fraudstream.kafka.table_source`) holds per card its home country (a packed ISO code,
as the decoder packs ``country``), the epoch ms its account was opened and its average amount.
:class:`ProfileEnrichment` is a processor that looks each transaction's card up in it, turns
the profile into the features of :data:`PROFILE_FEATURES` at the transaction's event time, adds
them to the batch and hands the batch to the detector, which reads them as model inputs
(``FraudDetector(extra_features=PROFILE_FEATURES)``):

============================  ======================================================  =======
feature                       value                                                   default
============================  ======================================================  =======
``profile_missing``           1 when the card has no profile (the defaults are used)  1
``account_age_days``          (event time - account opened) / 1 day, at least 0       0
``avg_transaction_amount``    the profile's average amount                            0
``amount_vs_avg``             ln(amount / average amount)                             0
``is_foreign``                1 when the transaction's country is not the home one    0
============================  ======================================================  =======

A profile column that is null (NaN) takes its feature's default too. The lookup is a
processing-time lookup (the profile as the table holds it when the batch is processed; see
``docs/semantics.md``, "Tables from Kafka"); the features are computed from the transaction's
own event time, so a replay gives the same ages.

Invariants (:mod:`fraudstream.enrichment`): the enrichment keeps no state of its own (the
table restores from its topic); snapshot, changes and restore are the inner processor's, whose
replay log carries the features, so a restore rebuilds exactly what the scores were computed
from, whatever the table holds by then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.enrichment import Enriched, Enrichment
from fraudstream.processor import Processor

Columns = dict[str, np.ndarray[Any, Any]]

DAY_MS = 86_400_000
PROFILE_FEATURES = (
    "profile_missing",
    "account_age_days",
    "avg_transaction_amount",
    "amount_vs_avg",
    "is_foreign",
)
"""The features a profile gives, in the order of the table above."""


@dataclass(frozen=True)
class ProfileColumns:
    """Names of the profile table's columns (``[tables.NAME] columns``)."""

    home_country: str = "home_country"
    account_opened: str = "account_opened"
    avg_amount: str = "avg_amount"

    def names(self) -> tuple[str, str, str]:
        return (self.home_country, self.account_opened, self.avg_amount)


Lookup = Callable[[np.ndarray[Any, Any]], Mapping[str, np.ndarray[Any, Any]]]
"""Keys (int64) -> ``matched`` (bool) and one float64 column per table column, per key."""


def profile_features(
    amount: np.ndarray[Any, Any],
    country: np.ndarray[Any, Any],
    event_time: np.ndarray[Any, Any],
    found: Mapping[str, np.ndarray[Any, Any]],
    columns: ProfileColumns = ProfileColumns(),
) -> Columns:
    """The :data:`PROFILE_FEATURES` of transactions (amounts, packed country codes, event
    times) from their looked-up profiles (``matched`` and the profile columns)."""
    matched = np.asarray(found["matched"], bool)
    home = np.asarray(found[columns.home_country], np.float64)
    opened = np.asarray(found[columns.account_opened], np.float64)
    avg = np.asarray(found[columns.avg_amount], np.float64)
    age_known = matched & ~np.isnan(opened)
    age = np.where(age_known, (event_time - np.where(age_known, opened, 0.0)) / DAY_MS, 0.0)
    avg_known = matched & (avg > 0)  # NaN compares False
    safe_avg = np.where(avg_known, avg, 1.0)
    home_known = matched & ~np.isnan(home)
    return {
        "profile_missing": (~matched).astype(np.float64),
        "account_age_days": np.maximum(age, 0.0),
        "avg_transaction_amount": np.where(avg_known, avg, 0.0),
        "amount_vs_avg": np.where(avg_known, np.log(np.maximum(amount, 0.01) / safe_avg), 0.0),
        "is_foreign": (home_known & (country.astype(np.float64) != home)).astype(np.float64),
    }


def join_profiles(
    cards: np.ndarray[Any, Any], profiles: Mapping[str, np.ndarray[Any, Any]], columns: ProfileColumns
) -> Columns:
    """An in-memory lookup of ``cards`` in profile columns keyed by ``card_id`` (training and
    tests; the pipeline looks up the Kafka table instead): ``matched`` and the columns."""
    keys = np.asarray(profiles["card_id"], np.int64)
    order = np.argsort(keys, kind="stable")
    at = np.clip(np.searchsorted(keys, cards, sorter=order), 0, max(len(keys) - 1, 0))
    rows = order[at] if len(keys) else np.zeros(len(cards), np.int64)
    matched = keys[rows] == cards if len(keys) else np.zeros(len(cards), bool)
    out: Columns = {"matched": matched}
    for name in columns.names():
        values = np.asarray(profiles[name], np.float64)[rows] if len(keys) else np.zeros(len(cards))
        out[name] = np.where(matched, values, np.nan)
    return out


class ProfileEnrichment(Enrichment):
    """A processor: each batch's cards looked up in a profiles table, the profile features
    added as columns, then the ``inner`` processor (see the module docstring). The scores of
    an in-process call carry ``profile_missing`` per row too.

    Args:
        inner: the processor that reads the features (the detector).
        lookup: the table's lookup (:meth:`fraudstream.kafka.table_source.KafkaTable.lookup`).
        key / amount / country / time: the batch's columns.
        columns: the profile table's column names.
    """

    def __init__(
        self,
        inner: Processor,
        lookup: Lookup,
        *,
        key: str = "card_id",
        amount: str = "amount",
        country: str = "country",
        time: str = "event_time",
        columns: ProfileColumns = ProfileColumns(),
    ) -> None:
        super().__init__(inner)
        self.lookup = lookup
        self.key, self.amount, self.country, self.time = key, amount, country, time
        self.profile_columns = columns
        self.looked_up = 0
        self.missing = 0
        """Transactions whose card had no profile (scored with the defaults, flagged by
        ``profile_missing``), since this processor was built."""

    def enrich(self, columns: Mapping[str, Any]) -> Enriched:
        for name in (self.key, self.amount, self.country, self.time):
            if name not in columns:
                raise KeyError(f"missing column {name!r}")
        keys = np.ascontiguousarray(columns[self.key], np.int64)
        feats = profile_features(
            np.asarray(columns[self.amount], np.float64),
            np.asarray(columns[self.country]),
            np.asarray(columns[self.time], np.int64),
            self.lookup(keys),
            self.profile_columns,
        )
        self.looked_up += len(keys)
        self.missing += int(feats["profile_missing"].sum())
        return Enriched(features=feats, flags={"profile_missing": feats["profile_missing"]})

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "profiles_looked_up": self.looked_up, "profiles_missing": self.missing}


__all__ = [
    "PROFILE_FEATURES",
    "ProfileColumns",
    "ProfileEnrichment",
    "join_profiles",
    "profile_features",
]
