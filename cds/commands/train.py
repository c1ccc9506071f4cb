"""`cds train MODEL --data DIR --out DIR`: retrain a model from its data set and write its artefacts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model and write its artefacts (needs the training extra)"
    )
    p.add_argument("model", choices=["deterioration"], help="which model to train")
    p.add_argument(
        "--data", required=True, type=Path, help="data directory (deterioration: the eICU demo tables)"
    )
    p.add_argument("--out", required=True, type=Path, help="output directory, e.g. models/deterioration")
    p.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="local xgboost, or xgboost.dask on a Dask cluster (default local)",
    )
    p.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument(
        "--workers", type=int, default=2, help="LocalCluster workers for --engine dask (default 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (default 1000)"
    )
    p.add_argument("--calibration", choices=["platt", "isotonic"], default="platt", help="default platt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from cds.training.deterioration import groups_table, metrics_table, train
    except ModuleNotFoundError as e:
        print(
            f"cds train needs the training extra ({e.name} is missing): pip install -e '.[training]'",
            file=sys.stderr,
        )
        return 2
    if not args.data.is_dir():
        print(f"data directory not found: {args.data}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    try:
        metadata = train(
            args.data,
            args.out,
            engine=args.engine,
            scheduler=args.scheduler,
            n_workers=args.workers,
            seed=args.seed,
            n_boot=args.bootstrap,
            method=args.calibration,
            progress=progress,
        )
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return 2
    print()
    print(metrics_table(metadata))
    print()
    print(groups_table(metadata))
    th = metadata["thresholds"]
    print(f"\nthresholds: warning risk >= {th['warning']:g}, critical risk >= {th['critical']:g}")
    return 0
