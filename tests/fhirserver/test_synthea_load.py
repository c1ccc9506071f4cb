"""Synthea patients load into the test FHIR server with their ids, and the searches the service
sends return what the bundle holds, newest first."""

from __future__ import annotations

import pytest
from fhir_server import read_json

from cds.fhir.dates import parse_datetime


def _of_type(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def _vital_signs(resource: dict) -> bool:
    return any(c.get("code") == "vital-signs" for cat in resource.get("category", []) for c in cat["coding"])


@pytest.mark.data
def test_synthea_bundle_round_trip(fresh_fhir_server, synthea_dir):
    paths = sorted(synthea_dir.glob("*.json.gz"))[:3]
    assert paths, f"no Synthea bundles in {synthea_dir}"
    for path in paths:
        bundle = read_json(path)
        patient_id = fresh_fhir_server.load_synthea(path)

        status, patient = fresh_fhir_server.get(f"Patient/{patient_id}")
        assert status == 200 and patient["id"] == patient_id

        vitals = [o for o in _of_type(bundle, "Observation") if _vital_signs(o)]
        expected = sorted(vitals, key=lambda o: parse_datetime(o["effectiveDateTime"]), reverse=True)
        status, found = fresh_fhir_server.get(
            f"Observation?patient=Patient/{patient_id}&category=vital-signs&_sort=-date&_count=200"
        )
        assert status == 200
        assert found["total"] == len(vitals)
        got = [parse_datetime(e["resource"]["effectiveDateTime"]) for e in found.get("entry", [])]
        assert got == [parse_datetime(o["effectiveDateTime"]) for o in expected][:200]
        assert all(e["resource"]["subject"]["reference"] == f"Patient/{patient_id}" for e in found["entry"])

        active = [
            c
            for c in _of_type(bundle, "Condition")
            if c.get("clinicalStatus", {}).get("coding", [{}])[0].get("code") == "active"
        ]
        status, conditions = fresh_fhir_server.get(
            f"Condition?patient=Patient/{patient_id}&clinical-status=active&_count=200"
        )
        assert status == 200
        assert sorted(e["resource"]["id"] for e in conditions.get("entry", [])) == sorted(
            c["id"] for c in active
        )

        meds = [m for m in _of_type(bundle, "MedicationRequest") if m.get("status") == "active"]
        status, found_meds = fresh_fhir_server.get(
            f"MedicationRequest?patient=Patient/{patient_id}&status=active&_count=200"
        )
        assert status == 200
        assert found_meds["total"] == len(meds)
