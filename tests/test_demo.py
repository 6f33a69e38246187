"""``fraudstream demo`` and the detector it runs.

The demo generates a stream with injected fraud, runs it through the pipeline and must catch
the story's incident; its files are what a person or a script reads afterwards. The detector
tests pin what the demo (and the Kafka pipeline) relies on: batches never change which
alerts are raised, every transaction is featurized on arrival at the event clock, idle time
closes the rules' windows, bad input is rejected whole. The processor contract itself
(snapshots, changes, one cool-down) is tested in ``tests/fraud/test_detector_contract.py``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.cli import main
from fraudstream.demo import PLOT_HINT, VISIBLE_AT, DemoOptions, generate_stream, run_demo
from fraudstream.errors import ConfigError, InvalidBatchError
from fraudstream.fraud.detector import FraudDetector, detector_features
from fraudstream.fraud.features import compute_features
from fraudstream.fraud.model import Model, ModelInput, default_model
from fraudstream.fraud.rules import default_rules
from fraudstream.processor import ALERT, DECISIONS

EVENTS = 20_000
SUMMARY_TYPES: dict[str, Any] = {
    "events": int,
    "events_per_s": float,
    "alerts": int,
    "incident_detected": bool,
    "incident_detection_delay_ms": float,
    "incident_first_alert_index": int,
    "median_first_alert_index": float,
    "prevented_euros": float,
    "fraud_euros": float,
    "prevented_fraction": float,
    "latency_ms": dict,
    "precision": float,
    "recall": float,
}
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def check_outputs(out: Path, stdout: str) -> dict[str, Any]:
    """The files of a run, checked; returns summary.json."""
    summary = json.loads((out / "summary.json").read_text())
    for key, kind in SUMMARY_TYPES.items():
        assert key in summary, key
        value = summary[key]
        assert isinstance(value, kind) or (kind is float and isinstance(value, int)), (key, value)
        assert not (kind is not bool and isinstance(value, bool)), (key, value)
    assert abs(summary["events"] - EVENTS) <= 0.05 * EVENTS and summary["events_per_s"] > 0, "about --events"
    assert summary["incident_detected"] is True
    assert 1 <= summary["incident_first_alert_index"] <= VISIBLE_AT, (
        "the story is caught by its 5th transaction"
    )
    assert 0.0 < summary["prevented_euros"] <= summary["fraud_euros"]
    assert summary["prevented_fraction"] == pytest.approx(summary["prevented_euros"] / summary["fraud_euros"])
    assert set(summary["latency_ms"]) >= {"p50", "p99"}
    assert 0 <= summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert 0.0 <= summary["precision"] <= 1.0 and 0.0 <= summary["recall"] <= 1.0

    lines = (out / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == summary["alerts"] >= 1
    alerts = [json.loads(line) for line in lines]
    keys = {"card_id", "trigger_txn_id", "event_time", "rule", "reasons", "reason", "latency_ms"}
    for a in alerts:
        assert keys | {"score", "model_version", "trigger", "scenario"} <= set(a)
        assert a["latency_ms"] >= 0 and a["reasons"] and a["reason"] == "; ".join(a["reasons"])
        assert {"terminal", "amount", "country", "country_code"} <= set(a["trigger"])
        assert (a["score"] is not None) == (a["rule"] == "model") == (a["model_version"] is not None)
    story = [a for a in alerts if a["scenario"] == "story incident"]
    assert len(story) == 1, "one alert for the incident"
    assert story[0]["rule"] == "model" and story[0]["reasons"][0].startswith("fraud score ")

    assert (
        "events/s" in stdout and "the story's incident: alerted at its " in stdout and "precision" in stdout
    )
    assert "prevented: EUR " in stdout and "visible at its 5th fraudulent transaction" in stdout
    if HAS_MATPLOTLIB:
        assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not (out / "demo.png").exists()
        assert PLOT_HINT in stdout
    return summary


def test_demo_command_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream", "demo", "--events", str(EVENTS), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = check_outputs(out, done.stdout)
    assert summary["rate"] is None
    # not a terminal: progress goes to log lines (stderr), never a carriage-return bar on stdout
    assert "\r" not in done.stdout


def test_demo_in_process(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    text = io.StringIO()
    result = run_demo(DemoOptions(events=EVENTS, seed=7, out=out, progress=False), out=text)
    summary = check_outputs(out, text.getvalue())
    assert summary == json.loads(json.dumps(result.summary)), "summary.json is the returned summary"
    assert len(result.alerts) == summary["alerts"]
    incident = summary["scenarios"][0]
    assert incident["kind"] == "story incident" and incident["transactions"] == 23
    assert incident["visible_index"] == VISIBLE_AT and incident["rule"] == "model" and incident["on_time"]
    assert incident["transactions_after_alert"] == 23 - incident["first_alert_index"]
    assert incident["event_time_delay_ms"] <= 0, "alerted by the time it was visible"
    kinds = {s["kind"] for s in summary["scenarios"]}
    assert kinds == {
        "story incident", "fast burst", "spend spree", "card testing", "terminal drained", "cloned card",
        "online fraud",
    }  # fmt: skip
    for s in summary["scenarios"]:
        assert 0.0 <= s["prevented_euros"] <= s["fraud_euros"]
        assert s["detected"] == (s["first_alert_index"] is not None)
        if s["detected"]:
            assert 1 <= s["first_alert_index"] <= s["transactions"]
            assert s["on_time"] == (s["first_alert_index"] <= s["visible_index"])
    assert summary["alerts_by_rule"] and sum(summary["alerts_by_rule"].values()) == summary["alerts"]


def test_demo_paced_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "paced"
    assert main(["demo", "--events", "5000", "--rate", "20000", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rate"] == 20_000 and summary["incident_detected"]
    assert summary["wall_seconds"] >= 5_000 / 20_000 * 0.9, "paced, not as fast as possible"
    assert "paced at 20,000 events/s" in capsys.readouterr().out


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--events", "10"]) == 2
    assert main(["demo", "--rate", "0"]) == 2
    assert main(["demo", "--events", "1000", "--model", "/nonexistent/model.json", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--events must be at least 1000" in err and "--rate must be > 0" in err
    assert "--model /nonexistent/model.json: " in err


def test_demo_with_a_model_file(tmp_path: Path) -> None:
    model = default_model()
    model.threshold = 0.99
    path = tmp_path / "model.json"
    model.save(path)
    text = io.StringIO()
    result = run_demo(DemoOptions(events=5_000, out=tmp_path / "o", progress=False, model=path), out=text)
    assert result.summary["model"]["file"] == str(path)
    assert f"model: {path}" in text.getvalue()


# -- the stream ---------------------------------------------------------------------------


def test_the_stream_is_seeded_labelled_and_boundedly_disordered() -> None:
    a, b = generate_stream(10_000, seed=5), generate_stream(10_000, seed=5)
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
    ts = a.columns["event_time"]
    assert int((np.maximum.accumulate(ts) - ts).max()) <= a.disorder_ms
    assert not np.array_equal(ts, np.sort(ts)), "some disorder"
    first = int(a.columns["txn_id"][0])
    assert a.columns["txn_id"].tolist() == list(range(first, first + len(a))), "numbered in arrival order"
    assert int(a.fraud.sum()) == sum(len(s.txn_ids) for s in a.scenarios)
    story = a.scenarios[0]
    assert story.kind == "story incident" and len(story.txn_ids) == 23
    assert story.times.max() - story.times.min() <= 6 * 3_600_000
    assert len(set(a.columns["country"][np.isin(a.columns["txn_id"], story.txn_ids)].tolist())) == 4
    for s in a.scenarios:
        assert (
            s.visible_index == min(VISIBLE_AT, len(s.txn_ids))
            and s.visible_at == s.times[s.visible_index - 1]
        )
        assert (np.diff(s.txn_ids) > 0).all(), "in arrival order"
    for burst in (s for s in a.scenarios if s.kind == "fast burst"):
        assert len(burst.txn_ids) >= 5 and burst.times.max() - burst.times.min() <= 5 * 60_000
    # the history before the stream: the same cards, no fraud, earlier ids
    assert a.history is not None and len(a.history["txn_id"]) > len(a)
    assert a.history["txn_id"][-1] < a.columns["txn_id"][0]
    assert (
        int(a.history["event_time"].max()) < a.start_ms <= int(a.columns["event_time"].min()) + a.disorder_ms
    )


# -- the detector -------------------------------------------------------------------------

STREAM = generate_stream(20_000, seed=11)


def run_detector(detector: FraudDetector, batch_size: int) -> list[tuple[int, int, str]]:
    cols, n = STREAM.columns, len(STREAM)
    alerts = []
    for lo in range(0, n, batch_size):
        alerts += detector.process({k: v[lo : lo + batch_size] for k, v in cols.items()}).alerts
    alerts += detector.flush().alerts
    return sorted((a.card_id, a.trigger_txn_id, a.rule) for a in alerts)


def test_rule_alerts_do_not_depend_on_batching() -> None:
    runs = [
        run_detector(FraudDetector(rules=default_rules(horizons=True)), size)
        for size in (len(STREAM), 4_096, 333)
    ]
    assert runs[0] == runs[1] == runs[2]
    story = STREAM.scenarios[0]
    mine = [a for a in runs[0] if a[0] == story.card]
    assert len(mine) == 1 and mine[0][2] == "spread_6h"


def test_features_are_computed_on_arrival_at_the_event_clock() -> None:
    """Every transaction is featurized in the call it arrives in, at ``t_eff`` (the newest
    event time so far) with the arrival counter as its id; equal to the batch computation
    over the whole stream with those times and ids."""
    detector = FraudDetector(rules=[])
    seen: list[dict[str, np.ndarray]] = []
    process = detector.features.process_evicting  # the detector's one call into the features

    def spy(batch: Any) -> Any:
        out, evicted = process(batch)
        seen.append(
            {"txn_id": np.asarray(batch["txn_id"]).copy(), "ts": np.asarray(batch["ts"]).copy(), **out}
        )
        return out, evicted

    detector.features.process_evicting = spy  # type: ignore[method-assign]
    sizes = []
    for lo in range(0, len(STREAM), 1_000):
        batch = {k: v[lo : lo + 1_000] for k, v in STREAM.columns.items()}
        out = detector.process(batch)
        sizes.append(
            (len(batch["txn_id"]), len(seen[-1]["ts"]), len(out.scores["score"] if out.scores else []))
        )
    assert all(a == b == c for a, b, c in sizes), "every row featurized and scored in its own call"
    c = STREAM.columns
    t_eff = np.maximum.accumulate(c["event_time"])
    m = detector.metrics()
    assert m["scored"] == m["events"] == len(STREAM)
    assert m["clamped"] == int((t_eff != c["event_time"]).sum()) > 0, "the stream is disordered"
    got = {k: np.concatenate([b[k] for b in seen]) for k in seen[0]}
    np.testing.assert_array_equal(got["txn_id"], np.arange(len(STREAM)))
    np.testing.assert_array_equal(got["ts"], t_eff)
    table = {
        "txn_id": np.arange(len(STREAM)), "ts": t_eff, "card": c["card_id"], "terminal": c["terminal_id"],
        "amount": c["amount"], "country": c["country"],
    }  # fmt: skip
    want = compute_features(table, features=detector_features())
    for name in detector.features.feature_names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)


def test_a_transaction_behind_the_clock_is_scored_at_once_and_counted() -> None:
    detector = FraudDetector(rules=default_rules())
    row = {k: v[:1] for k, v in STREAM.columns.items()}
    t = int(row["event_time"][0])
    detector.process({**row, "event_time": np.array([t + 60_000]), "txn_id": np.array([10**9])})
    detector.process({**row, "event_time": np.array([t + 120_000]), "txn_id": np.array([10**9 + 1])})
    out = detector.process({**row, "event_time": np.array([t]), "txn_id": np.array([10**9 + 2])})
    assert out.scores is not None and out.scores["txn_id"].tolist() == [10**9 + 2], "scored in its call"
    m = detector.metrics()
    assert (m["events"], m["scored"], m["clamped"], m["late"]) == (3, 3, 1, 0), "still in the 24 h windows"
    assert (
        m["watermark"] == t + 115_000
        and m["watermark_lag_ms"] == 5_000
        and m["max_event_time"] == t + 120_000
    )
    day = 86_400_000
    out = detector.process({**row, "event_time": np.array([t - 2 * day]), "txn_id": np.array([10**9 + 3])})
    assert out.scores is not None and len(out.scores["score"]) == 1
    m = detector.metrics()
    assert (m["events"], m["clamped"], m["late"]) == (4, 2, 1), "two days behind: late for every rule"
    twice = {k: np.repeat(v, 2) for k, v in row.items()}
    out = detector.process({**twice, "event_time": np.full(2, t + 130_000), "txn_id": np.full(2, 10**9 + 4)})
    assert out.scores is not None and len(out.scores["score"]) == 2, "no dedup here: both copies scored"
    assert detector.metrics()["events"] == 6


def test_advance_closes_rule_windows_by_the_wall_clock() -> None:
    batch = {k: v[:500] for k, v in STREAM.columns.items()}
    top = int(batch["event_time"].max())
    detector = FraudDetector()
    detector.process(batch)
    assert detector.rules is not None
    open_keys = detector.rules._engines[0].state_size()["keys"]
    assert open_keys > 0
    assert detector.advance(top).alerts == [], "idle time raises no alerts"
    assert detector.metrics()["watermark"] == top - 5_000, "not past the watermark: nothing moved"
    out = detector.advance(top + 3_600_000)
    assert out.alerts == [] and detector.metrics()["watermark"] == top + 3_600_000 - 5_000
    assert detector.rules._engines[0].state_size()["keys"] == 0, "the 5-minute windows closed"

    replay = FraudDetector(wall_clock_time=False)
    replay.process(batch)
    replay.advance(top + 3_600_000)
    assert replay.metrics()["watermark"] == top - 5_000, "synthetic event time: advance does nothing"


def test_a_bad_batch_is_rejected_whole() -> None:
    detector = FraudDetector()
    good = {k: v[:100] for k, v in STREAM.columns.items()}
    detector.process(good)
    before = detector.snapshot()
    more = {k: v[100:200] for k, v in STREAM.columns.items()}
    amounts = more["amount"].copy()
    amounts[7] = np.nan
    with pytest.raises(InvalidBatchError, match="column 'amount' row 7"):
        detector.process({**more, "amount": amounts})
    with pytest.raises(InvalidBatchError, match="missing column 'terminal_id'"):
        detector.process({k: v for k, v in more.items() if k != "terminal_id"})
    assert detector.metrics()["events"] == 100 and detector.snapshot() == before
    detector.process(more)
    assert detector.metrics()["events"] == 200


def test_model_alerts_carry_a_score_and_readable_reasons() -> None:
    model = default_model()
    assert 0.0 < model.threshold < 1.0
    detector = FraudDetector(model=model, model_threshold=0.0, rules=[], cooldown=0)
    batch = {k: v[:2_000] for k, v in STREAM.columns.items()}
    out = detector.process(batch)
    alerts = out.alerts + detector.flush().alerts
    assert len(alerts) == 2_000, "threshold 0 and no cool-down: every transaction alerts"
    assert sorted(a.trigger_txn_id for a in alerts) == sorted(batch["txn_id"].tolist())
    assert out.scores is not None and (out.scores["decision"] == ALERT).all() and DECISIONS[ALERT] == "alert"
    a = alerts[0]
    assert a.rule == "model" and a.score is not None and 0.0 <= a.score <= 1.0
    assert a.score == out.scores["score"][a.trigger_row] and a.model_version == model.version
    assert a.reasons[0] == f"fraud score {a.score:.2f} (alert at 0.00)" and a.figures["score"] == a.score
    assert (
        a.latency_ms is not None and a.latency_ms >= 0 and a.event_time == batch["event_time"][a.trigger_row]
    )
    assert json.loads(a.to_json())["trigger_txn_id"] == a.trigger_txn_id


def test_detector_configuration_errors_name_the_problem() -> None:
    model = Model(
        kind="logistic_regression",
        inputs=[ModelInput("NO_SUCH_FEATURE")],
        mean=[0.0],
        scale=[1.0],
        params={"coef": [1.0], "intercept": 0.0},
    )
    with pytest.raises(ConfigError, match="NO_SUCH_FEATURE"):
        FraudDetector(model=model)
    with pytest.raises(ConfigError, match="no_such_column"):
        FraudDetector(rules=default_rules(habit_column="no_such_column"))
    with pytest.raises(ConfigError, match="model_threshold"):
        FraudDetector(model_threshold=1.5)


def test_feature_rules_run_after_the_features() -> None:
    rules = [r for r in default_rules(habit_column="CUSTOMER_ID_AMOUNT_RATIO") if r.name.startswith("spend")]
    detector = FraudDetector(rules=rules)
    assert detector.rules is None and detector.feature_rules is not None
    alerts = run_detector(detector, 4_096)
    assert alerts and {a[2] for a in alerts} <= {r.name for r in rules}
