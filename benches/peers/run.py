"""fraudstream against the engines a Python team would otherwise pick, on one workload, in one run.

Workload (DESIGN.md, issue 7): per card, HOP windows of 5 min sliding 1 min aligned to the epoch,
COUNT(*), COUNT(DISTINCT country), SUM(amount); alert = a FINAL window result with distinct
countries >= 3 and count >= 5; watermark = max event time - 5 s (emit-final at
watermark >= end - 1). Input: the project's generator (100k skewed cards, 30 countries, 5 s
bounded disorder), written once to a headerless CSV that every engine reads.

Engines, each measured in its own process (peak RSS per engine, its whole process tree):
  fraudstream           numpy batch API (WindowedAggregation over 64k-row batches)
  fraudstream-pipeline  fraudstream.pipeline.Pipeline: ArraySource -> WindowedAggregation -> alert sink
  python                plain Python, dicts, per event
  pyflink               Flink SQL HOP query with a WATERMARK, local mini-cluster, parallelism 1
  bytewax               SlidingWindower + EventClock, 1 worker                 (prefix by default)
  quixstreams           hopping_window over the project's Kafka broker, 1 partition (prefix by default)

Every engine writes its alerts; they are compared with fraudstream's on (card, window start,
window end, count, distinct countries). Peers install from benches/peers/requirements.txt only,
preferably into their own venv (``--setup-peers`` makes one), so that the package's environment
keeps its own numpy/pyarrow/confluent-kafka versions.

    python benches/peers/run.py [--events 10000000] [--prefix-events 1000000]
                                [--engines fraudstream,python,...] [--setup-peers]

Writes benches/peers/results/peers-<events>.json and .png; the last line printed is the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from common import DISORDER_MS  # noqa: E402

CACHE = Path(os.environ.get("FRAUDSTREAM_CACHE", Path.home() / ".cache" / "fraudstream"))
DEFAULT_VENV = CACHE / "peers-venv"
NAMES = ["card", "ts", "amount", "country"]


@dataclass
class Engine:
    name: str
    script: str
    interpreter: str  # "main" (the package's Python) or "peers" (the peers' Python)
    args: list[str] = field(default_factory=list)
    module: str | None = None  # import checked before running
    slow: bool = False  # runs on the prefix file unless --full-peers
    label: str = ""


ENGINES = [
    Engine(
        "fraudstream",
        "engine_fraudstream.py",
        "main",
        ["--mode", "batch"],
        label="fraudstream (numpy batches)",
    ),
    Engine(
        "fraudstream-pipeline",
        "engine_fraudstream.py",
        "main",
        ["--mode", "pipeline"],
        label="fraudstream (in-process Pipeline)",
    ),
    Engine("python", "engine_python.py", "main", label="plain Python (dicts, per event)"),
    Engine("pyflink", "engine_pyflink.py", "peers", module="pyflink", label="Apache Flink (PyFlink SQL)"),
    Engine("bytewax", "engine_bytewax.py", "peers", module="bytewax", slow=True, label="Bytewax"),
    Engine(
        "quixstreams",
        "engine_quix.py",
        "peers",
        module="quixstreams",
        slow=True,
        label="Quix Streams (Kafka)",
    ),
]

# How each engine's event-time rules differ from fraudstream's (shown with any disagreement).
SEMANTICS = {
    "fraudstream": "per-event watermark max(ts) - 5 s over all cards; an event is late for a window "
    "when end - 1 <= watermark before it; emit-final at watermark >= end - 1; flush() at the end.",
    "fraudstream-pipeline": "same engine as fraudstream, through the threaded pipeline.",
    "python": "re-implements fraudstream's rules exactly (same watermark, lateness, firing).",
    "pyflink": "lateness per window like fraudstream, but the SQL watermark is emitted by a "
    "periodic timer (pipeline.auto-watermark-interval, 200 ms of wall time) or once it has advanced "
    "more than 200 ms past the last one emitted, not after every event, and there is none before "
    "the first timer: the watermark an event meets can lag fraudstream's, so Flink keeps some "
    "events fraudstream judges late (at the start of a stream above all); end of input emits the "
    "final watermark like flush().",
    "bytewax": "one clock per key: a card's watermark is that card's max event time - 5 s (plus "
    "elapsed system time, neutralised here by a constant now_getter); an item with ts < watermark "
    "is late for all its windows; a window closes at watermark >= end (not end - 1); EOF closes all.",
    "quixstreams": "stream time per partition (closing_strategy='partition'); a window closes at "
    "stream time - grace >= end (not end - 1), and the event's own timestamp is taken into stream "
    "time before it is judged; no end of input: a marker event 10 min after the last closes the rest.",
}


# ---------------------------------------------------------------------------------------------
# data


def data_files(
    events: int, prefix: int, seed: int, disorder_ms: int = DISORDER_MS, rate: float = 10_000.0
) -> tuple[Path, Path]:
    """The generator output as CSV (written once, cached), and its first ``prefix`` rows."""
    from fraudstream.generator import card_transactions

    folder = CACHE / "peers"
    folder.mkdir(parents=True, exist_ok=True)
    tag = "" if disorder_ms == DISORDER_MS else f"-disorder{disorder_ms}"
    tag += "" if rate == 10_000.0 else f"-rate{rate:g}"
    full = folder / f"tx-n{events}-seed{seed}{tag}.csv"
    first = folder / f"tx-n{events}-seed{seed}{tag}-first{prefix}.csv"
    if full.exists() and (first.exists() or prefix >= events):
        return full, (first if prefix < events else full)
    t = time.perf_counter()
    cols = card_transactions(
        events, cards=100_000, countries=30, rate_per_s=rate, disorder_ms=disorder_ms, seed=seed
    )
    opts = pacsv.WriteOptions(include_header=False)
    for path, n in ((full, events), (first, prefix)):
        if n >= events and path is first:
            continue
        tmp = path.with_suffix(".tmp")
        pacsv.write_csv(pa.table({k: v[:n] for k, v in cols.items()}), tmp, write_options=opts)
        tmp.replace(path)
    print(
        f"generated {events:,} events (seed {seed}) into {full} in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    return full, (first if prefix < events else full)


def read_columns(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=NAMES, block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            column_types={"card": pa.int64(), "ts": pa.int64(), "amount": pa.float64(), "country": pa.int64()}
        ),
    )
    return {n: table.column(n).to_numpy() for n in NAMES}


def reference_alerts(path: Path) -> dict[tuple[int, int, int], tuple[int, int, float]]:
    """fraudstream's alerts for the file (the batch API, in this process)."""
    from engine_fraudstream import run_batch

    _, sink, _ = run_batch(str(path))
    return {(int(c), int(s), int(e)): (int(n), int(d), float(t)) for c, s, e, n, d, t in sink.alerts()}


