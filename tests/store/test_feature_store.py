"""The online feature store against a real Redis server (scripts/redis): one pipelined round
trip per batch (counted by the server), the local cache and its TTL, and the faults: the server
stopped or frozen mid-run, scoring going on with the defaults, flagged and counted, the breaker
trying again once per cool-off, and recovery when the server is back."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from fraudstream.fraud.detector import FraudDetector
from fraudstream.kafka.gauges import PipelineGauges
from fraudstream.metrics import PipelineMetrics
from fraudstream.processor import ProcessorOutput
from fraudstream.store import DEFAULT_FEATURES, DEGRADED, FeatureStore, StoreEnrichment

NAMES = tuple(DEFAULT_FEATURES)


class Clock:
    """Monotonic seconds the test moves: TTLs and cool-offs without waiting or wall-clock checks."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def features_of(card: int) -> dict[str, float]:
    """The historical features the test's batch job writes for a card."""
    return {
        "avg_amount_90d": 10.0 + card / 4,
        "txn_count_90d": float(card % 17),
        "chargebacks_1y": float(card % 3),
    }


def seed(url: str, prefix: str, cards: range) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for card in cards:
        pipe.hset(f"{prefix}{card}", mapping=features_of(card))  # type: ignore[arg-type]
    pipe.execute()
    client.close()


def server_stats(client: redis.Redis) -> tuple[int, int]:
    """(read events the server processed, HMGET calls it ran), in one INFO call (itself one
    read) on an open connection: a pipelined batch arrives in one read."""
    info = client.info("all")
    return int(info["total_reads_processed"]), int(info.get("cmdstat_hmget", {}).get("calls", 0))


def expected(cards: np.ndarray[Any, Any], known: range) -> dict[str, np.ndarray[Any, Any]]:
    rows = [features_of(c) if c in known else DEFAULT_FEATURES for c in cards.tolist()]
    return {n: np.array([r[n] for r in rows]) for n in NAMES}


def test_a_batch_is_one_pipelined_round_trip_whatever_its_size(private_redis: Any) -> None:
    url = private_redis.url
    seed(url, "card:", range(200))
    store = FeatureStore(url, DEFAULT_FEATURES, cache_size=0, timeout_ms=5_000)
    store.lookup(np.array([0]))  # the connection's handshake is not a batch
    admin = redis.Redis.from_url(url)
    admin.ping()
    rng = np.random.default_rng(7)

    def run(sizes: tuple[int, ...], cards_up_to: int) -> tuple[int, int, int, int]:
        """Batches of these sizes (cards 200 and up are unknown to the store); the read events,
        HMGET calls and client round trips they cost, and their distinct cards."""
        reads0, hmget0 = server_stats(admin)
        trips0, distinct = store.counters.round_trips, 0
        for cards in (rng.integers(0, cards_up_to, size) for size in sizes):
            distinct += len(np.unique(cards))
            got = store.lookup(cards)
            want = expected(cards, range(200))
            for n in NAMES:
                np.testing.assert_array_equal(got.features[n], want[n])
            assert not got.degraded.any()  # an unknown card gets the defaults, but the store works
            assert len(np.unique(cards)) == got.fetched
        reads1, hmget1 = server_stats(admin)
        trips = store.counters.round_trips - trips0
        return reads1 - reads0 - 1, hmget1 - hmget0, trips, distinct  # reads: less INFO's own

    # batches within the server's 16 kB read buffer: the server reads each one in one go
    small = (1, 8, 32, 40, 3)
    reads, hmgets, trips, distinct = run(small, 250)
    assert reads == trips == len(small)
    assert hmgets == distinct  # one HMGET per distinct card of a batch, never one per row
    # large batches: still one request per batch, however many keys
    large = (1_000, 5_000)
    reads, hmgets, trips, distinct = run(large, 50_000)
    assert trips == len(large)
    assert hmgets == distinct > 5_000
    assert reads < distinct / 50  # thousands of keys, a few reads of chunks
    assert store.counters.missing > 0


