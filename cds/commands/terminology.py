"""`cds terminology concepts|map`: what the service reads, and mapping a local code list to it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("terminology", help="the concepts the models read; map local codes to LOINC")
    tsub = p.add_subparsers(dest="terminology_command", required=True, metavar="SUBCOMMAND")
    c = tsub.add_parser("concepts", help="every concept read from Observations, with its LOINC codes")
    c.add_argument("--format", choices=("table", "json"), default="table")
    c.set_defaults(func=run_concepts)
    m = tsub.add_parser("map", help="map a CSV of local codes to LOINC; writes a FHIR ConceptMap")
    m.add_argument(
        "csv", help="CSV with a header: code, display (required); system, unit, specimen, category"
    )
    m.add_argument("--out", help="write the ConceptMap here (default: standard output)")
    m.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="confidence for an automatic ('equivalent') map (default 0.90; higher: fewer, safer)",
    )
    m.add_argument("--system", help="local code system for rows without one (default urn:cds:local-codes)")
    m.add_argument("--no-embeddings", action="store_true", help="lexical matching only (no MiniLM model)")
    m.set_defaults(func=run_map)


def run_concepts(args: argparse.Namespace) -> int:
    from cds.fhir.terminology.concepts import concepts

    items = concepts()
    if args.format == "json":
        print(json.dumps([c.to_json() for c in items], indent=1))
        return 0
    print(f"{'concept':32} {'category':12} {'unit':18} {'LOINC':10} {'specimen':14} {'property':9} display")
    for c in items:
        for i, x in enumerate(c.codes):
            head = f"{c.id:32} {c.category:12} {(c.unit or '-'):18}" if i == 0 else " " * 64
            if x.is_known():
                print(f"{head} {x.code:10} {x.system:14} {x.property:9} {x.name}")
            else:
                print(
                    f"{head} {x.code:10} {'?':14} {'?':9} (LOINC attributes not on file: not a mapping target)"
                )
    return 0


def read_rows(path: Path, default_system: str | None) -> list[Any]:
    """The CSV's rows; a missing `code` or `display` column is an error naming the columns found."""
    from cds.fhir.terminology.mapper import DEFAULT_SYSTEM, LocalRow

    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        missing = [c for c in ("code", "display") if c not in cols]
        if missing:
            raise ValueError(
                f"{path}: header needs {', '.join(missing)} (found: {', '.join(cols) or 'none'})"
            )

        def get(r: dict[str, Any], name: str) -> str:
            key = cols.get(name)
            return (r.get(key) or "").strip() if key else ""

        return [
            LocalRow(
                code=get(r, "code"),
                display=get(r, "display"),
                system=get(r, "system") or default_system or DEFAULT_SYSTEM,
                unit=get(r, "unit"),
                specimen=get(r, "specimen"),
                category=get(r, "category"),
            )
            for r in reader
            if get(r, "code")
        ]


class _Progress:
    """A one-line progress bar on standard error for large files."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.show = total >= 1000

    def __call__(self, n: int) -> None:
        self.done += n
        if self.show:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} rows")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def run_map(args: argparse.Namespace) -> int:
    try:
        from cds.fhir.terminology.mapper import DEFAULT_THRESHOLD, Mapper, concept_map
    except ImportError as e:
        print(
            f"cds terminology map needs the mapping extra: pip install 'cds[mapping]' ({e})", file=sys.stderr
        )
        return 2
    try:
        rows = read_rows(Path(args.csv), args.system)
    except (OSError, ValueError, csv.Error) as e:
        print(f"cds terminology map: {e}", file=sys.stderr)
        return 2
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 < threshold <= 1.0:
        print("cds terminology map: --threshold must be in (0, 1]", file=sys.stderr)
        return 2
    started = time.perf_counter()
    mapper = Mapper(threshold=threshold, embeddings=not args.no_embeddings)
    decisions = mapper.map_rows(rows, progress=_Progress(len(rows)))
    elapsed = time.perf_counter() - started
    doc = concept_map(decisions, note=f"Threshold {threshold:.2f}; {mapper.embedding_note}.")
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    counts = Counter(d.equivalence for d in decisions)
    out = sys.stderr if not args.out else sys.stdout
    print(f"{'rows':>8} {'mapped':>8} {'review':>8} {'unmatched':>10}  ({mapper.embedding_note})", file=out)
    print(
        f"{len(decisions):>8} {counts['equivalent']:>8} {counts['inexact']:>8} {counts['unmatched']:>10}"
        f"  in {elapsed:.1f} s, threshold {threshold:.2f}",
        file=out,
    )
    return 0