def load_alerts(path: Path) -> dict[tuple[int, int, int], tuple[int, int, float]]:
    alerts: dict[tuple[int, int, int], tuple[int, int, float]] = {}
    with open(path) as f:
        for line in f:
            c, s, e, n, d, t = line.strip().split(",")
            alerts[(int(c), int(s), int(e))] = (int(n), int(d), float(t))
    return alerts


# ---------------------------------------------------------------------------------------------
# comparison


def compare(
    ref: dict[tuple[int, int, int], tuple[int, int, float]],
    got: dict[tuple[int, int, int], tuple[int, int, float]],
) -> dict[str, Any]:
    """Disagreements on (card, window start, window end, count, distinct countries); sums checked apart."""
    missing = [k for k in ref if k not in got]
    extra = [k for k in got if k not in ref]
    differ = [k for k in ref if k in got and ref[k][:2] != got[k][:2]]
    sums = [
        k
        for k in ref
        if k in got
        and ref[k][:2] == got[k][:2]
        and abs(ref[k][2] - got[k][2]) > 1e-6 * max(1.0, abs(ref[k][2]))
    ]
    return {
        # a differing window counts twice in a symmetric difference of tuples; count it once
        "disagreements": len(missing) + len(extra) + len(differ),
        "missing": missing,
        "extra": extra,
        "differ": differ,
        "sum_mismatches": len(sums),
    }


