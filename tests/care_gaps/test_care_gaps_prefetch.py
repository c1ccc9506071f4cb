"""The care-gaps prefetch asks for enough: on every eCQM test patient and every Synthea chart, the records built from the
rendered prefetch queries give the same measure populations as the whole chart (evaluated over
the calendar year of the chart's last encounter and the year before)."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds.fhir.dates import parse_datetime
from cds.fhir.record import PatientRecord, resources_of
from cds.hooks.prefetch import render
from cds.sandbox.fhirsearch import search
from cds.services.care_gaps.measures.engine import MEASURE_IDS, evaluate
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.data


def _prefetch_templates() -> dict[str, str]:
    hooks = json.loads((REPO / "hooks.json").read_text())
    return next(s for s in hooks["services"] if s["id"] == "care-gaps")["prefetch"]


def _with_relative_references(bundle: dict) -> list[dict]:
    """Synthea references resources by `urn:uuid:` fullUrl; a FHIR server answers with `Type/id`."""
    targets = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if str(e.get("fullUrl", "")).startswith("urn:uuid:")
    }
    text = re.sub(
        r'"(urn:uuid:[0-9a-f-]+)"', lambda m: f'"{targets.get(m.group(1), m.group(1))}"', json.dumps(bundle)
    )
    return list(resources_of(json.loads(text)))


def test_prefetch_gives_the_same_populations_as_the_whole_chart(synthea_dir: Path) -> None:
    templates = _prefetch_templates()
    checked = 0
    for path in sorted(synthea_dir.glob("*.json.gz")):
        with gzip.open(path, "rb") as fh:
            resources = _with_relative_references(json.loads(fh.read()))
        full = PatientRecord.from_resources(resources)
        starts = [parse_datetime((e.get("period") or {}).get("start")) for e in full.of_type("Encounter")]
        year = max(t for t in starts if t).year
        context = {"patientId": full.patient_id, "userId": "Practitioner/1"}
        prefetch = {key: search(resources, render(t, context)) for key, t in templates.items()}
        now = datetime(year, 12, 31, tzinfo=UTC)
        bounded = PatientRecord.from_prefetch(prefetch, now=now, patient_id=full.patient_id)
        for y in (year, year - 1):
            period = Period.calendar_year(datetime(y, 6, 1).date())
            expected = [r.counts() for r in evaluate(full, period)]
            assert [r.counts() for r in evaluate(bounded, period)] == expected, f"{path.name} {y}"
        checked += 1
    assert checked > 0


def test_prefetch_keeps_every_ecqm_test_case_result(ecqm_dir: Path) -> None:
    """On the official test patients (the measures' edge cases), the prefetch loses nothing."""
    templates = _prefetch_templates()
    period = Period.parse("2025-01-01", "2025-12-31")
    now = datetime(2025, 12, 31, tzinfo=UTC)
    checked = 0
    for mid in MEASURE_IDS:
        for case in sorted((ecqm_dir / "tests" / load_spec(mid).library).iterdir()):
            resources = [json.loads(f.read_text()) for f in case.glob("*.json")]
            resources = [r for r in resources if r["resourceType"] != "MeasureReport"]
            pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
            refs = {(r.get("subject") or r.get("patient") or {}).get("reference") for r in resources}
            if refs - {None, f"Patient/{pid}"}:
                continue  # a few cases point at another patient id: no server would return those
            prefetch = {k: search(resources, render(t, {"patientId": pid})) for k, t in templates.items()}
            bounded = PatientRecord.from_prefetch(prefetch, now=now, patient_id=pid)
            full = PatientRecord.from_resources(resources, now=now, patient_id=pid)
            got = evaluate(bounded, period, [mid])[0].counts()
            assert got == evaluate(full, period, [mid])[0].counts(), f"{mid} {case.name}"
            checked += 1
    assert checked > 250
