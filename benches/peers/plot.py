"""Bar chart of a peers result JSON: events/s per engine (log scale), as a PNG.

python benches/peers/plot.py results/peers-10M.json results/peers-10M.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        result = json.load(f)
    rows = [(n, e) for n, e in result["engines"].items()]
    rows.sort(key=lambda r: -(r[1].get("events_per_s") or 0))
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.6))
    names, rates, colors, notes = [], [], [], []
    for name, e in rows:
        ok = e.get("status") == "ok"
        names.append(name)
        rates.append(e["events_per_s"] if ok else 0)
        colors.append("#d9480f" if name.startswith("fraudstream") else "#495057")
        if ok:
            ratio = (
                ""
                if name.startswith("fraudstream") or not e.get("ratio")
                else f"; fraudstream {e['ratio']:.1f}x faster"
            )
            prefix = "" if e["events"] == result["events"] else f", first {e['events'] / 1e6:g}M events"
            agree = "" if e.get("disagreements") == 0 else f", {e.get('disagreements')} disagree"
            rate = e["events_per_s"]
            rate_s = f"{rate / 1e6:.2f}M/s" if rate >= 1e6 else f"{rate / 1e3:.0f}k/s"
            notes.append(f"{rate_s}, {e['peak_rss_mb']:,.0f} MB{prefix}{agree}{ratio}")
        else:
            notes.append("did not run: " + str(e.get("status"))[:60])
    y = range(len(rows))
    positive = [r for r in rates if r > 0] or [1]
    floor = min(positive) / 3
    ax.barh(list(y), [max(r, floor) if r else 0 for r in rates], color=colors)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(floor, max(positive) * 40)
    for i, (r, note) in enumerate(zip(rates, notes, strict=True)):
        ax.text(max(r, floor) * 1.1, i, note, va="center", fontsize=8)
    ax.set_xlabel("events per second (log scale), processing only, reading the same CSV")
    ax.set_title(
        f"HOP(5 min, 1 min) fraud rule per card, {result['events'] / 1e6:g}M events, 100k cards\n"
        f"{result.get('machine', '')}, {result.get('date', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=120)


if __name__ == "__main__":
    main()