def lateness_models(
    cols: dict[str, np.ndarray[Any, Any]], card: int, start: int, end: int, wm_before: np.ndarray[Any, Any]
) -> dict[str, tuple[int, int]]:
    """(count, distinct countries) of one card's window under several lateness rules.

    ``wm_before`` is the global watermark (max event time - 5 s) before each event arrives.
    """
    card_rows = np.flatnonzero(cols["card"] == card)
    card_ts = cols["ts"][card_rows]
    card_wm = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(card_ts)[:-1] - DISORDER_MS])
    inside = (card_ts >= start) & (card_ts < end)
    ts, country = card_ts[inside], cols["country"][card_rows][inside]
    g_wm, k_wm = wm_before[card_rows][inside], card_wm[inside]
    keep = {
        "global watermark, late per window (fraudstream, Flink)": end - 1 > g_wm,
        "global watermark, late item dropped from all its windows": ts >= g_wm,
        "per-card watermark, late per window": end - 1 > k_wm,
        "per-card watermark, late item dropped from all its windows (Bytewax)": ts >= k_wm,
        "no lateness: every event counted": np.ones(len(ts), bool),
    }
    return {name: (int(m.sum()), len(set(country[m].tolist()))) for name, m in keep.items()}


LAGGING = "a lagging global watermark (fewer late events than fraudstream's, more than none)"


def matching_rules(models: dict[str, tuple[int, int]], got: tuple[int, int] | None) -> list[str]:
    """The rules that give ``got`` (None: the engine has no alert for the window)."""
    if got is None:
        return [m for m, (n, d) in models.items() if not (n >= 5 and d >= 3)]
    match = [m for m, v in models.items() if v == got]
    lo, hi = (
        models["global watermark, late per window (fraudstream, Flink)"],
        models["no lateness: every event counted"],
    )
    if lo[0] <= got[0] <= hi[0] and lo[1] <= got[1] <= hi[1]:
        match.append(LAGGING)
    return match


def explain(
    engine: str,
    cmp: dict[str, Any],
    ref: dict[tuple[int, int, int], tuple[int, int, float]],
    got: dict[tuple[int, int, int], tuple[int, int, float]],
    cols: dict[str, np.ndarray[Any, Any]],
    limit: int = 4,
) -> list[str]:
    """For a few disagreeing windows: which lateness rule reproduces the engine's result.

    The card's events in the window are recounted under several rules (global or per-card
    watermark; an event late for a window dropped from that window only, or from all of its
    windows); the rules that give the engine's (count, countries), or no alert where the engine
    has none, are named, with the engine's documented semantics."""
    lines: list[str] = []
    wm_before = np.concatenate(
        [[np.iinfo(np.int64).min], np.maximum.accumulate(cols["ts"])[:-1] - DISORDER_MS]
    )
    for kind in ("missing", "extra", "differ"):
        for key in cmp[kind][:limit]:
            card, start, end = key
            models = lateness_models(cols, card, start, end, wm_before)
            if kind == "missing":
                what = f"fraudstream alerts {ref[key][:2]}, {engine} does not"
            elif kind == "extra":
                what = f"{engine} alerts {got[key][:2]}, fraudstream does not"
            else:
                what = f"(count, countries): fraudstream {ref[key][:2]}, {engine} {got[key][:2]}"
            match = matching_rules(models, None if kind == "missing" else got[key][:2])
            why = (
                f"reproduced by: {'; '.join(match)}" if match else f"no lateness rule reproduces it: {models}"
            )
            lines.append(f"  card {card} window [{start}, {end}): {what}; {why}")
    # Which rule explains the disagreements overall (up to 200 of them, spread over the kinds).
    tally: dict[str, int] = {}
    checked = 0
    for kind in ("missing", "extra", "differ"):
        for key in cmp[kind][: max(1, 200 // 3)]:
            models = lateness_models(cols, key[0], key[1], key[2], wm_before)
            match = matching_rules(models, None if kind == "missing" else got[key][:2])
            checked += 1
            for m in match or ["(no rule)"]:
                tally[m] = tally.get(m, 0) + 1
    if lines:
        lines.append(
            f"  of {checked} disagreements checked: "
            + "; ".join(f"{n} reproduced by '{m}'" for m, n in sorted(tally.items(), key=lambda kv: -kv[1]))
        )
        lines.append(f"  {engine}: {SEMANTICS[engine]}")
    return lines


# ---------------------------------------------------------------------------------------------
# running one engine


def peers_python(arg: str | None) -> str:
    if arg:
        return arg
    if os.environ.get("FRAUDSTREAM_PEERS_PYTHON"):
        return os.environ["FRAUDSTREAM_PEERS_PYTHON"]
    venv_python = DEFAULT_VENV / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def setup_peers() -> None:
    """A venv of the peers, from benches/peers/requirements.txt only."""
    if not (DEFAULT_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_VENV)], check=True)
    pip = [str(DEFAULT_VENV / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "-r", str(HERE / "requirements.txt")], check=True)


