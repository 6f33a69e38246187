"""The operators' kit in examples/monitoring: every metric its Prometheus alert rules and its
Grafana dashboard name is one the pipeline exports, under that exact name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fraudstream.metrics import PipelineMetrics

MONITORING = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
RULES = MONITORING / "fraudstream-alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC = re.compile(r"\bfraudstream_[a-z0-9_]+")


def exported_names() -> set[str]:
    """Every sample name the registry of a pipeline can expose (counters as ``_total``,
    histograms as ``_bucket``/``_count``/``_sum``, labelled metrics included)."""
    metrics = PipelineMetrics()
    names = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {
                f"{family.name}_bucket",
                f"{family.name}_count",
                f"{family.name}_sum",
                f"{family.name}_created",
            }
        else:
            names.add(family.name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [str(v.get("query", "")) for v in dashboard["templating"]["list"]]
    return exprs


def test_the_seed_backpressure_metrics_are_exported_under_prometheus_names() -> None:
    names = exported_names()
    for name in (
        "fraudstream_input_queue_length",
        "fraudstream_backpressured_time_ms_per_second",
        "fraudstream_busy_time_ms_per_second",
        "fraudstream_busy_seconds_total",
        "fraudstream_consumer_lag",
        "fraudstream_event_to_alert_latency_ms_bucket",
    ):
        assert name in names


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_named_by_the_kit_is_exported(source: str) -> None:
    text = RULES.read_text() if source == "rules" else "\n".join(dashboard_expressions())
    named = set(METRIC.findall(text))
    assert named, f"the {source} name no metric"
    assert sorted(named - exported_names()) == []


def test_the_alert_rules_hold_the_thresholds_of_the_design() -> None:
    text = RULES.read_text()
    assert re.search(r"fraudstream_input_queue_length > 1000\b", text)
    assert re.search(r"fraudstream_backpressured_time_ms_per_second > 500\b", text)
    assert "fraudstream_consumer_lag" in text and "fraudstream_event_to_alert_latency_ms_bucket" in text
    # every rule has a name, an expression, and a summary (a structural check without a YAML parser)
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, flags=re.M)
    assert (
        len(alerts) == len(re.findall(r"^\s+expr:", text, flags=re.M)) == len(re.findall(r"summary:", text))
    )
    assert len(set(alerts)) == len(alerts)


def test_the_dashboard_is_grafana_json_with_a_panel_per_figure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "fraudstream" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        assert p["targets"] and all(t["expr"] for t in p["targets"])
