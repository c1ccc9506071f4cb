"""The patient record: flattening prefetch, statuses, dedupe, demographics."""

from __future__ import annotations

from datetime import UTC, datetime

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import LOINC, CodeSet


def obs(oid: str, code: str, when: str, status: str = "final", system: str = LOINC) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": when,
    }


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def test_from_prefetch_flattens_bundles_dedupes_and_skips_outcomes() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    rec = PatientRecord.from_prefetch(
        {
            "patient": {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1960-06-15"},
            "a": bundle(obs("1", "8867-4", "2026-01-01T10:00:00Z"), {"resourceType": "OperationOutcome"}),
            "b": bundle(
                obs("1", "8867-4", "2026-01-01T10:00:00Z"), obs("2", "8867-4", "2026-01-01T11:00:00Z")
            ),
            "c": None,
        },
        now=now,
        patient_id="p",
    )
    assert rec.patient_id == "p" and rec.sex == "male" and rec.age() == 65
    hr = rec.observations(CodeSet.of(LOINC, "8867-4"))
    assert [o["id"] for o in hr] == ["2", "1"]
    assert rec.of_type("OperationOutcome") == ()


def test_invalid_statuses_and_window() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    rec = PatientRecord.from_resources(
        [
            obs("1", "8867-4", "2026-01-01T10:00:00Z", status="entered-in-error"),
            obs("2", "8867-4", "2026-01-01T10:00:00Z", status="cancelled"),
            obs("3", "8867-4", "2025-12-01T10:00:00Z"),
            obs("4", "8867-4", "2026-01-01T12:00:00Z", system="urn:oid:2.16.840.1.113883.6.1"),
        ],
        now=now,
    )
    recent = rec.observations(CodeSet.of(LOINC, "8867-4"), since=datetime(2026, 1, 1, tzinfo=UTC))
    assert [o["id"] for o in recent] == ["4"]


def test_conditions_and_medications_by_status() -> None:
    rec = PatientRecord.from_resources(
        [
            {"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]}},
            {"resourceType": "Condition", "id": "c2", "clinicalStatus": {"coding": [{"code": "resolved"}]}},
            {
                "resourceType": "Condition",
                "id": "c3",
                "verificationStatus": {"coding": [{"code": "refuted"}]},
            },
            {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order"},
            {"resourceType": "MedicationRequest", "id": "m2", "status": "stopped", "intent": "order"},
        ]
    )
    assert [c["id"] for c in rec.conditions()] == ["c1"]
    assert {c["id"] for c in rec.conditions(active_only=False)} == {"c1", "c2"}
    assert [m["id"] for m in rec.active_medications()] == ["m1"]
