"""Micro-benchmarks of the Python API (pytest-benchmark), outside the test run:

    python -m pytest benches/micro                 # every group, ~1 min
    python -m pytest benches/micro -k decode       # one group

Each group holds fraudstream's call and a plain-Python (or numpy) baseline doing the same work
in the same run; the summary at the end gives each call's items per second and its ratio to the
group's baseline (figures from a shared machine are noisy; ratios less so).
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    benches = list(getattr(session, "benchmarks", []) or [])
    if not benches:
        return
    rates: dict[str, dict[str, float]] = {}
    for b in benches:
        items = float(b.extra_info.get("items", 1))
        rates.setdefault(b.group or "", {})[b.name] = items / b.stats.mean
    terminalreporter.section("items per second, and against each group's baseline")
    for group, by_name in sorted(rates.items()):
        base = next((v for k, v in by_name.items() if "baseline" in k), None)
        for name, rate in sorted(by_name.items(), key=lambda kv: -kv[1]):
            ratio = f"{rate / base:8.1f}x the baseline" if base else ""
            terminalreporter.write_line(f"{group:<33} {name:<52} {rate:>14,.0f}/s {ratio}")