def check_import(python: str, module: str) -> str | None:
    code = f"import {module}"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if r.returncode == 0:
        return None
    last = (r.stderr.strip().splitlines() or ["?"])[-1]
    return (
        f"not installed: `{code}` failed in {python} ({last}); pip install -r benches/peers/requirements.txt"
    )


def _hwm_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of one process, from /proc; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc; PyFlink's JVM is a child of the Python process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run_measured(cmd: list[str], log: Path, timeout: float) -> tuple[int, float, float]:
    """Runs ``cmd``; returns (exit code, wall seconds, peak RSS MiB of its process tree).

    Every 50 ms the peak resident set (VmHWM) of each live process of the tree is read and
    summed; the peak is the largest such sum. (The kernel's ru_maxrss is not used: for a child
    forked from this process it counts the parent's pages from before the exec.)"""
    began = time.perf_counter()
    peak = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(HERE))
        hwm: dict[int, int] = {}
        pids, samples = [proc.pid], 0
        while proc.poll() is None:
            if samples % 10 == 0:  # the tree every 0.5 s, the peaks every 50 ms
                pids = _tree(proc.pid)
            samples += 1
            for pid in pids:
                hwm[pid] = max(hwm.get(pid, 0), _hwm_bytes(pid))
            peak = max(peak, sum(hwm.get(pid, 0) for pid in pids))
            if time.perf_counter() - began > timeout:
                for pid in reversed(pids):
                    with contextlib.suppress(OSError):
                        os.kill(pid, 9)
                proc.wait()
                return -9, time.perf_counter() - began, peak / 2**20
            time.sleep(0.05)
    return proc.returncode, time.perf_counter() - began, peak / 2**20


# ---------------------------------------------------------------------------------------------
# Kafka (Quix Streams variant)