def test_the_cache_serves_a_key_until_its_ttl_then_reads_it_again(redis_url: str, redis_prefix: str) -> None:
    seed(redis_url, redis_prefix, range(10))
    clock = Clock()
    store = FeatureStore(
        redis_url,
        DEFAULT_FEATURES,
        key_prefix=redis_prefix,
        cache_ttl_ms=1_000,
        clock=clock,
        timeout_ms=5_000,
    )
    first = store.lookup(np.array([1, 2, 1]))
    assert (first.cache_hits, first.fetched, store.counters.round_trips) == (0, 2, 1)
    redis.Redis.from_url(redis_url).hset(f"{redis_prefix}1", "avg_amount_90d", 999.0)
    clock.now += 0.5
    within = store.lookup(np.array([1, 2, 3]))
    assert (within.cache_hits, within.fetched, store.counters.round_trips) == (2, 1, 2)
    assert within.features["avg_amount_90d"][0] == features_of(1)["avg_amount_90d"]  # the cached value
    clock.now += 0.5  # card 1 and 2 were read 1 s ago: expired
    after = store.lookup(np.array([1, 2]))
    assert (after.cache_hits, after.fetched, store.counters.round_trips) == (0, 2, 3)
    assert after.features["avg_amount_90d"][0] == 999.0
    # cached keys only: no round trip at all
    store.lookup(np.array([2, 1, 1]))
    assert store.counters.round_trips == 3


def test_the_cache_is_bounded_and_forgets_the_least_recently_used_key(
    redis_url: str, redis_prefix: str
) -> None:
    seed(redis_url, redis_prefix, range(10))
    store = FeatureStore(redis_url, DEFAULT_FEATURES, key_prefix=redis_prefix, cache_size=2, timeout_ms=5_000)
    store.lookup(np.array([1, 2]))
    store.lookup(np.array([1]))  # 1 is now the most recently used
    store.lookup(np.array([3]))  # evicts 2
    assert store.lookup(np.array([1, 3])).fetched == 0
    assert store.lookup(np.array([2])).fetched == 1


def batch(cards: list[int], first_txn: int, t0: int) -> dict[str, np.ndarray[Any, Any]]:
    n = len(cards)
    return {
        "txn_id": np.arange(first_txn, first_txn + n, dtype=np.int64),
        "card_id": np.asarray(cards, np.int64),
        "terminal_id": np.asarray(cards, np.int64) % 50,
        "amount": np.linspace(5.0, 90.0, n),
        "country": np.full(n, 7, np.int64),
        "event_time": t0 + np.arange(n, dtype=np.int64) * 1_000,
    }


class RecordingDetector(FraudDetector):
    """The detector, keeping the last batch it was given (with the store's columns)."""

    seen: dict[str, Any]

    def process(self, columns: Any) -> ProcessorOutput:
        self.seen = dict(columns)
        return super().process(columns)


class Run:
    """The detector behind the store enrichment, batch after batch, with the pipeline's metrics."""

    def __init__(self, url: str, clock: Clock, timeout_ms: float) -> None:
        self.store = FeatureStore(
            url, DEFAULT_FEATURES, timeout_ms=timeout_ms, cooloff_ms=5_000, cache_ttl_ms=600_000, clock=clock
        )
        self.detector = RecordingDetector(wall_clock_time=False)
        self.processor = StoreEnrichment(self.detector, self.store)
        self.metrics = PipelineMetrics()
        self.gauges = PipelineGauges(self.metrics, "in")
        self.txn = 0
        self.t = 1_700_000_000_000
        self.scored = self.degraded = 0

    def process(self, cards: list[int]) -> ProcessorOutput:
        out = self.processor.process(batch(cards, self.txn, self.t))
        self.txn += len(cards)
        self.t += len(cards) * 1_000
        assert out.scores is not None
        assert len(out.scores["txn_id"]) == len(cards)  # every transaction scored
        self.scored += len(cards)
        self.degraded += int(out.scores[DEGRADED].sum())
        self.gauges.count_store(0, self.processor)
        return out

    def metric(self, name: str) -> float:
        return float(self.metrics.snapshot()[f"fraudstream_store_{name}_total"])


def degraded_cards(out: ProcessorOutput, cards: list[int]) -> set[int]:
    assert out.scores is not None
    return {c for c, d in zip(cards, out.scores[DEGRADED].tolist(), strict=True) if d}


