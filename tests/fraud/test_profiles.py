"""Customer profiles as model features: the detector's extra feature columns, the profile
features, the enrichment processor and the generator's profiles.

A profile changes the score only through the features it gives; the enrichment keeps no state,
so the detector's replay log must carry the features for a restore to rebuild the cool-down
exactly (model alerts depend on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from toy_models import foreign_young_model

from fraudstream import _core
from fraudstream.errors import ConfigError, InvalidBatchError
from fraudstream.fraud.detector import FraudDetector
from fraudstream.fraud.model import profiles_model
from fraudstream.fraud.profiles import (
    DAY_MS,
    PROFILE_FEATURES,
    ProfileColumns,
    ProfileEnrichment,
    join_profiles,
    profile_features,
)
from fraudstream.fraud.train_default import PROFILE_INPUTS
from fraudstream.generator import labelled_transactions

Columns = dict[str, np.ndarray[Any, Any]]
FR, DE = _core.pack_code("FR"), _core.pack_code("DE")
T0 = 1_700_000_000_000


def batch(cards: list[int], countries: list[int], t0: int = T0) -> Columns:
    n = len(cards)
    return {
        "txn_id": np.arange(n, dtype=np.int64) + t0 % 1000,
        "card_id": np.asarray(cards, np.int64),
        "terminal_id": np.full(n, 7, np.int64),
        "amount": np.full(n, 20.0),
        "country": np.asarray(countries, np.int64),
        "event_time": t0 + np.arange(n, dtype=np.int64) * 60_000,
    }


PROFILES: Columns = {
    "card_id": np.array([1, 2, 3], np.int64),
    "home_country": np.array([FR, FR, DE], np.float64),
    "account_opened": np.array([T0 - 5 * DAY_MS, T0 - 2_000 * DAY_MS, T0 - 3 * DAY_MS], np.float64),
    "avg_amount": np.array([40.0, np.nan, 10.0]),
}


def enriched(profiles: Columns = PROFILES) -> ProfileEnrichment:
    det = FraudDetector(rules=[], model=foreign_young_model(), cooldown="1h", extra_features=PROFILE_FEATURES)
    return ProfileEnrichment(det, lambda keys: join_profiles(keys, profiles, ProfileColumns()))


def test_profile_features_at_event_time_with_declared_defaults() -> None:
    cards = np.array([1, 2, 3, 9], np.int64)
    found = join_profiles(cards, PROFILES, ProfileColumns())
    f = profile_features(
        np.array([80.0, 5.0, 10.0, 1.0]), np.array([DE, FR, DE, FR]), np.full(4, T0 + DAY_MS), found
    )
    assert f["profile_missing"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert f["account_age_days"].tolist() == [6.0, 2_001.0, 4.0, 0.0]
    assert f["is_foreign"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert f["avg_transaction_amount"].tolist() == [40.0, 0.0, 10.0, 0.0]  # null average: default
    assert f["amount_vs_avg"][0] == pytest.approx(np.log(2.0))
    assert f["amount_vs_avg"][[1, 2, 3]].tolist() == [0.0, 0.0, 0.0]


def test_the_model_reads_the_table_values() -> None:
    # card 1: young account in FR; card 2: old account in FR; card 9: no profile
    out = enriched().process(batch([1, 2, 9, 1], [DE, DE, DE, FR]))
    assert out.scores is not None
    scores = out.scores["score"]
    assert scores[0] > 0.5 > scores[1]  # the same foreign purchase: young account vs old one
    assert scores[2] < 0.5  # no profile: defaults (not foreign), flagged by profile_missing
    assert scores[3] < 0.5  # at home
    assert [a.card_id for a in out.alerts] == [1]
    assert out.scores["profile_missing"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_missing_profiles_are_counted() -> None:
    proc = enriched()
    proc.process(batch([1, 9, 9, 3], [FR, FR, DE, DE]))
    assert proc.counters()["profiles_missing"] == 2
    assert proc.counters()["profiles_looked_up"] == 4


def test_extra_features_are_in_the_replay_log() -> None:
    """A restore replays the logged features: the cool-down of a model alert comes back."""
    first, second = batch([1], [DE]), batch([1], [DE], T0 + 120_000)
    a = enriched()
    a.process(first)
    snap_before = a.snapshot()
    a.changes()  # what the snapshot holds
    a.process(first | {"txn_id": first["txn_id"] + 100})
    changes = a.changes()
    # a table that no longer knows card 1: only the replayed features can rebuild the state
    b = enriched({k: v[1:] for k, v in PROFILES.items()})
    b.restore(snap_before)
    b.apply_changes(changes)
    assert b.snapshot() == a.snapshot()
    assert len(a.process(second).alerts) == len(b.process(second).alerts) == 0  # within the cool-down
    assert len(enriched().process(second).alerts) == 1  # a fresh one alerts: the cool-down came back


def test_extra_feature_columns_are_validated() -> None:
    det = FraudDetector(rules=[], model=foreign_young_model(), extra_features=PROFILE_FEATURES)
    with pytest.raises(InvalidBatchError):
        det.process(
            batch([1], [FR]) | {"is_foreign": np.zeros(2)} | {k: np.zeros(1) for k in PROFILE_FEATURES[:4]}
        )
    with pytest.raises(ConfigError, match="hide"):
        FraudDetector(rules=[], extra_features=("TX_AMOUNT",))
    with pytest.raises(ConfigError, match="is_foreign"):
        FraudDetector(rules=[], model=foreign_young_model())  # the model reads columns nobody provides


def test_generated_profiles_are_consistent_with_the_traffic() -> None:
    t = labelled_transactions(30_000, cards=2_000, compromised=0.01, first_seen=0.5, seed=4)
    assert t.profiles is not None
    p = t.profiles
    c = t.columns
    assert len(np.unique(p["card_id"])) == len(p["card_id"])
    assert np.isin(c["card_id"], p["card_id"]).all()  # every card used has a profile
    assert (p["account_opened"] < t.start_ms).all()
    found = join_profiles(c["card_id"], p, ProfileColumns())
    normal = c["fraud"] == 0
    at_home = (c["country"] == found["home_country"])[normal].mean()
    assert at_home > 0.7  # normal cards shop mostly at home
    ratio = np.median(c["amount"][normal] / found["avg_amount"][normal])
    assert 0.6 < ratio < 1.4  # amounts around the profile's average
    # the same traffic with or without profiles: they come from a generator of their own
    again = labelled_transactions(30_000, cards=2_000, compromised=0.01, first_seen=0.5, seed=4)
    assert all(np.array_equal(again.columns[k], c[k]) for k in c)


def test_the_shipped_profiles_model_reads_the_profile_features() -> None:
    model = profiles_model()
    assert set(PROFILE_FEATURES) <= set(model.feature_names)
    assert [i.name for i in PROFILE_INPUTS] == list(PROFILE_FEATURES)
    t = labelled_transactions(20_000, cards=2_000, compromised=0.01, first_seen=0.5, seed=8)
    assert t.profiles is not None
    det = FraudDetector(model=model, extra_features=PROFILE_FEATURES)
    proc = ProfileEnrichment(det, lambda keys: join_profiles(keys, t.profiles or {}, ProfileColumns()))
    inputs = {k: v for k, v in t.columns.items() if k not in ("fraud", "incident")}
    out = proc.process(inputs)
    assert out.scores is not None and np.isfinite(out.scores["score"]).all()
    assert proc.counters()["profiles_missing"] == 0
