"""One reading of patient references (issue 15, finding 10): strict, `urn:uuid:` through the
Bundle's fullUrls, anything else unreadable and so never this patient's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cds.fhir.patientref import UNREADABLE, bundle_patient_urls, patient_of
from cds.sandbox.fhirsearch import search
from cds.services.care_gaps.measures.sources import patient_records

PID = "p1"
UUID = "0b5a7d52-8f2e-4b38-9a48-2cb1c2a5a8f1"


def obs(ref: Any, field: str = "subject") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final", field: ref}


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "Patient/p1/_history/3",
        "https://ehr.example.org/fhir/Patient/p1",
        "http://ehr.example.org/fhir/Patient/p1/_history/1",
    ],
)
def test_readable_references_name_the_patient(reference: str) -> None:
    assert patient_of(obs({"reference": reference})) == PID


@pytest.mark.parametrize(
    "ref",
    [
        {"reference": "patient/p1"},  # wrong case
        {"reference": " Patient/p1"},  # leading space
        {"reference": "Patient/p1 "},
        {"reference": "#p1"},  # contained
        {"reference": f"urn:uuid:{UUID}"},  # not resolvable without the Bundle
        {"reference": "Group/p1"},
        {"reference": "Patient/"},
        {"reference": "Patient/p1/extra"},
        {"reference": "Patient/p_1"},  # not a FHIR id
        {"reference": ["Patient/p1"]},
        {"identifier": {"value": "MRN1"}},  # a logical reference names no id
        {"display": "p1"},
        "Patient/p1",  # a string where a Reference belongs
        7,
        [],
    ],
)
def test_unreadable_references_are_no_ones(ref: Any) -> None:
    pid = patient_of(obs(ref))
    assert pid is UNREADABLE
    assert pid != PID and pid != ""


@pytest.mark.parametrize("field", ["subject", "patient", "beneficiary"])
def test_every_subject_field_counts(field: str) -> None:
    assert patient_of(obs({"reference": "Patient/p2"}, field)) == "p2"
    assert patient_of(obs({"reference": "#p2"}, field)) is UNREADABLE


def test_no_subject_is_not_unreadable() -> None:
    assert patient_of({"resourceType": "Medication", "id": "m1"}) is None
    assert patient_of({"resourceType": "Observation", "subject": None}) is None
    assert patient_of({"resourceType": "Patient", "id": "p1"}) == "p1"
    assert patient_of({"resourceType": "Patient"}) is None
    assert patient_of({"resourceType": "Patient", "id": ["p1"]}) is UNREADABLE


def test_urn_uuid_resolves_through_the_bundles_full_urls() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": f"urn:uuid:{UUID}", "resource": {"resourceType": "Patient", "id": PID}},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": obs({"reference": f"urn:uuid:{UUID}"})},
        ],
    }
    urls = bundle_patient_urls([bundle])
    assert patient_of(obs({"reference": f"urn:uuid:{UUID}"}), urls) == PID
    assert patient_of(obs({"reference": f"urn:uuid:{UUID.upper()}"}), urls) == PID
    assert patient_of(obs({"reference": f"urn:uuid:{uuid.uuid4()}"}), urls) is UNREADABLE


def test_the_three_callers_agree() -> None:
    """Validation, `cds measure` sources and the sandbox search all read references the same way."""
    patient = {"resourceType": "Patient", "id": PID}
    good, bad = obs({"reference": "Patient/p1"}), {**obs({"reference": "patient/p1"}), "id": "o2"}
    records = patient_records([patient, good, bad])
    assert [o["id"] for o in records[0].of_type("Observation")] == ["o1"]
    found = search([patient, good, bad], "Observation?patient=p1")
    assert found is not None
    assert [e["resource"]["id"] for e in found["entry"]] == ["o1"]
