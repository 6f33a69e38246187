"""Prints the README's peers table (Markdown) from a run.py result JSON.

    python benches/peers/readme_table.py [benches/peers/results/peers-10M.json]

Default: the largest run of the standard workload in benches/peers/results/ (10M events).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        # the largest run of the standard workload (not a --disorder-ms/--rate probe), newest first
        found = []
        for p in (HERE / "results").glob("peers-*.json"):
            r = json.loads(p.read_text())
            if r.get("disorder_ms", 5000) == 5000 and r.get("rate_per_s", 10_000.0) == 10_000.0:
                found.append((r["events"], p.stat().st_mtime, p))
        if not found:
            raise SystemExit("no results yet: run python benches/peers/run.py")
        path = max(found)[2]
    r = json.loads(path.read_text())
    print(
        "| engine | version | events | start-up s | processing s | events/s | peak RSS "
        "| fraudstream (numpy batches) is | alerts | agreement |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, e in r["engines"].items():
        label = e.get("label") or name
        if e.get("status") != "ok":
            print(f"| {label} | {e.get('version') or '-'} | | | | | | | | did not run: {e.get('status')} |")
            continue
        events = f"{e['events'] / 1e6:g}M" + ("" if e["events"] == r["events"] else " (prefix)")
        startup = "-" if e.get("startup_s") is None else f"{e['startup_s']:.1f}"
        if name == "fraudstream" or not e.get("ratio"):
            ratio = "—"
        elif abs(e["ratio"] - 1) < 0.1:
            ratio = "the same (±10%)"
        elif e["ratio"] >= 1:
            ratio = f"{e['ratio']:.1f}x faster"
        else:
            ratio = f"{1 / e['ratio']:.1f}x slower"
        agree = "identical alerts" if e["disagreements"] == 0 else f"{e['disagreements']} disagree"
        cells = [
            label,
            e["version"],
            events,
            startup,
            f"{e['processing_s']:.2f}",
            rate(e["events_per_s"]),
            f"{e['peak_rss_mb']:,.0f} MB",
            ratio,
            f"{e['alerts']:,}",
            agree,
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        f"{r['workload']}. Seed {r['seed']}; {r['machine']}; {r['date']}. Every engine reads the same CSV "
        "in its own process; processing time includes reading it; start-up (imports, JVM and Flink "
        "mini-cluster, Kafka group join) is counted apart. Peak RSS: the engine's whole process tree. "
        "Reproduce: `pip install -r benches/peers/requirements.txt` (or `--setup-peers`, a separate "
        f"venv), then `{r['command'].strip()}`."
    )


if __name__ == "__main__":
    main()
