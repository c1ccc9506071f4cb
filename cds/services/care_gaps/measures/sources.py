"""FHIR resources from files for `cds measure evaluate`: folders of resource files or Bundles,
grouped into one `PatientRecord` per patient.

A resource belongs to the patient its subject/patient reference names; resources that name no
patient (Organization, Practitioner, Medication...) are shared by every patient. MeasureReports
are results, not input, and are skipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cds.fhir.patientref import SUBJECT_FIELDS, UNREADABLE, bundle_patient_urls, patient_of
from cds.fhir.record import PatientRecord, resources_of

_SKIP = frozenset({"MeasureReport", "OperationOutcome"})
# Resources that describe no one patient, shared by all even when they carry a reference.
_SHARED_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location", "Medication"})


class SourceError(ValueError):
    """A path that is not a readable FHIR resource, Bundle or folder of them."""


def _read(path: Path) -> Any:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return json.loads(raw)
    except (OSError, ValueError) as e:
        raise SourceError(f"{path}: not readable FHIR JSON ({e})") from None


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(
            p for p in path.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))
        )
    elif path.is_file():
        yield path
    else:
        raise SourceError(f"{path}: no such file or folder")


def load_resources(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every resource in the files (Bundles flattened), `urn:uuid:` patient references rewritten
    to `Patient/<id>` through the Bundles' fullUrls (Synthea writes them so)."""
    out: list[dict[str, Any]] = []
    docs: list[dict[str, Any]] = []
    for path in paths:
        for f in _files(path):
            doc = _read(f)
            if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
                raise SourceError(f"{f}: not a FHIR resource (no resourceType)")
            docs.append(doc)
    full_urls = bundle_patient_urls(docs)
    for doc in docs:
        for r in resources_of(doc):
            if r.get("resourceType") in _SKIP:
                continue
            out.append(_resolved(r, full_urls))
    return out


def _resolved(res: dict[str, Any], full_urls: dict[str, str]) -> dict[str, Any]:
    """The resource with a `urn:uuid:` patient reference replaced by the `Patient/<id>` it
    resolves to, as a FHIR server does when it stores a transaction Bundle."""
    for name in SUBJECT_FIELDS:
        ref = res.get(name)
        if ref is None:
            continue
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("urn:uuid:"):
            pid = patient_of(res, full_urls)
            if pid is not None and pid is not UNREADABLE:
                return {**res, name: {**ref, "reference": f"Patient/{pid}"}}
        break
    return res


def patient_records(resources: list[dict[str, Any]], now: datetime | None = None) -> list[PatientRecord]:
    """One record per Patient resource, in file order."""
    patients = [r for r in resources if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str)]
    if not patients:
        raise SourceError("no Patient resource found")
    ids = {p["id"] for p in patients}
    own: dict[str, list[dict[str, Any]]] = {pid: [] for pid in ids}
    shared: list[dict[str, Any]] = []
    for res in resources:
        if res.get("resourceType") == "Patient":
            continue
        pid = patient_of(res)
        if pid in own:
            own[pid].append(res)
        elif pid is None or (pid is not UNREADABLE and res.get("resourceType") in _SHARED_TYPES):
            shared.append(res)
    return [
        PatientRecord.from_resources([p, *own[p["id"]], *shared], now=now, patient_id=p["id"])
        for p in patients
    ]
