"""The online feature store: historical features per card from a Redis-compatible server.

A batch job (outside fraudstream) writes each card's historical features into a Redis hash,
``HSET card:42 avg_amount_90d 73.5 chargebacks_1y 1``; :class:`FeatureStore` reads them for a
whole batch of transactions and :class:`StoreEnrichment` adds them as columns before the
detector (``[store]`` in the configuration, ``docs/feature_store.md``).

Per batch, :meth:`FeatureStore.lookup`:

1. takes the batch's distinct keys and serves what the local cache holds (at most
   ``cache_size`` keys, each for ``cache_ttl_ms`` after it was read: an LRU with a TTL);
2. reads every other key in ONE pipelined round trip (an ``HMGET`` per key, sent together),
   never one call per transaction; the round trip has a budget, ``timeout_ms``: the connect
   and the send time out after it, and all the replies must have come within it, whatever
   their pace (no retries);
3. when the round trip fails (the server is down, slow past the budget, or answers an error)
   the keys it was for get the declared defaults and their rows are flagged ``degraded``;
   the store then stays *open* (a circuit breaker) for ``cooloff_ms``: batches in that time
   do not try the server at all (cached keys are still served, the rest degraded), and the
   first batch after it tries again. A dead store thus costs at most one budget per
   cool-off, never one per batch.

A key the server answers for but does not hold (a card with no history) or a field it does
not hold gets the defaults, not flagged degraded (the store works; the card is new), counted
as ``missing``; a value that is not a finite number, or a key that is not a hash (the server
answers that HMGET with an error), gets the defaults too, counted as ``invalid``: one bad key
spoils only its own rows.

Invariants: what a batch returns depends on the server and the clock (processing time), so
the inner processor logs the looked-up values in its changes and a restore never asks the
server again (see :mod:`fraudstream.enrichment`). ``lookup`` never raises for the server's
sake; it raises only for bad input (keys that are not integers).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.config import Config, store_features
from fraudstream.enrichment import Enriched, Enrichment
from fraudstream.errors import ConfigError
from fraudstream.processor import Columns, Processor

DEFAULT_FEATURES = {"avg_amount_90d": 0.0, "txn_count_90d": 0.0, "chargebacks_1y": 0.0}
"""The ``[store.features]`` of a default configuration: a card's average amount and number of
transactions over 90 days and its chargebacks over a year (0 for a card the store does not know,
or while it is down)."""

DEGRADED = "degraded"
"""The flag column the scores carry: 1 when the row was scored with the defaults because the
store was down or slower than its budget."""


STORE_COUNTERS = ("store_rows", "store_degraded", "store_cache_hits", "store_fetched", "store_failures")
"""The counters a :class:`StoreEnrichment` adds to its inner processor's: rows looked up, rows
degraded, distinct keys served by the cache, keys read from the server, failed round trips (the
Prometheus metrics ``fraudstream_store_*`` of the Kafka pipeline)."""


@dataclass(frozen=True)
class Lookup:
    """One batch's lookup: per row, one float64 column per feature and ``degraded`` (bool);
    how many distinct keys the cache served and the server answered, and whether a round trip
    failed or was skipped (the breaker open)."""

    features: Columns
    degraded: np.ndarray[Any, Any]
    cache_hits: int = 0
    fetched: int = 0
    failed: bool = False
    skipped: bool = False


@dataclass
class StoreCounters:
    """What a :class:`FeatureStore` has done since it was built (plain ints: readable from
    another thread)."""

    batches: int = 0
    rows: int = 0
    keys: int = 0
    """Distinct keys asked for, summed over batches."""
    cache_hits: int = 0
    fetched: int = 0
    """Keys read from the server."""
    round_trips: int = 0
    """Pipelined requests sent (successful or not): at most one per batch."""
    failures: int = 0
    """Round trips that failed (down, timeout, error reply)."""
    skipped: int = 0
    """Batches that did not try the server because the breaker was open."""
    degraded_rows: int = 0
    missing: int = 0
    invalid: int = 0


class FeatureStore:
    """A Redis-compatible online store read per batch (see the module docstring).

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket).
        features: feature name -> default value (the hash's fields, in this order).
        key_prefix: the hash of key ``k`` is ``f"{key_prefix}{k}"``.
        timeout_ms: the budget of one batch's round trip (connect and each read).
        cache_size: keys kept in the local cache (0: no cache).
        cache_ttl_ms: how long a cached key is served after it was read.
        cooloff_ms: after a failed round trip, how long batches skip the server.
        clock: monotonic seconds (tests pass their own).
        client: a ``redis.Redis`` to use instead of one built from ``url``.
    """

    def __init__(
        self,
        url: str,
        features: Mapping[str, float],
        *,
        key_prefix: str = "card:",
        timeout_ms: float = 50.0,
        cache_size: int = 100_000,
        cache_ttl_ms: float = 60_000.0,
        cooloff_ms: float = 5_000.0,
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        if not features:
            raise ConfigError("a feature store needs at least one feature")
        bad = [n for n, v in features.items() if not math.isfinite(float(v))]
        if bad:
            raise ConfigError(f"feature defaults must be finite numbers: {bad}")
        if timeout_ms <= 0 or cache_size < 0 or cache_ttl_ms < 0 or cooloff_ms < 0:
            raise ConfigError("store timeout_ms must be > 0; cache_size, cache_ttl_ms, cooloff_ms >= 0")
        self.url = url
        self.names = tuple(features)
        self.defaults = np.array([float(features[n]) for n in self.names], np.float64)
        self.key_prefix = key_prefix
        self.timeout_s = timeout_ms / 1000
        self.cache_size = cache_size
        self.cache_ttl_s = cache_ttl_ms / 1000
        self.cooloff_s = cooloff_ms / 1000
        self.clock = clock
        self.client = client if client is not None else _client(url, self.timeout_s)
        self._cache: OrderedDict[int, tuple[float, np.ndarray[Any, Any]]] = OrderedDict()
        self._open_until: float | None = None
        self.counters = StoreCounters()
        self._lock = threading.Lock()
        """One lookup at a time: the partitions' processors share the store, its cache, breaker
        and counters, and ``kafka.process_threads`` can run two of them at once."""

    @property
    def available(self) -> bool:
        """False while the breaker is open (the last round trip failed within the cool-off)."""
        return self._open_until is None or self.clock() >= self._open_until

    def lookup(self, keys: np.ndarray[Any, Any] | Sequence[int]) -> Lookup:
        """The features of each row's key (see the module docstring): one round trip at most."""
        with self._lock:
            return self._lookup(keys)

    def _lookup(self, keys: np.ndarray[Any, Any] | Sequence[int]) -> Lookup:
        arr = np.asarray(keys)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"store keys must be integers, got {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        unique, inverse = np.unique(arr, return_inverse=True)
        values = np.empty((len(unique), len(self.names)), np.float64)
        degraded = np.zeros(len(unique), bool)
        now = self.clock()
        keys_list = unique.tolist()
        wanted = self._from_cache(keys_list, values, now)
        c = self.counters
        c.batches += 1
        c.rows += len(arr)
        c.keys += len(unique)
        c.cache_hits += len(unique) - len(wanted)
        failures, skipped = c.failures, c.skipped
        if wanted:
            fetched = self._fetch([keys_list[i] for i in wanted], now)
            if fetched is None:
                values[wanted] = self.defaults
                degraded[wanted] = True
            else:
                values[wanted] = fetched
        row_degraded = degraded[inverse]
        c.degraded_rows += int(row_degraded.sum())
        return Lookup(
            features={n: values[inverse, j] for j, n in enumerate(self.names)},
            degraded=row_degraded,
            cache_hits=len(unique) - len(wanted),
            fetched=0 if degraded.any() else len(wanted),
            failed=c.failures > failures,
            skipped=c.skipped > skipped,
        )

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    # -- the cache --------------------------------------------------------------------------

    def _from_cache(self, keys: list[int], values: np.ndarray[Any, Any], now: float) -> list[int]:
        """Fills ``values`` with the rows the cache holds for ``keys`` (each touched as recently
        used; an expired one dropped); returns the positions of the others."""
        cache = self._cache
        if not cache:
            return list(range(len(keys)))
        wanted: list[int] = []
        hits: list[int] = []
        rows: list[np.ndarray[Any, Any]] = []
        for i, key in enumerate(keys):
            entry = cache.get(key)
            if entry is None:
                wanted.append(i)
            elif now >= entry[0]:
                del cache[key]
                wanted.append(i)
            else:
                cache.move_to_end(key)
                hits.append(i)
                rows.append(entry[1])
        if hits:
            values[hits] = rows
        return wanted

    def _remember(self, keys: list[int], rows: np.ndarray[Any, Any], now: float) -> None:
        """Caches the rows just read (``keys`` are not in the cache: misses or expired, dropped)."""
        if not self.cache_size or self.cache_ttl_s <= 0:
            return
        expires = now + self.cache_ttl_s
        self._cache.update(zip(keys, [(expires, row) for row in rows], strict=True))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- the round trip ---------------------------------------------------------------------

    def _fetch(self, keys: list[int], now: float) -> np.ndarray[Any, Any] | None:
        """The rows of ``keys`` from the server in one pipelined round trip, or None when it
        failed or the breaker is open."""
        import redis

        if self._open_until is not None and now < self._open_until:
            self.counters.skipped += 1
            return None
        self.counters.round_trips += 1
        try:
            replies = self._hmget_all(keys)
        except (redis.RedisError, OSError):
            self.counters.failures += 1
            self._open_until = self.clock() + self.cooloff_s
            return None
        self._open_until = None
        rows = self._parse(replies)
        self.counters.fetched += len(keys)
        self._remember(keys, rows, now)
        return rows

    def _hmget_all(self, keys: list[int]) -> list[Any]:
        """One HMGET per key, written in one send and read back in order: a pipeline packed here
        (redis-py's packs argument by argument, several times slower for thousands of keys)."""
        head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(self.names))
        fields = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in (n.encode() for n in self.names))
        prefix = self.key_prefix
        names = [f"{prefix}{k}".encode() for k in keys]
        payload = b"".join([b"%s$%d\r\n%s\r\n%s" % (head, len(n), n, fields) for n in names])
        deadline = time.monotonic() + self.timeout_s  # the batch's budget, whatever the replies' pace
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([payload])
            return [_reply(conn, deadline) for _ in names]
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            pool.release(conn)

    def _parse(self, replies: list[Any]) -> np.ndarray[Any, Any]:
        """The rows of the HMGET replies: a value that is absent or not a finite number takes
        its feature's default."""
        width = len(self.names)
        wrong = [i for i, r in enumerate(replies) if r is None]  # an error reply: WRONGTYPE...
        for i in wrong:
            replies[i] = [b"nan"] * width  # present but not a number: the defaults, counted invalid
        flat = [v for reply in replies for v in reply]
        if len(flat) != width * len(replies):
            raise ValueError("the store answered an HMGET with the wrong number of fields")
        present = np.array([v is not None for v in flat], bool).reshape(-1, width)
        text = [b"nan" if v is None else v for v in flat]
        try:
            values = np.array(text, dtype=np.bytes_).astype(np.float64)
        except ValueError:  # some value is not a number: one at a time
            values = np.array([_number(v) for v in text], np.float64)
        values = values.reshape(-1, width)
        valid = present & np.isfinite(values)
        self.counters.missing += int((~present.any(axis=1)).sum())
        self.counters.invalid += int((present & ~valid).sum())
        return np.where(valid, values, self.defaults)


