"""Streaming fraud features: the handbook's model inputs and more, computed by the Rust core.

>>> import numpy as np
>>> from fraudstream.fraud.features import StreamingFeatures
>>> day = 86_400_000
>>> f = StreamingFeatures()
>>> out = f.process({
...     "TRANSACTION_ID": np.array([1, 2, 3]),
...     "TX_TIME_MS": 1_533_081_600_000 + np.array([0, 1_000, 8 * day]),
...     "CUSTOMER_ID": np.array([7, 7, 7]), "TERMINAL_ID": np.array([5, 5, 5]),
...     "TX_AMOUNT": np.array([10.0, 30.0, 50.0]), "TX_FRAUD": np.array([1, 0, 0]),
... })
>>> out["CUSTOMER_ID_NB_TX_7DAY_WINDOW"].tolist(), out["TERMINAL_ID_RISK_7DAY_WINDOW"].tolist()
([1, 2, 1], [0.0, 0.0, 0.5])

Definitions (DAY = 86,400,000 ms; event order is (time, transaction id), ties by lower id):

- ``TX_DURING_WEEKEND``: the UTC weekday is Saturday or Sunday; ``TX_DURING_NIGHT``: UTC hour <= 6.
- Per card, for every window ``w`` (default 1 h, 1, 7 and 30 days) over ``(t - w, t]``
  including the current transaction: ``CUSTOMER_ID_NB_TX_<w>_WINDOW`` (count),
  ``CUSTOMER_ID_AVG_AMOUNT_<w>_WINDOW`` (mean amount), ``CUSTOMER_ID_AMOUNT_ZSCORE_<w>_WINDOW``
  (the amount against the card's previous transactions in the window), and with a country
  column ``CUSTOMER_ID_NB_COUNTRIES_<w>_WINDOW``.
- Per card, relative to the longest card window: ``CUSTOMER_ID_AMOUNT_RATIO`` (amount over the
  mean of the previous transactions, 1 when none), ``CUSTOMER_ID_MS_SINCE_PREV_TX`` (capped at
  the window), ``CUSTOMER_ID_NEW_TERMINAL`` (terminal not used by the card within it).
- Per terminal, with label delay ``D`` (default 7 days), for every window ``n`` over
  ``(t - (n + D), t - D]``: ``TERMINAL_ID_NB_TX_<n>_WINDOW``, ``TERMINAL_ID_NB_FRAUD_<n>_WINDOW``
  (known frauds), ``TERMINAL_ID_RISK_<n>_WINDOW`` (frauds / count, 0 when empty); and
  ``TERMINAL_ID_LAST_KNOWN_FRAUD`` (the latest transaction with a known label was a fraud).

Labels: the transactions' own fraud column is read with the delay model (known ``D`` after the
transaction); label events arriving at their own times go through :meth:`StreamingFeatures.add_labels`.

A cap on live cards (``max_cards``): a card is live from a transaction until it is idle for
``card_horizon`` (at least the longest card window) or evicted; a transaction of a card that is
not live while ``max_cards`` are live first evicts the card seen least recently (its latest
transaction is the oldest in (time, id) order). The evicted card's state is dropped before that
row, so its later transactions start afresh, and :meth:`StreamingFeatures.process_evicting`
says which cards went at which rows (for a caller that drops their other state there too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream import _core
from fraudstream._columns import get_column, int_column, value_column
from fraudstream.errors import ConfigError
from fraudstream.pieces import Pieces
from fraudstream.windows import Duration, to_millis

DAY_MS = 86_400_000
HANDBOOK_WINDOWS = ("1d", "7d", "30d")
DEFAULT_CUSTOMER_WINDOWS = ("1h", "1d", "7d", "30d")
DEFAULT_TERMINAL_WINDOWS = ("1d", "7d", "30d")
DEFAULT_LABEL_DELAY = "7d"

HANDBOOK_FEATURES: list[str] = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW" for n in (1, 7, 30)],
    *[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW" for n in (1, 7, 30)],
    *[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW" for n in (1, 7, 30)],
    *[f"TERMINAL_ID_RISK_{n}DAY_WINDOW" for n in (1, 7, 30)],
]
"""The handbook's 15 model inputs (section 3.3), in its order."""

