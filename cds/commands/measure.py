"""`cds measure evaluate --period START END PATH...`: the eCQM populations of each patient.
`cds measure care-gaps --period START END --format deqm PATH...`: the Da Vinci DEQM gaps-in-care
report (what `Measure/$care-gaps` returns): a Parameters resource, one gaps-in-care Bundle per
patient.

PATH is a folder of FHIR resource files (searched recursively, .json or .json.gz) or a Bundle.
`evaluate` prints one JSON object per patient and measure (population counts with the
MeasureReport population codes), or with `--format measurereport` one individual MeasureReport
per line; `care-gaps --format json` prints one line per patient and measure with its gap status.
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

    g = sub.add_parser("care-gaps", help="Da Vinci DEQM gaps-in-care report ($care-gaps)")
    g.add_argument("--period", nargs=2, required=True, metavar=("START", "END"), help="measurement period")
    g.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="folder of FHIR resource files, or a Bundle"
    )
    g.add_argument(
        "--measure", action="append", dest="measures", metavar="ID", help="repeatable; default all eight"
    )
    g.add_argument(
        "--status",
        action="append",
        dest="statuses",
        choices=["open-gap", "closed-gap", "prospective-gap", "not-applicable"],
        help="gap statuses to report (repeatable; default all)",
    )
    g.add_argument("--date", help="report date (ISO date-time; default now): open-gap vs prospective-gap")
    g.add_argument("--format", choices=["deqm", "json"], default="deqm", help="output format (default deqm)")
    g.set_defaults(func=run_care_gaps)


def run(args: argparse.Namespace) -> int:
    from cds.services.care_gaps.measures.engine import UnknownMeasureError, evaluate, resolve_measure
    from cds.services.care_gaps.measures.period import Period
    from cds.services.care_gaps.measures.sources import SourceError, load_resources, patient_records

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


def run_care_gaps(args: argparse.Namespace) -> int:
    from cds.fhir.dates import parse_datetime, utcnow
    from cds.services.care_gaps.measures.deqm import (
        GAP_STATUSES,
        care_gaps_parameters,
        gap_status,
        gaps_bundle,
    )
    from cds.services.care_gaps.measures.engine import UnknownMeasureError, evaluate, resolve_measure
    from cds.services.care_gaps.measures.period import Period
    from cds.services.care_gaps.measures.sources import SourceError, load_resources, patient_records

    try:
        period = Period.parse(*args.period)
    except ValueError as e:
        print(f"--period: {e} (use two ISO dates, e.g. 2025-01-01 2025-12-31)", file=sys.stderr)
        return 2
    now = parse_datetime(args.date) if args.date else utcnow()
    if now is None:
        print(f"--date: not an ISO date or date-time: {args.date!r}", file=sys.stderr)
        return 2
    try:
        measures = [resolve_measure(m) for m in args.measures] if args.measures else None
        records = patient_records(load_resources(args.paths))
    except UnknownMeasureError as e:
        print(str(e.args[0]), file=sys.stderr)
        return 2
    except SourceError as e:
        print(str(e), file=sys.stderr)
        return 2
    statuses = args.statuses or GAP_STATUSES
    if args.format == "json":
        for record in records:
            for result in evaluate(record, period, measures):
                line = {
                    "patient": record.patient_id,
                    "measure": result.measure_id,
                    "gapStatus": gap_status(result, now),
                }
                sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        return 0
    bundles = [gaps_bundle(r, evaluate(r, period, measures), now, statuses) for r in records]
    sys.stdout.write(json.dumps(care_gaps_parameters(bundles), separators=(",", ":")) + "\n")
    return 0
