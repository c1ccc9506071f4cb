"""`cds measure evaluate --period START END PATH...`: the eCQM populations of each patient.

PATH is a folder of FHIR resource files (searched recursively, .json or .json.gz) or a Bundle.
Prints one JSON object per patient and measure (population counts with the MeasureReport
population codes), or with `--format measurereport` one individual MeasureReport per line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "measure", help="evaluate the care-gap eCQMs (CMS130, CMS125, ...) on FHIR files"
    )
    sub = p.add_subparsers(dest="measure_command", required=True, metavar="ACTION")
    e = sub.add_parser("evaluate", help="population counts per patient and measure")
    e.add_argument(
        "--period",
        nargs=2,
        required=True,
        metavar=("START", "END"),
        help="measurement period, e.g. 2025-01-01 2025-12-31",
    )
    e.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="folder of FHIR resource files, or a Bundle"
    )
    e.add_argument(
        "--measure",
        action="append",
        dest="measures",
        metavar="ID",
        help="CMS130, CMS125... (repeatable; default all eight)",
    )
    e.add_argument(
        "--format", choices=["json", "measurereport"], default="json", help="output format (default json)"
    )
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cds.measures.engine import UnknownMeasureError, evaluate, resolve_measure
    from cds.measures.period import Period
    from cds.measures.sources import SourceError, load_resources, patient_records

    try:
        period = Period.parse(*args.period)
    except ValueError as e:
        print(f"--period: {e} (use two ISO dates, e.g. 2025-01-01 2025-12-31)", file=sys.stderr)
        return 2
    try:
        measures = [resolve_measure(m) for m in args.measures] if args.measures else None
    except UnknownMeasureError as e:
        print(str(e.args[0]), file=sys.stderr)
        return 2
    try:
        records = patient_records(load_resources(args.paths))
    except SourceError as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        for record in records:
            for result in evaluate(record, period, measures):
                doc = (
                    result.to_measure_report(record.patient_id)
                    if args.format == "measurereport"
                    else result.to_json(record.patient_id)
                )
                sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