def test_a_store_stopped_mid_run_costs_one_try_per_cool_off_and_scoring_goes_on(private_redis: Any) -> None:
    seed(private_redis.url, "card:", range(100))
    clock = Clock()
    run = Run(private_redis.url, clock, timeout_ms=2_000)
    healthy = run.process(list(range(0, 40)))
    assert degraded_cards(healthy, list(range(40))) == set()
    assert run.store.counters.round_trips == 1

    private_redis.down()  # between two batches: the server is gone, connections refused
    mixed = list(range(30, 60))  # 30..39 cached, 40..59 not
    out = run.process(mixed)
    assert degraded_cards(out, mixed) == set(range(40, 60))
    assert run.store.counters.failures == 1 and not run.store.available
    # the detector saw the cached cards' values and the declared defaults for the others
    want = expected(np.asarray(mixed), range(40))
    for n in NAMES:
        np.testing.assert_array_equal(run.detector.seen[n], want[n])
    for _ in range(5):  # within the cool-off: the server is not even tried
        run.process(list(range(60, 80)))
    assert run.store.counters.round_trips == 2
    assert run.store.counters.skipped == 5
    assert run.store.counters.failures == 1

    clock.now += 5.0  # the cool-off is over: one try, failed, and a new cool-off
    run.process(list(range(80, 90)))
    run.process(list(range(80, 90)))
    assert run.store.counters.failures == 2 and run.store.counters.round_trips == 3

    assert run.degraded == 20 + 5 * 20 + 2 * 10
    assert run.metric("degraded") == run.degraded == run.store.counters.degraded_rows
    assert run.metric("failures") == 2
    assert run.metric("lookups") == run.scored

    private_redis.up()  # back, empty: the batch job writes the features again
    seed(private_redis.url, "card:", range(100))
    run.process(list(range(90, 95)))  # still cooling off: not tried
    assert run.store.counters.round_trips == 3
    clock.now += 5.0
    back = run.process(list(range(90, 100)))
    assert degraded_cards(back, list(range(90, 100))) == set()
    assert run.store.available and run.store.counters.round_trips == 4
    assert run.metric("degraded") == run.degraded == 20 + 5 * 20 + 2 * 10 + 5


def test_a_frozen_store_costs_its_budget_once_then_the_breaker_skips_it(private_redis: Any) -> None:
    """SIGSTOP: connections are accepted by the kernel but nothing answers, the slow case."""
    seed(private_redis.url, "card:", range(100))
    clock = Clock()
    run = Run(private_redis.url, clock, timeout_ms=200)
    run.process(list(range(10)))
    private_redis.pause()
    try:
        out = run.process(list(range(10, 30)))
        assert degraded_cards(out, list(range(10, 30))) == set(range(10, 30))
        assert run.store.counters.failures == 1
        for _ in range(3):
            run.process(list(range(30, 40)))
        assert run.store.counters.round_trips == 2  # the budget was spent once
        assert run.store.counters.skipped == 3
    finally:
        private_redis.resume()
    clock.now += 5.0
    back = run.process(list(range(40, 50)))
    assert degraded_cards(back, list(range(40, 50))) == set()
    want = expected(np.arange(40, 50), range(100))
    found = run.store.lookup(np.arange(40, 50))  # from the cache now
    np.testing.assert_array_equal(found.features["avg_amount_90d"], want["avg_amount_90d"])
    assert run.metric("degraded") == 20 + 3 * 10


def test_bad_values_and_keys_that_are_not_hashes_get_the_defaults_and_spoil_nothing_else(
    redis_url: str, redis_prefix: str
) -> None:
    seed(redis_url, redis_prefix, range(5))
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{redis_prefix}1", mapping={"avg_amount_90d": "lots", "chargebacks_1y": "inf"})
    client.set(f"{redis_prefix}2", "a string, not a hash")  # HMGET answers WRONGTYPE for this key
    client.close()
    store = FeatureStore(redis_url, DEFAULT_FEATURES, key_prefix=redis_prefix, timeout_ms=5_000)
    got = store.lookup(np.array([0, 1, 2, 3, 9]))
    assert not got.degraded.any() and store.available  # the store works; two keys are bad
    want = expected(np.array([0, 1, 2, 3, 9]), range(5))
    want["avg_amount_90d"][1] = DEFAULT_FEATURES["avg_amount_90d"]
    want["chargebacks_1y"][1] = DEFAULT_FEATURES["chargebacks_1y"]
    for n in NAMES:
        want[n][2] = DEFAULT_FEATURES[n]
        np.testing.assert_array_equal(got.features[n], want[n])
    assert store.counters.invalid == 2 + len(NAMES)
    assert store.counters.missing == 1  # card 9