def _reply(conn: Any, deadline: float) -> Any:
    """The next HMGET reply on ``conn``, waiting until ``deadline`` (monotonic seconds) at most;
    None for an error reply (a key that is not a hash), which spoils that key only: the replies
    after it are read as usual."""
    import redis

    left = deadline - time.monotonic()
    if left <= 0:
        raise redis.TimeoutError("the batch's budget is spent")
    try:
        return conn.read_response(timeout=left)
    except redis.ResponseError:
        return None


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _client(url: str, timeout_s: float) -> Any:
    """A redis-py client whose every call is bounded by the budget: no retries (redis-py
    retries three times by default, which would triple it)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("the feature store needs redis-py: pip install 'fraudstream[store]'") from None
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except ValueError as exc:
        raise ConfigError(f"store.url: {exc}") from None


class StoreEnrichment(Enrichment):
    """A processor: each batch's features from a :class:`FeatureStore`, added as columns,
    then the ``inner`` processor; the scores carry :data:`DEGRADED` (0 or 1) per row.

    Args:
        inner: the processor that reads the features (the detector with ``extra_features``).
        store: the feature store (one may serve every partition's processor).
        key: the batch column whose value keys the store (``card_id``, ``customer_id``).
    """

    def __init__(self, inner: Processor, store: FeatureStore, *, key: str = "card_id") -> None:
        super().__init__(inner)
        self.store = store
        self.key = key
        self.counts = dict.fromkeys(STORE_COUNTERS, 0)
        """This processor's share of the store's work (:data:`STORE_COUNTERS`)."""

    def enrich(self, columns: Mapping[str, Any]) -> Enriched:
        if self.key not in columns:
            raise KeyError(f"missing column {self.key!r} (the store's key)")
        found = self.store.lookup(np.asarray(columns[self.key]))
        c = self.counts
        c["store_rows"] += len(found.degraded)
        c["store_degraded"] += int(found.degraded.sum())
        c["store_cache_hits"] += found.cache_hits
        c["store_fetched"] += found.fetched
        c["store_failures"] += int(found.failed)
        return Enriched(found.features, {DEGRADED: found.degraded.astype(np.int8)})

    def counters(self) -> dict[str, int]:
        return {**super().counters(), **self.counts}


def with_store(config: Config, factory: Callable[[], Processor]) -> Callable[[], Processor]:
    """``factory`` wrapped in a :class:`StoreEnrichment` when ``[store] url`` is set (one
    :class:`FeatureStore`, its connection, cache and breaker, shared by every partition's
    processor; its lookups are one at a time, whatever ``kafka.process_threads``)."""
    s = config.store
    if not s.url:
        return factory
    store = FeatureStore(
        s.url,
        store_features(s),
        key_prefix=s.key_prefix,
        timeout_ms=s.timeout_ms,
        cache_size=s.cache_size,
        cache_ttl_ms=s.cache_ttl_ms,
        cooloff_ms=s.cooloff_ms,
    )
    return lambda: StoreEnrichment(factory(), store, key=s.key)


__all__ = [
    "DEFAULT_FEATURES",
    "DEGRADED",
    "STORE_COUNTERS",
    "FeatureStore",
    "Lookup",
    "StoreCounters",
    "StoreEnrichment",
    "with_store",
]