ADDED_FEATURES: list[str] = [
    "CUSTOMER_ID_AMOUNT_RATIO",
    "CUSTOMER_ID_AMOUNT_ZSCORE_7DAY_WINDOW",
    "CUSTOMER_ID_AMOUNT_ZSCORE_30DAY_WINDOW",
    "CUSTOMER_ID_MS_SINCE_PREV_TX",
    "CUSTOMER_ID_NEW_TERMINAL",
    "CUSTOMER_ID_NB_TX_1HOUR_WINDOW",
    "TERMINAL_ID_LAST_KNOWN_FRAUD",
    *[f"TERMINAL_ID_NB_FRAUD_{n}DAY_WINDOW" for n in (1, 7, 30)],
]
"""Streaming features the handbook lacks, used by the ``*_streaming`` models."""

Columns = dict[str, np.ndarray[Any, Any]]
Evictions = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""``(rows, cards)``: card ``cards[i]`` evicted before row ``rows[i]``."""


def window_label(ms: int) -> str:
    """``86_400_000`` -> ``"1DAY"``, ``3_600_000`` -> ``"1HOUR"``, ``300_000`` -> ``"5MIN"``."""
    for unit, size in (("DAY", DAY_MS), ("HOUR", 3_600_000), ("MIN", 60_000), ("SEC", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}MS"


@dataclass(frozen=True)
class TransactionColumns:
    """Names of the input columns (the handbook's by default).

    ``fraud`` is read as delay-model labels (set it to None when the stream carries no
    labels); ``country`` enables the distinct-country features.
    """

    id: str = "TRANSACTION_ID"
    time: str = "TX_TIME_MS"
    customer: str = "CUSTOMER_ID"
    terminal: str = "TERMINAL_ID"
    amount: str = "TX_AMOUNT"
    fraud: str | None = "TX_FRAUD"
    country: str | None = None


class StreamingFeatures:
    """Per-transaction rolling features over a transaction stream, in event-time order.

    Args:
        customer_windows: card windows ``w``; features over ``(t - w, t]``.
        terminal_windows: terminal windows ``n``; features over ``(t - (n + D), t - D]``.
        label_delay: ``D``: a transaction's own label is known ``D`` after it.
        columns: input column names.
        max_cards: at most this many live cards (see the module docstring); None: unbounded.
        card_horizon: how long a card stays live after its latest transaction (default: the
            longest card window).

    Batches must continue the stream in (time, id) order; a batch that does not is rejected
    whole (:class:`~fraudstream.errors.InvalidBatchError` naming the row) and changes nothing.
    Features never depend on how the stream is cut into batches.
    """

    def __init__(
        self,
        *,
        customer_windows: Sequence[Duration] = DEFAULT_CUSTOMER_WINDOWS,
        terminal_windows: Sequence[Duration] = DEFAULT_TERMINAL_WINDOWS,
        label_delay: Duration = DEFAULT_LABEL_DELAY,
        columns: TransactionColumns | None = None,
        max_cards: int | None = None,
        card_horizon: Duration | None = None,
    ) -> None:
        self.columns = columns or TransactionColumns()
        self.customer_windows = [to_millis(w, "customer window") for w in customer_windows]
        self.terminal_windows = [to_millis(w, "terminal window") for w in terminal_windows]
        self.label_delay = to_millis(label_delay, "label_delay")
        for name, windows in (("customer", self.customer_windows), ("terminal", self.terminal_windows)):
            labels = [window_label(w) for w in windows]
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{name} windows must differ, got {labels}")
        if max_cards is not None and not (isinstance(max_cards, int) and max_cards >= 1):
            raise ConfigError(f"max_cards must be an integer >= 1 or None, got {max_cards!r}")
        self.max_cards = max_cards
        self.card_horizon = (
            max(self.customer_windows) if card_horizon is None else to_millis(card_horizon, "card_horizon")
        )
        c = self.columns
        self._engine = _core.FeatureEngine(
            customer_windows=self.customer_windows,
            terminal_windows=self.terminal_windows,
            label_delay=self.label_delay,
            countries=c.country is not None,
            column_names=(
                c.id,
                c.time,
                c.customer,
                c.terminal,
                c.amount,
                c.fraud or "fraud",
                c.country or "country",
            ),
            max_cards=max_cards,
            card_horizon=self.card_horizon,
        )

    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns, in order."""
        cw = [window_label(w) for w in self.customer_windows]
        tw = [window_label(w) for w in self.terminal_windows]
        names = ["TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        names += [f"CUSTOMER_ID_NB_TX_{w}_WINDOW" for w in cw]
        names += [f"CUSTOMER_ID_AVG_AMOUNT_{w}_WINDOW" for w in cw]
        names += [f"CUSTOMER_ID_AMOUNT_ZSCORE_{w}_WINDOW" for w in cw]
        if self.columns.country is not None:
            names += [f"CUSTOMER_ID_NB_COUNTRIES_{w}_WINDOW" for w in cw]
        names += ["CUSTOMER_ID_AMOUNT_RATIO", "CUSTOMER_ID_MS_SINCE_PREV_TX", "CUSTOMER_ID_NEW_TERMINAL"]
        names += [f"TERMINAL_ID_NB_TX_{w}_WINDOW" for w in tw]
        names += [f"TERMINAL_ID_NB_FRAUD_{w}_WINDOW" for w in tw]
        names += [f"TERMINAL_ID_RISK_{w}_WINDOW" for w in tw]
        names.append("TERMINAL_ID_LAST_KNOWN_FRAUD")
        return names

    def process(self, batch: Mapping[str, Any] | Any) -> Columns:
        """Features of a batch (a mapping of columns, a pyarrow RecordBatch/Table or a pandas
        DataFrame), one row per transaction, as named numpy columns; the batch's amount
        column is passed through as ``TX_AMOUNT``."""
        return self.process_evicting(batch)[0]

    def process_evicting(self, batch: Mapping[str, Any] | Any) -> tuple[Columns, Evictions]:
        """:meth:`process`, and the cards the cap evicted: ``(rows, cards)``, card
        ``cards[i]``'s state dropped before row ``rows[i]`` (rows ascending; empty without
        ``max_cards``)."""
        c = self.columns
        amounts = value_column(get_column(batch, c.amount), c.amount).astype(np.float64, copy=False)
        frauds = None if c.fraud is None else int_column(get_column(batch, c.fraud), c.fraud)
        countries = None if c.country is None else int_column(get_column(batch, c.country), c.country)
        raw = self._engine.process(
            int_column(get_column(batch, c.id), c.id),
            int_column(get_column(batch, c.time), c.time),
            int_column(get_column(batch, c.customer), c.customer),
            int_column(get_column(batch, c.terminal), c.terminal),
            np.ascontiguousarray(amounts),
            frauds,
            countries,
        )
        return self._name(raw, amounts), (raw["evicted_rows"], raw["evicted_cards"])

    def _name(self, raw: dict[str, Any], amounts: npt.NDArray[np.float64]) -> Columns:
        cw = [window_label(w) for w in self.customer_windows]
        tw = [window_label(w) for w in self.terminal_windows]
        out: Columns = {"TX_AMOUNT": amounts}
        out["TX_DURING_WEEKEND"] = raw["during_weekend"]
        out["TX_DURING_NIGHT"] = raw["during_night"]
        customer = [
            ("CUSTOMER_ID_NB_TX", "customer_nb_tx"),
            ("CUSTOMER_ID_AVG_AMOUNT", "customer_avg_amount"),
            ("CUSTOMER_ID_AMOUNT_ZSCORE", "customer_amount_z"),
            ("CUSTOMER_ID_NB_COUNTRIES", "customer_countries"),
        ]
        for prefix, key in customer:
            for label, column in zip(cw, raw[key], strict=False):
                out[f"{prefix}_{label}_WINDOW"] = column
        out["CUSTOMER_ID_AMOUNT_RATIO"] = raw["customer_amount_ratio"]
        out["CUSTOMER_ID_MS_SINCE_PREV_TX"] = raw["customer_ms_since_prev"]
        out["CUSTOMER_ID_NEW_TERMINAL"] = raw["customer_new_terminal"]
        terminal = [
            ("TERMINAL_ID_NB_TX", "terminal_nb_tx"),
            ("TERMINAL_ID_NB_FRAUD", "terminal_nb_fraud"),
            ("TERMINAL_ID_RISK", "terminal_risk"),
        ]
        for prefix, key in terminal:
            for label, column in zip(tw, raw[key], strict=True):
                out[f"{prefix}_{label}_WINDOW"] = column
        out["TERMINAL_ID_LAST_KNOWN_FRAUD"] = raw["terminal_last_known_fraud"]
        return out

    def add_labels(self, labels: Mapping[str, Any] | Any) -> None:
        """Adds label events (fraud feedback) with columns ``label_time`` (when the label is
        known, epoch ms), ``terminal``, ``transaction_time``, ``transaction_id`` and ``fraud``
        (0/1). A label counts for every transaction at or after its time; one whose time the
        stream has already passed is applied at once (and counted as late)."""
        names = ("label_time", "terminal", "transaction_time", "transaction_id", "fraud")
        self._engine.add_labels(*(int_column(get_column(labels, n), n) for n in names))

    @property
    def last_event(self) -> tuple[int, int] | None:
        """(time, id) of the latest transaction processed."""
        return self._engine.last_event

    def counters(self) -> dict[str, int]:
        """Transactions processed; label events applied, unmatched and late; cards evicted by
        ``max_cards`` (``cards_evicted``)."""
        return dict(self._engine.counters())

    def state_size(self) -> dict[str, int]:
        """Cards and terminals with state, transactions held, pending labels, bytes."""
        return dict(self._engine.state_size())

    def snapshot(self) -> bytes:
        """The whole state as versioned bytes."""
        return bytes(self._engine.snapshot())

    def snapshot_pieces(self) -> Pieces:
        """:meth:`snapshot`'s bytes as the core wrote them (a uint8 array), not copied."""
        return [self._engine.snapshot_array()]

    def restore(self, data: bytes) -> None:
        """Replaces the state with a snapshot from an engine of the same configuration."""
        self._engine.restore(data)


def event_order(
    table: Mapping[str, Any] | Any, columns: TransactionColumns | None = None
) -> npt.NDArray[np.intp]:
    """The permutation that sorts ``table`` into (time, id) order (stable)."""
    c = columns or TransactionColumns()
    ids = int_column(get_column(table, c.id), c.id)
    times = int_column(get_column(table, c.time), c.time)
    return np.lexsort((ids, times))


def iter_batches(table: Mapping[str, Any] | Any, names: Sequence[str], batch_size: int) -> Iterator[Columns]:
    """Consecutive row slices of the ``names`` columns of ``table`` (numpy views)."""
    arrays = {n: np.asarray(get_column(table, n)) for n in names}
    n = len(next(iter(arrays.values()))) if arrays else 0
    for lo in range(0, n, batch_size):
        yield {k: v[lo : lo + batch_size] for k, v in arrays.items()}


def compute_features(
    table: Mapping[str, Any] | Any,
    *,
    batch_size: int = 65_536,
    features: StreamingFeatures | None = None,
) -> Columns:
    """Replays a whole table through :class:`StreamingFeatures` in batches, in event-time
    order, and returns the features in the table's row order (plus its id column)."""
    f = features or StreamingFeatures()
    c = f.columns
    order = event_order(table, c)
    in_order = bool(np.array_equal(order, np.arange(len(order))))
    names = [n for n in (c.id, c.time, c.customer, c.terminal, c.amount, c.fraud, c.country) if n is not None]
    ordered = {
        n: np.asarray(get_column(table, n)) if in_order else np.asarray(get_column(table, n))[order]
        for n in names
    }
    parts = [f.process(batch) for batch in iter_batches(ordered, names, batch_size)]
    out: Columns = {c.id: np.asarray(ordered[c.id])}
    for name in ["TX_AMOUNT", *f.feature_names]:
        out[name] = np.concatenate([p[name] for p in parts]) if parts else np.empty(0)
    if not in_order:
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        out = {k: v[inverse] for k, v in out.items()}
    return out


def handbook_features(table: Mapping[str, Any] | Any, *, batch_size: int = 65_536) -> Columns:
    """``TRANSACTION_ID`` and the 15 handbook model inputs of every row of a handbook-format
    table, computed by the streaming code (windows of 1, 7 and 30 days, delay of 7 days)."""
    f = StreamingFeatures(customer_windows=HANDBOOK_WINDOWS, terminal_windows=HANDBOOK_WINDOWS)
    out = compute_features(table, batch_size=batch_size, features=f)
    return {name: out[name] for name in ["TRANSACTION_ID", *HANDBOOK_FEATURES]}
