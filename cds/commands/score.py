"""`cds score deterioration PATH... [--at TIME]`: score patients from FHIR files, one JSON line each.

PATH is a Bundle (.json or .json.gz) or a folder (searched recursively): every Bundle is read, and
the loose resource files of one folder are read together. Resources are grouped by the patient
they refer to. The scoring runs through the service itself (`DeteriorationService`), so a line is
exactly what the hook would compute for that patient at that time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cds.fhir.dates import effective_time, parse_datetime
from cds.fhir.record import PatientRecord, resources_of


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="score patients from FHIR Bundles or folders (one JSON line each)"
    )
    p.add_argument("model", choices=["deterioration"], help="which model to score with")
    p.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="Bundle files (.json, .json.gz) or folders"
    )
    p.add_argument("--at", help="scoring time (ISO 8601); default: each patient's latest observation")
    p.add_argument("--models", type=Path, help="models directory (default: the settings' models_dir)")
    p.add_argument("--config", help="settings file (TOML), for [services.deterioration] options")
    p.set_defaults(func=run)


def _load(path: Path) -> Any:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _units(paths: list[Path], errors: list[str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(where, resources) for each Bundle file and each folder's loose resource files."""
    for root in paths:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        loose: dict[Path, list[dict[str, Any]]] = {}
        for f in files:
            if not f.is_file() or not (f.name.endswith(".json") or f.name.endswith(".json.gz")):
                continue
            try:
                data = _load(f)
            except (OSError, ValueError) as e:
                errors.append(f"{f}: not readable FHIR JSON ({e})")
                continue
            if isinstance(data, dict) and data.get("resourceType") == "Bundle":
                yield str(f), list(resources_of(data))
            elif isinstance(data, dict) and isinstance(data.get("resourceType"), str):
                loose.setdefault(f.parent, []).append(data)
        for folder, resources in loose.items():
            yield str(folder), resources


def _patient_ref(resource: dict[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return ref["reference"].rsplit("/", 1)[-1].removeprefix("urn:uuid:")
    return None


def _by_patient(resources: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    for patient in patients:
        pid = patient.get("id")
        own = [patient] + [
            r for r in resources if r.get("resourceType") != "Patient" and _patient_ref(r) == pid
        ]
        if len(patients) == 1:  # a single-patient file: resources with full-URL references belong to it too
            own = [patient] + [r for r in resources if r.get("resourceType") != "Patient"]
        yield patient, own


def _latest_observation(record: PatientRecord) -> datetime | None:
    times = [t for o in record.valid("Observation") if (t := effective_time(o)) is not None]
    return max(times) if times else None


def run(args: argparse.Namespace) -> int:
    from cds.hooks.service import ServiceLoadError
    from cds.runtime.settings import SettingsError, load_settings
    from cds.services.deterioration.service import DeteriorationService

    at = None
    if args.at:
        at = parse_datetime(args.at)
        if at is None:
            print(f"--at is not a FHIR dateTime: {args.at}", file=sys.stderr)
            return 2
    try:
        settings = load_settings(args.config, models_dir=args.models)
        service = DeteriorationService.from_settings(settings).load()
    except (SettingsError, ServiceLoadError) as e:
        print(str(e), file=sys.stderr)
        return 2
    from cds.services.deterioration.model import spo2_scale

    errors = [f"not found: {p}" for p in args.paths if not p.exists()]
    for where, resources in _units([p for p in args.paths if p.exists()], errors):
        found = False
        for patient, own in _by_patient(resources):
            found = True
            probe = PatientRecord.from_resources(own, patient_id=patient.get("id"))
            when = at or _latest_observation(probe)
            if when is None:
                print(
                    json.dumps(
                        {"id": patient.get("id"), "source": where, "error": "no observations to score"}
                    )
                )
                continue
            record = PatientRecord.from_resources(own, now=when, patient_id=patient.get("id"))
            a = service.model.assess(
                record, at=when, scale=spo2_scale(record, service.scale_options), explain=True
            )
            line = a.to_json()
            line["source"] = where
            print(json.dumps(line, ensure_ascii=False), flush=True)
        if not found:
            errors.append(f"{where}: no Patient resource")
    for problem in errors:
        print(problem, file=sys.stderr)
    return 1 if errors else 0