def kafka_bootstrap() -> str:
    r = subprocess.run([str(ROOT / "scripts" / "kafka"), "up"], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"scripts/kafka up failed: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout.strip().splitlines()[-1]


def load_topic(bootstrap: str, path: Path) -> tuple[str, float]:
    """A fresh one-partition topic holding the file as JSON transaction messages, plus an
    end-of-input marker 10 minutes after the last event time. Returns (topic, seconds)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from fraudstream.kafka.schema import encode_transactions

    t = time.perf_counter()
    topic = f"peers-quix-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # Retention off: the events are from 2023, and time-based retention judges a segment by its
    # records' timestamps (the producer's wall clock here, but be safe either way).
    spec = NewTopic(topic, num_partitions=1, replication_factor=1, config={"retention.ms": "-1"})
    for fut in admin.create_topics([spec]).values():
        fut.result()
    cols = read_columns(path)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1 << 20,
            "queue.buffering.max.messages": 2_000_000,
            "compression.type": "lz4",
        }
    )
    n = len(cols["card"])
    step = 100_000
    for lo in range(0, n, step):
        chunk = {k: v[lo : lo + step] for k, v in cols.items()}
        keys = [str(c).encode() for c in chunk["card"].tolist()]
        for key, value in zip(keys, encode_transactions(chunk, first_txn_id=lo), strict=True):
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    end_ts = int(cols["ts"].max()) + 600_000  # 10 minutes after the last event: closes every window
    marker = {
        "card": np.array([-1]),
        "ts": np.array([end_ts]),
        "amount": np.array([0.0]),
        "country": np.array([0]),
    }
    producer.produce(topic, value=encode_transactions(marker, first_txn_id=n)[0], key=b"-1")
    if producer.flush(120) != 0:
        raise RuntimeError("could not deliver every message to Kafka")
    return topic, time.perf_counter() - t


def delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        for fut in admin.delete_topics([topic]).values():
            fut.result(30)
    except Exception as exc:
        print(f"  (could not delete topic {topic}: {exc})")


# ---------------------------------------------------------------------------------------------
# output


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def table_lines(result: dict[str, Any]) -> list[str]:
    head = (
        f"{'engine':<22} {'version':<14} {'events':>11} {'startup s':>9} {'proc. s':>8} {'events/s':>11} "
        f"{'peak RSS':>9} {'fs ÷ it':>8} {'alerts':>8}  agreement"
    )
    lines = [head, "-" * len(head)]
    for name, e in result["engines"].items():
        if e["status"] != "ok":
            lines.append(f"{name:<22} {e.get('version') or '-':<14} {'':>79}  {e['status']}")
            continue
        startup = "-" if e.get("startup_s") is None else f"{e['startup_s']:.1f}"
        agreement = "identical" if e["disagreements"] == 0 else f"{e['disagreements']} disagree"
        lines.append(
            f"{name:<22} {e['version']:<14} {e['events']:>11,} {startup:>9} {e['processing_s']:>8.2f} "
            f"{e['events_per_s']:>11,.0f} {e['peak_rss_mb']:>7.0f}MB {e['ratio']:>7.1f}x "
            f"{e['alerts']:>8,}  {agreement}"
        )
    return lines


def plot(result: dict[str, Any], json_path: Path, png_path: Path, python_for_peers: str) -> str:
    """Draws the chart with matplotlib, from this Python or else the peers' Python."""
    for python in (sys.executable, python_for_peers):
        if check_import(python, "matplotlib") is None:
            r = subprocess.run(
                [python, str(HERE / "plot.py"), str(json_path), str(png_path)], capture_output=True, text=True
            )
            if r.returncode == 0:
                return str(png_path)
            return f"plot failed: {r.stderr.strip().splitlines()[-1:]}"
    return "matplotlib not installed (pip install -r benches/peers/requirements.txt)"


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--prefix-events", type=int, default=1_000_000, help="events for the slow engines")
    ap.add_argument("--full-peers", action="store_true", help="run the slow engines on all events too")
    ap.add_argument("--engines", default=",".join(e.name for e in ENGINES))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--disorder-ms",
        type=int,
        default=DISORDER_MS,
        help="the generator's disorder (default 5000 = the watermark delay: no event is late); "
        "larger values make late events and show how each engine's lateness rules differ",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="fraudstream runs per engine process; the best is kept"
    )
    ap.add_argument(
        "--peers-python", default=None, help=f"Python with the peers installed (default: {DEFAULT_VENV})"
    )
    ap.add_argument(
        "--setup-peers", action="store_true", help=f"create {DEFAULT_VENV} from requirements.txt first"
    )
    ap.add_argument(
        "--rate", type=float, default=10_000.0, help="the generator's events per second of event time"
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per engine")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default results/peers-<events>.json)")
    args = ap.parse_args()

    if args.setup_peers:
        setup_peers()
    py_peers = peers_python(args.peers_python)
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(wanted) - {e.name for e in ENGINES}
    if unknown:
        ap.error(f"unknown engines {sorted(unknown)}; choose from {[e.name for e in ENGINES]}")
    prefix = min(args.prefix_events, args.events)
    full_path, prefix_path = data_files(args.events, prefix, args.seed, args.disorder_ms, args.rate)
    label = f"{args.events // 1_000_000}M" if args.events % 1_000_000 == 0 else str(args.events)
    if args.disorder_ms != DISORDER_MS:
        label += f"-disorder{args.disorder_ms}"
    if args.rate != 10_000.0:
        label += f"-rate{args.rate:g}"
    out_json = args.out or HERE / "results" / f"peers-{label}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    work = CACHE / "peers" / f"run-{label}"  # each engine's alerts, log and result stay here
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    print(f"input: {full_path} ({args.events:,} events); slow engines: {prefix_path} ({prefix:,} events)")
    print(f"peers' Python: {py_peers}")
    refs: dict[Path, dict[tuple[int, int, int], tuple[int, int, float]]] = {}
    columns: dict[Path, dict[str, np.ndarray[Any, Any]]] = {}

    engines: dict[str, dict[str, Any]] = {}
    for eng in (e for e in ENGINES if e.name in wanted):
        path = prefix_path if (eng.slow and not args.full_peers) else full_path
        n_events = prefix if path == prefix_path else args.events
        entry: dict[str, Any] = {"label": eng.label, "version": None, "events": n_events, "status": "ok"}
        engines[eng.name] = entry
        python = sys.executable if eng.interpreter == "main" else py_peers
        problem = check_import(python, eng.module) if eng.module else None
        if problem is None and eng.name == "pyflink" and shutil.which("java") is None:
            problem = "Java not found (PyFlink needs a JDK 17 on PATH)"
        extra_args: list[str] = list(eng.args)
        if eng.name.startswith("fraudstream"):
            extra_args += ["--repeat", str(args.repeat)]
        topic = bootstrap = None
        if problem is None and eng.name == "quixstreams":
            try:
                bootstrap = kafka_bootstrap()
                topic, load_s = load_topic(bootstrap, path)
                entry["kafka_load_s"] = round(load_s, 2)
                extra_args += ["--bootstrap", bootstrap, "--topic", topic]
                print(
                    f"[quixstreams] loaded {n_events:,} messages into {topic} ({bootstrap}) in {load_s:.1f} s"
                )
            except Exception as exc:
                problem = f"Kafka unavailable: {type(exc).__name__}: {exc}"
        if problem is not None:
            entry["status"] = problem
            print(f"[{eng.name}] cannot run: {problem}", flush=True)
            continue
        alerts_path, result_path, log = (
            work / f"{eng.name}.alerts.csv",
            work / f"{eng.name}.json",
            work / f"{eng.name}.log",
        )
        cmd = [
            python,
            str(HERE / eng.script),
            "--data",
            str(path),
            "--alerts",
            str(alerts_path),
            "--result",
            str(result_path),
        ]
        cmd += ["--t0", repr(time.time()), *extra_args]
        print(f"[{eng.name}] running on {n_events:,} events ...", flush=True)
        code, wall, peak_mb = run_measured(cmd, log, args.timeout)
        if topic and bootstrap:
            delete_topic(bootstrap, topic)
        if code != 0 or not result_path.exists():
            tail = [ln for ln in log.read_text(errors="replace").strip().splitlines() if ln.strip()][-3:]
            entry["status"] = f"failed (exit {code}): " + " | ".join(tail)[-400:]
            print(f"[{eng.name}] {entry['status']}", flush=True)
            continue
        res = json.loads(result_path.read_text())
        if path not in refs:
            refs[path] = reference_alerts(path)
            columns[path] = read_columns(path)
        got = load_alerts(alerts_path)
        cmp = compare(refs[path], got)
        entry.update(
            version=res["version"],
            events=res["events"],
            startup_s=None if res["startup_s"] is None else round(res["startup_s"], 2),
            processing_s=round(res["processing_s"], 3),
            events_per_s=round(res["events"] / res["processing_s"]),
            peak_rss_mb=round(peak_mb, 1),
            alerts=res["alerts"],
            disagreements=cmp["disagreements"],
            sum_mismatches=cmp["sum_mismatches"],
            wall_s=round(wall, 2),
            extra=res.get("extra", {}),
        )
        if eng.name == "pyflink" and "net_runtime_s" in res.get("extra", {}):
            # The job's own runtime is the processing; the mini-cluster start and the job
            # submission before it count as start-up (the issue: report them apart).
            net = res["extra"]["net_runtime_s"]
            entry["startup_s"] = round((res["startup_s"] or 0.0) + res["processing_s"] - net, 2)
            entry["processing_s"] = round(net, 3)
            entry["events_per_s"] = round(res["events"] / net)
            entry["extra"]["wall_processing_s"] = round(res["processing_s"], 3)
        if res["events"] != n_events:
            entry["status"] = f"read {res['events']:,} events of {n_events:,}"
        if cmp["disagreements"]:
            entry["explanations"] = explain(eng.name, cmp, refs[path], got, columns[path])
        print(
            f"[{eng.name}] {entry['processing_s']:.2f} s, {entry['events_per_s']:,} events/s, "
            f"peak RSS {peak_mb:.0f} MiB, {entry['alerts']:,} alerts, {cmp['disagreements']} disagreements",
            flush=True,
        )
        for line in entry.get("explanations", []):
            print(line)

    base = engines.get("fraudstream", {})
    base_rate = base.get("events_per_s") if base.get("status") == "ok" else None
    for e in engines.values():
        if e["status"] == "ok" and base_rate:
            e["ratio"] = round(base_rate / e["events_per_s"], 1)
        elif e["status"] == "ok":
            e["ratio"] = None
    peers_ok = {
        n: e["events_per_s"]
        for n, e in engines.items()
        if not n.startswith("fraudstream") and e["status"] == "ok"
    }
    fastest = max(peers_ok, key=lambda n: peers_ok[n]) if peers_ok else None
    result = {
        "events": args.events,
        "prefix_events": prefix,
        "seed": args.seed,
        "disorder_ms": args.disorder_ms,
        "rate_per_s": args.rate,
        "workload": "per card HOP(5 min, 1 min) COUNT(*), COUNT(DISTINCT country), SUM(amount); "
        "alert: countries >= 3 and count >= 5 on FINAL windows; watermark max(ts) - 5 s; "
        f"generator: 100k skewed cards, 30 countries, {args.rate:,.0f} events/s of event time, "
        f"{args.disorder_ms / 1000:g} s disorder",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "command": "python benches/peers/run.py " + " ".join(sys.argv[1:]),
        "fastest_peer": fastest,
        "fastest_peer_ratio": round(base_rate / peers_ok[fastest], 1) if base_rate and fastest else None,
        "engines": engines,
    }
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    png = plot(result, out_json, out_json.with_suffix(".png"), py_peers)

    print()
    for line in table_lines(result):
        print(line)
    print("(fs ÷ it = fraudstream's events/s divided by the engine's; processing includes reading the CSV)")
    if result["fastest_peer_ratio"]:
        print(f"fraudstream vs the fastest other engine ({fastest}): {result['fastest_peer_ratio']}x")
    if base.get("extra", {}).get("compute_events_per_s"):
        print(
            f"fraudstream without reading the CSV: {base['extra']['compute_events_per_s']:,} events/s "
            f"(the CSV took {base['extra']['read_s']:.2f} s of {base['processing_s']:.2f} s)"
        )
    for name, e in engines.items():
        if e["status"] == "ok" and e["events"] != args.events:
            print(f"{name}: ran on the first {e['events']:,} events (same generator output)")
    print(f"saved {out_json}; chart: {png}; alerts and logs of every engine in {work}")
    last = {
        "events": args.events,
        "engines": {
            n: {
                k: e.get(k)
                for k in (
                    "version",
                    "events",
                    "startup_s",
                    "processing_s",
                    "events_per_s",
                    "peak_rss_mb",
                    "ratio",
                    "alerts",
                    "disagreements",
                    "status",
                )
            }
            for n, e in engines.items()
        },
    }
    print(json.dumps(last))


if __name__ == "__main__":
    main()
