"""The ``train``, ``evaluate`` and ``features`` subcommands of ``fraudstream``.

    fraudstream features --data PATH --out OUT.parquet   # TRANSACTION_ID + the 15 handbook inputs
    fraudstream evaluate --data PATH [--json]            # the handbook protocol, beside the published table
    fraudstream evaluate --scenarios [--seeds ...] [--json]   # fraud prevented over random incidents
    fraudstream train --data PATH --out model.json       # a portable JSON model (never a pickle)

``--data`` defaults to ``../shared/data/handbook_transactions.parquet`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from fraudstream.errors import StreamError


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="handbook-format parquet file (default: ../shared/data/handbook_transactions.parquet "
        "beside the repository holding the working directory; `fraudstream simulate --handbook` "
        "makes one)",
    )


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from fraudstream.fraud.data import default_data_path, load_transactions

    return load_transactions(args.data or default_data_path())


def _protocol(args: argparse.Namespace) -> Any:
    from fraudstream.fraud.evaluate import Protocol

    return Protocol(train_start=date.fromisoformat(args.train_start))


def _features(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fraudstream.fraud.features import HANDBOOK_FEATURES, compute_features

    table = _load(args)
    began = time.perf_counter()
    features = compute_features(table)
    elapsed = time.perf_counter() - began
    names = ["TRANSACTION_ID", *(features if args.all else HANDBOOK_FEATURES)]
    names = list(dict.fromkeys(names))
    pq.write_table(pa.table({n: features[n] for n in names}), args.out)
    n = len(features["TRANSACTION_ID"])
    print(f"{n:,} transactions, {len(names) - 1} features in {elapsed:.2f} s -> {args.out}", file=sys.stderr)
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    from fraudstream.fraud import prevention as p

    seeds = args.seeds or list(p.HELD_OUT_SEEDS)
    traffic = {"cards": args.cards, "days": args.days, "incidents": args.incidents}
    print(
        f"scenario evaluation: seeds {', '.join(map(str, seeds))}; per seed {args.cards:,} cards over "
        f"{args.days:g} days with {args.incidents} random incidents; the detector of fraudstream run",
        file=sys.stderr,
    )

    def progress(r: Any) -> None:
        caught = sum(i.index is not None for i in r.incidents)
        print(
            f"  seed {r.seed}: {r.transactions:,} transactions in {r.seconds:.1f} s, "
            f"{caught}/{len(r.incidents)} incidents caught, {r.false_positive_cards} false-positive cards",
            file=sys.stderr,
        )

    summary, results = p.evaluate_scenarios(seeds, traffic_args=traffic, progress=progress)
    print(p.format_table(summary))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "incidents.json").write_text(json.dumps(p.to_json(results), indent=1) + "\n")
    png = out / "prevention.png"
    if p.write_plot(png, summary):
        print(f"wrote {out / 'incidents.json'} and {png}")
    else:
        print(
            f"wrote {out / 'incidents.json'}; no PNG: matplotlib is missing (pip install 'fraudstream[plot]')"
        )
    if args.json:
        print(p.json_line(summary))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.scenarios:
        return _scenarios(args)
    from fraudstream.fraud.evaluate import MODELS, evaluate, format_table

    models = args.models or list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"unknown models {unknown}; choose from {list(MODELS)}", file=sys.stderr)
        return 2
    table = _load(args)
    result = evaluate(table, models=models, protocol=_protocol(args), seed=args.seed)
    print(format_table(result))
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"train rows {result.rows['train']:,}, test rows {result.rows['test']:,}; {timings}")
    if args.json:
        print(json.dumps(result.to_json()))
    return 0


def _train(args: argparse.Namespace) -> int:
    from fraudstream.fraud.evaluate import prepare, train_model

    protocol = _protocol(args)
    prepared = prepare(_load(args), protocol)
    model = train_model(prepared, args.model, seed=args.seed, protocol=protocol)
    model.threshold = args.threshold
    model.save(args.out)
    print(
        f"{args.model}: trained on {len(prepared.split.train):,} transactions from {args.train_start}, "
        f"{len(model.inputs)} inputs -> {args.out}"
    )
    return 0


def _guard(run: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            result: int = run(args)
        except (StreamError, FileNotFoundError) as e:
            print(f"fraudstream {args.command}: {e}", file=sys.stderr)
            return 2
        return result

    return wrapped


def register(subparsers: Any) -> None:
    """Adds ``train``, ``evaluate`` and ``features`` to the ``fraudstream`` command."""
    from fraudstream.fraud.evaluate import MODELS

    f = subparsers.add_parser("features", help="streaming features of a handbook-format file, to parquet")
    _data_arg(f)
    f.add_argument("--out", type=Path, required=True, help="output parquet file")
    f.add_argument("--all", action="store_true", help="every streaming feature, not just the handbook's 15")
    f.set_defaults(run=_guard(_features))

    e = subparsers.add_parser(
        "evaluate", help="the handbook's evaluation protocol, beside its published table"
    )
    _data_arg(e)
    e.add_argument("--json", action="store_true", help="last line: the metrics as JSON")
    e.add_argument("--models", nargs="+", metavar="MODEL", help=f"subset of {list(MODELS)}")
    e.add_argument("--train-start", default="2018-07-25", help="first training day (default 2018-07-25)")
    e.add_argument("--seed", type=int, default=0, help="random seed of the estimators")
    e.add_argument(
        "--scenarios",
        action="store_true",
        help="instead: the default detector's prevention over random incidents in generated traffic",
    )
    e.add_argument(
        "--seeds", type=int, nargs="+", help="--scenarios: traffic seeds (default 201 202 203, held out)"
    )
    e.add_argument("--cards", type=int, default=20_000, help="--scenarios: cards per seed (default 20000)")
    e.add_argument(
        "--days", type=float, default=7.0, help="--scenarios: days of traffic per seed (default 7)"
    )
    e.add_argument("--incidents", type=int, default=240, help="--scenarios: incidents per seed (default 240)")
    e.add_argument(
        "--out", type=Path, default=Path("fraudstream-scenarios-out"), help="--scenarios: output directory"
    )
    e.set_defaults(run=_guard(_evaluate))

    t = subparsers.add_parser("train", help="train a model on the protocol's training period, write JSON")
    _data_arg(t)
    t.add_argument("--model", choices=list(MODELS), default="random_forest_streaming")
    t.add_argument("--out", type=Path, default=Path("model.json"), help="model file (default model.json)")
    t.add_argument("--train-start", default="2018-07-25", help="first training day (default 2018-07-25)")
    t.add_argument("--threshold", type=float, default=0.5, help="alert threshold stored in the model")
    t.add_argument("--seed", type=int, default=0, help="random seed of the estimator")
    t.set_defaults(run=_guard(_train))
