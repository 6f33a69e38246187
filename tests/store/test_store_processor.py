"""The feature store as a processor: its features read by the detector's rules, a restore that
rebuilds the state from the logged features without asking the store (which may hold other
values by then), and the ``[store]`` section building the processor ``fraudstream run`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from fraudstream.config import Config, StoreSection, as_dict, load_config, store_features
from fraudstream.errors import ConfigError
from fraudstream.fraud.detector import FraudDetector
from fraudstream.fraud.rules import Rule, default_rules
from fraudstream.kafka.processors import processor_factory
from fraudstream.store import DEFAULT_FEATURES, DEGRADED, FeatureStore, StoreEnrichment
from fraudstream.windows import hopping

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def chargebacks(url: str, prefix: str, values: dict[int, int]) -> None:
    client = redis.Redis.from_url(url)
    for card, n in values.items():
        client.hset(f"{prefix}{card}", mapping={"chargebacks_1y": n, "avg_amount_90d": 40.0})
    client.close()


CHARGEBACK_RULE = Rule(
    "known_chargebacks",
    hopping("1h", "1h"),
    {"chargebacks": ("max", "chargebacks_1y"), "n": "count"},
    "chargebacks >= 2",
    "{rule}: the card had {chargebacks:.0f} chargebacks in a year",
)


def processor(url: str, prefix: str) -> StoreEnrichment:
    store = FeatureStore(url, DEFAULT_FEATURES, key_prefix=prefix, timeout_ms=5_000)
    detector = FraudDetector(
        rules=[*default_rules(), CHARGEBACK_RULE],
        extra_features=tuple(DEFAULT_FEATURES),
        wall_clock_time=False,
    )
    return StoreEnrichment(detector, store)


def batch(cards: list[int], first: int) -> dict[str, np.ndarray[Any, Any]]:
    n = len(cards)
    return {
        "txn_id": np.arange(first, first + n, dtype=np.int64),
        "card_id": np.asarray(cards, np.int64),
        "terminal_id": np.full(n, 3, np.int64),
        "amount": np.full(n, 20.0),
        "country": np.full(n, 7, np.int64),
        "event_time": 1_700_000_000_000 + np.arange(first, first + n, dtype=np.int64) * 1_000,
    }


def test_a_rule_reads_a_store_feature_and_a_restore_replays_the_logged_values_not_the_store(
    redis_url: str, redis_prefix: str
) -> None:
    chargebacks(redis_url, redis_prefix, {1: 2, 2: 0, 3: 0})
    first = processor(redis_url, redis_prefix)
    before = first.snapshot()
    first.changes()
    out = first.process(batch([2, 1, 3, 2], 0))
    assert [(a.card_id, a.rule) for a in out.alerts] == [(1, "known_chargebacks")]
    assert out.scores is not None and not out.scores[DEGRADED].any()
    changes = first.changes()

    chargebacks(redis_url, redis_prefix, {1: 0, 2: 5, 3: 0})  # the store moves on
    again = processor(redis_url, redis_prefix)
    again.restore(before)
    again.apply_changes(changes)
    assert again.snapshot() == first.snapshot()  # the alert on card 1 is in both cool-downs
    assert again.store.counters.round_trips == 0  # the replay never asked the store

    # from here both read the store's new values (the first one's cache still holds the old
    # ones within their TTL: emptied): card 2 alerts, card 1 no longer qualifies
    first.store.clear_cache()
    a, b = first.process(batch([1, 2], 10)), again.process(batch([1, 2], 10))
    assert [(x.card_id, x.rule) for x in a.alerts] == [(x.card_id, x.rule) for x in b.alerts]
    assert [(x.card_id, x.rule) for x in a.alerts] == [(2, "known_chargebacks")]


def test_the_store_section_puts_the_store_in_front_of_the_detector(redis_url: str, redis_prefix: str) -> None:
    chargebacks(redis_url, redis_prefix, {5: 1})
    config = Config(store=StoreSection(url=redis_url, key_prefix=redis_prefix, timeout_ms=5_000)).validate()
    built = processor_factory(config)()
    assert isinstance(built, StoreEnrichment)
    assert isinstance(built.inner, FraudDetector)
    assert set(DEFAULT_FEATURES) <= set(built.inner.extra_features)  # read and logged by the detector
    out = built.process(batch([5, 6], 0))
    assert out.scores is not None and out.scores[DEGRADED].tolist() == [0, 0]
    assert built.counters()["store_rows"] == 2
    assert processor_factory(Config().validate())().__class__ is FraudDetector  # no url: no store


def test_the_example_config_alerts_on_a_card_with_chargebacks_in_the_store(
    redis_url: str, redis_prefix: str
) -> None:
    config = load_config(EXAMPLES / "feature-store.toml", env={})
    assert config.store.url and set(store_features(config.store)) == set(DEFAULT_FEATURES)
    config.store.url, config.store.key_prefix = redis_url, redis_prefix  # the test's server and keys
    config.detector.rules_file = str(EXAMPLES / "feature-store-rules.toml")
    chargebacks(redis_url, redis_prefix, {7: 3, 8: 1})
    out = processor_factory(config)().process(batch([8, 7, 9], 0))
    assert [(a.card_id, a.rule) for a in out.alerts] == [(7, "known_chargebacks")]
    assert "3 chargebacks" in out.alerts[0].reasons[0]


@pytest.mark.parametrize(
    ("store", "key"),
    [
        (StoreSection(url="http://127.0.0.1:1"), "store.url"),
        (StoreSection(features={"x": "many"}), "store.features.x"),
        (StoreSection(features={}), "store.features"),
        (StoreSection(timeout_ms=0), "store.timeout_ms"),
        (StoreSection(cache_ttl_ms=-1), "store.cache_ttl_ms"),
    ],
)
def test_bad_store_settings_are_refused_naming_the_key(store: StoreSection, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Config(store=store).validate()


def test_a_password_in_the_store_url_is_never_shown() -> None:
    config = load_config(env={"FRAUDSTREAM_STORE_URL": "redis://:s3cret@10.0.0.5:6379/2"})
    assert config.store.url.endswith("@10.0.0.5:6379/2")  # used as given
    shown = str(as_dict(config))
    assert "s3cret" not in shown and "redis://:<redacted>@10.0.0.5:6379/2" in shown
