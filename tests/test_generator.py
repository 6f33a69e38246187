"""The labelled traffic generator (``fraudstream produce``'s input) and its messages: seeded,
well under 1% of the cards compromised, labels that agree with the incidents, bounded
disorder, normal traffic busy enough that a count rule over-alerts, and JSON messages that
decode as before with the label beside them. Then the default model trained on it: shipped,
loadable, scoring exactly the features the detector computes, reproducible, its threshold
within its alert budget; and the evaluation's judging of alerts."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from fraudstream import _core
from fraudstream.alerts import Alert
from fraudstream.fraud.derived import DERIVED_FEATURES
from fraudstream.fraud.detector import FraudDetector
from fraudstream.fraud.model import DEFAULT_MODEL, Model, default_model
from fraudstream.fraud.prevention import HELD_OUT_SEEDS, TUNING_SEEDS
from fraudstream.fraud.train_default import (
    ALERT_BUDGET,
    CALIBRATION_SEED,
    EVALUATION_SEEDS,
    FOREST,
    MODEL_INPUTS,
    SHIPPED,
    TRAINING_SEED,
    arrival_features,
    budget_threshold,
    card_day_maxima,
    evaluate_alerts,
    same_model,
    train_default,
    training_traffic,
)
from fraudstream.generator import (
    DEFAULT_START_MS,
    KINDS,
    SHAPES,
    LabelledTraffic,
    card_transaction_profiles,
    card_transactions,
    labelled_transactions,
)
from fraudstream.kafka.schema import COUNTRIES, decode_batch, encode_transactions

TRAFFIC = labelled_transactions(100_000, cards=10_000, seed=3)


def test_the_same_seed_gives_the_same_traffic_and_another_seed_other_traffic() -> None:
    a, b = (
        labelled_transactions(20_000, cards=2_000, seed=11),
        labelled_transactions(20_000, cards=2_000, seed=11),
    )
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)
    assert a.incidents == b.incidents
    c = labelled_transactions(20_000, cards=2_000, seed=12)
    assert not np.array_equal(a.columns["card_id"], c.columns["card_id"])


def test_well_under_one_percent_of_the_cards_are_compromised_with_incidents_of_several_shapes() -> None:
    stats = TRAFFIC.statistics()
    assert len(TRAFFIC) == 100_000 and stats["cards"] == 10_000
    assert 0.002 <= stats["compromised_share"] <= 0.005
    assert stats["compromised_cards"] == len(TRAFFIC.incidents), "one incident per compromised card"
    assert 0 < stats["fraud_share"] < 0.005
    assert len(stats["incidents_by_kind"]) >= 3
    assert set(stats["incidents_by_kind"]) <= set(SHAPES)


def test_labels_agree_with_the_incidents() -> None:
    c = TRAFFIC.columns
    np.testing.assert_array_equal(c["fraud"], (c["incident"] >= 0).astype(np.int8))
    assert np.array_equal(np.unique(c["incident"][c["incident"] >= 0]), np.arange(len(TRAFFIC.incidents)))
    for inc in TRAFFIC.incidents:
        rows = np.flatnonzero(c["incident"] == inc.id)
        assert len(rows) == inc.transactions
        assert set(c["card_id"][rows].tolist()) == {inc.card_id}
        times = c["event_time"][rows]
        assert (int(times.min()), int(times.max())) == (inc.first_ms, inc.last_ms)
        assert TRAFFIC.start_ms <= inc.first_ms and inc.last_ms < TRAFFIC.end_ms


def test_incident_shapes() -> None:
    traffic = labelled_transactions(60_000, cards=6_000, story=True, incidents={k: 4 for k in SHAPES}, seed=5)
    c = traffic.columns
    assert [i.kind for i in traffic.incidents] == ["story", *[k for k in SHAPES for _ in range(4)]]
    assert {"story", *SHAPES} == {i.kind for i in traffic.incidents} < set(KINDS)
    for inc in traffic.incidents:
        rows = np.flatnonzero(c["incident"] == inc.id)
        countries = set(c["country"][rows].tolist())
        span = inc.last_ms - inc.first_ms
        if inc.kind == "story":
            story = {_core.pack_code(x) for x in ("FR", "DE", "ES", "IT")}
            assert inc.transactions == 23 and countries == story and span <= 6 * 3_600_000
            assert inc.first_ms - traffic.start_ms < 2 * 3_600_000 + 60_000
        elif inc.kind == "burst":
            assert 5 <= inc.transactions <= 8 and len(countries) >= 3 and span <= 5 * 60_000
        elif inc.kind == "spread":
            assert inc.transactions >= 12 and len(countries) >= 3 and span >= 2 * 3_600_000
        elif inc.kind == "testing":
            amounts = np.sort(c["amount"][rows])
            assert amounts[0] <= 2.0 and amounts[-1] >= 150.0
        elif inc.kind == "cashout":
            assert len(countries) == 1


def test_event_times_follow_arrival_within_the_disorder_bound() -> None:
    c = TRAFFIC.columns
    ts = c["event_time"]
    behind = np.maximum.accumulate(ts) - ts
    assert 0 < int(behind.max()) <= TRAFFIC.disorder_ms
    assert c["txn_id"].tolist() == list(range(len(TRAFFIC)))
    assert TRAFFIC.start_ms <= int(ts.min()) and int(ts.max()) < TRAFFIC.end_ms


def _cards_with(columns: dict[str, np.ndarray], count: int, within_ms: int) -> set[int]:
    """Cards with ``count`` transactions within ``within_ms`` of event time."""
    order = np.lexsort((columns["event_time"], columns["card_id"]))
    card, ts = columns["card_id"][order], columns["event_time"][order]
    k = count - 1
    hit = (card[k:] == card[:-k]) & (ts[k:] - ts[:-k] < within_ms)
    return set(card[k:][hit].tolist())


def test_normal_cards_travel_and_some_are_busy_enough_that_a_count_rule_over_alerts() -> None:
    c = TRAFFIC.columns
    normal = {k: v[c["fraud"] == 0] for k, v in c.items()}
    compromised = {i.card_id for i in TRAFFIC.incidents}
    counted = _cards_with(normal, 8, 3_600_000) - compromised
    assert len(counted) > 2 * len(compromised), "8 transactions within an hour: mostly normal cards"
    per_card = np.bincount(normal["card_id"])
    assert per_card.max() > 10 * np.median(per_card[per_card > 0]), "heavy-tailed activity"
    pairs = np.unique(np.stack([normal["card_id"], normal["country"]]), axis=1)
    countries = np.bincount(pairs[0])
    assert 0.05 < (countries >= 2).mean() < 0.6, "some cards leave home, most stay"


def test_some_normal_cards_are_replaced_by_new_numbers_during_the_traffic() -> None:
    c = TRAFFIC.columns
    old = np.unique(c["card_id"][c["card_id"] >= 2 * TRAFFIC.cards])
    assert 0.005 < len(old) / TRAFFIC.cards < 0.04, "about 2% of the cards"
    for number in old[:20].tolist():
        new = number - 2 * TRAFFIC.cards
        before = c["event_time"][c["card_id"] == number]
        after = c["event_time"][(c["card_id"] == new) & (c["fraud"] == 0)]
        assert len(after) == 0 or int(before.max()) <= int(after.min()), "the old number until the new one"


def test_messages_decode_as_before_with_the_label_beside_them() -> None:
    c = {k: v[:2_000] for k, v in TRAFFIC.columns.items()}
    c["fraud"] = c["fraud"].copy()
    c["fraud"][::7] = 1  # labels of both values in a short slice
    values = encode_transactions(c)
    labels = [json.loads(v)["fraud"] for v in values]
    assert labels == c["fraud"].tolist()
    decoded = decode_batch(values)
    assert not decoded.error_reason and "fraud" not in decoded.columns
    for name in ("txn_id", "card_id", "customer_id", "terminal_id", "amount", "country", "event_time"):
        np.testing.assert_array_equal(decoded.columns[name], c[name], err_msg=name)
    assert {_core.unpack_code(int(x)) for x in decoded.columns["country"]} <= set(COUNTRIES)
    unlabelled = encode_transactions({k: v for k, v in c.items() if k != "fraud"})
    assert all("fraud" not in json.loads(v) for v in unlabelled)
    assert decode_batch(unlabelled).columns["txn_id"].tolist() == c["txn_id"].tolist()


def test_the_load_generators_columns_still_encode() -> None:
    data = card_transactions(500, cards=50, seed=1)
    decoded = decode_batch(encode_transactions(data, first_txn_id=100))
    assert not decoded.error_reason
    assert decoded.columns["txn_id"].tolist() == list(range(100, 600))
    np.testing.assert_array_equal(decoded.columns["card_id"], data["card"])
    np.testing.assert_array_equal(decoded.columns["event_time"], data["ts"])
    want = [_core.pack_code(COUNTRIES[i]) for i in data["country"].tolist()]
    assert decoded.columns["country"].tolist() == want


def test_the_load_generators_profiles_agree_with_its_traffic() -> None:
    data = card_transactions(100_000, cards=500, seed=2)
    profiles = card_transaction_profiles(500)
    assert profiles["card_id"].tolist() == list(range(500))
    decoded = decode_batch(encode_transactions(data)).columns
    for card in range(500):  # a card spends most often in its home country
        countries, counts = np.unique(decoded["country"][decoded["card_id"] == card], return_counts=True)
        if counts.size:
            assert countries[counts.argmax()] == profiles["home_country"][card]
    assert abs(float(data["amount"].mean()) - float(profiles["avg_amount"][0])) < 1.0
    age_days = (DEFAULT_START_MS - profiles["account_opened"]) / 86_400_000
    assert age_days.min() >= 30 and age_days.max() <= 15 * 365


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="compromised"):
        labelled_transactions(1_000, cards=100, compromised=1.5)
    with pytest.raises(ValueError, match="unknown incident kinds"):
        labelled_transactions(1_000, cards=100, incidents={"heist": 1})
    with pytest.raises(ValueError, match="do not fit"):
        labelled_transactions(10, cards=100, days=1.0, incidents={"spread": 1})
    assert isinstance(labelled_transactions(1_000, cards=100, compromised=0.0), LabelledTraffic)


# -- the default model trained on this traffic ------------------------------------------------


def test_the_shipped_model_loads_and_reads_only_features_the_default_detector_computes() -> None:
    text = resources.files("fraudstream.fraud").joinpath(DEFAULT_MODEL).read_text()
    model = default_model()
    assert model.to_dict() == Model.from_dict(json.loads(text)).to_dict() == Model.load(SHIPPED).to_dict()
    assert model.kind == "tree_ensemble" and 0.0 < model.threshold < 1.0
    assert model.inputs == MODEL_INPUTS and len(model.params["tree_sizes"]) == FOREST["n_estimators"]
    detector = FraudDetector(model=default_model())
    available = {"TX_AMOUNT", *detector.features.feature_names, *DERIVED_FEATURES}
    assert set(model.feature_names) <= available
    assert any(n in DERIVED_FEATURES for n in model.feature_names), "the rule indicators are inputs"
    meta = model.metadata
    assert (
        meta["training_traffic"]["seed"] == TRAINING_SEED
        and meta["calibration_traffic"]["seed"] == CALIBRATION_SEED
    )
    used = {TRAINING_SEED, CALIBRATION_SEED}
    assert not used & {*EVALUATION_SEEDS, *TUNING_SEEDS, *HELD_OUT_SEEDS}
    assert default_model() is not default_model(), "a fresh model per call"


def test_the_detector_scores_what_the_model_was_trained_on() -> None:
    """The detector's scores equal the model's over :func:`arrival_features`: training saw the
    features the detector computes on arrival (running-maximum time, arrival ids)."""
    model = default_model()
    cols = {k: v[:30_000] for k, v in TRAFFIC.columns.items() if k not in ("fraud", "incident")}
    detector = FraudDetector(model=model, rules=[])
    got = np.full(30_000, np.nan)
    for lo in range(0, 30_000, 7_000):
        out = detector.process({k: v[lo : lo + 7_000] for k, v in cols.items()})
        assert out.scores is not None
        got[lo + np.asarray(out.scores["row"])] = out.scores["score"]
    np.testing.assert_allclose(got, model.score(arrival_features(cols)), rtol=1e-12)
    assert int((np.maximum.accumulate(cols["event_time"]) != cols["event_time"]).sum()) > 0, "disorder"


def test_training_is_reproducible_and_its_threshold_keeps_the_alert_budget() -> None:
    pytest.importorskip("sklearn")
    spec = {"cards": 3_000, "days": 3.0, "incidents": 60}

    def train(seed: int) -> Model:
        return train_default(seed=seed, calibration_seed=97, traffic=spec, calibration=spec)

    a, b = train(99), train(99)
    assert a.to_dict() == b.to_dict() and same_model(a, b)
    assert not same_model(a, train(98))
    traffic = training_traffic(97, spec)
    c = traffic.columns
    scores = a.score(arrival_features(c))
    counted = ~np.isin(c["card_id"], [i.card_id for i in traffic.incidents])
    counted &= c["event_time"] >= traffic.start_ms + 86_400_000
    maxima = card_day_maxima(scores[counted], c["card_id"][counted], c["event_time"][counted])
    normal = traffic.cards - sum(i.history for i in traffic.incidents)
    allowed = int(ALERT_BUDGET * normal / 10_000 * (traffic.days - 1))
    assert int((maxima >= a.threshold).sum()) <= allowed < int((maxima >= np.nextafter(a.threshold, 0)).sum())


def test_budget_threshold() -> None:
    maxima = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert budget_threshold(maxima, 0) == np.nextafter(0.9, 1)
    assert budget_threshold(maxima, 2) == np.nextafter(0.5, 1)
    assert int((maxima >= budget_threshold(maxima, 2)).sum()) == 2
    assert budget_threshold(maxima, 5) == 0.0


def test_alerts_are_judged_against_the_incidents() -> None:
    traffic = labelled_transactions(20_000, cards=2_000, incidents={"burst": 1, "spread": 1}, seed=4)
    c = traffic.columns
    burst, spread = traffic.incidents
    rows = np.flatnonzero(c["incident"] == burst.id)
    normal = int(np.flatnonzero(~np.isin(c["card_id"], [burst.card_id, spread.card_id]))[0])

    def alert(row: int, rule: str = "r") -> Alert:
        return Alert(int(c["card_id"][row]), rule, (), int(c["event_time"][row]), int(c["txn_id"][row]))

    late = np.flatnonzero((c["card_id"] == burst.card_id) & (c["event_time"] > burst.last_ms))
    alerts = [alert(int(rows[2]), "x"), alert(int(rows[3]), "x"), alert(normal), alert(int(late[0]))]
    flagged = np.zeros(len(traffic), bool)
    flagged[rows[2:]] = True
    flagged[normal] = True
    r = evaluate_alerts(traffic, alerts, flagged)
    assert (r["alerts"], r["true_alerts"], r["false_alerts"], r["incidents_caught"]) == (4, 2, 2, 1)
    assert r["false_alerts_on_compromised_cards_outside_their_incident"] == 1
    assert r["false_positive_cards"] == 1 and r["precision"] == 0.5 and r["recall"] == 0.5
    assert r["median_first_alerted_position"] == 3, "the third transaction of the burst"
    assert r["by_kind"] == {"burst": {"incidents": 1, "caught": 1}, "spread": {"incidents": 1, "caught": 0}}
    assert r["by_rule"] == {"r": {"alerts": 2, "true": 0}, "x": {"alerts": 2, "true": 2}}
    hits = len(rows) - 2
    assert r["transaction_precision"] == hits / (hits + 1)
    assert r["transaction_recall"] == hits / int(c["fraud"].sum())
    per_day = 10_000 / traffic.cards / traffic.days
    assert r["false_alerts_per_10k_cards_per_day"] == pytest.approx(2 * per_day)
