"""The hook path's fast readers give what their plain versions give, on messy input.

Each reference below is the reader as it was before it was made faster (issue 18, speed): the
fast version must agree with it on any input, not only on well-formed charts.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.dates import effective_time, observed_at
from cds.fhir.patientref import patient_id_of_reference
from cds.fhir.record import INVALID_STATUSES, PatientRecord
from cds.fhir.terminology import LOINC, canonical_system, codings
from cds.fhir.terminology.maps import STANDARD_SYSTEMS, unmapped_systems
from cds.fhir.value import dicts
from cds.hooks.fhirfetch import _ID, _MEDICATION_USERS, MAX_MEDICATION_READS, missing_medication_references
from cds.services.medication_risk.patient import _loinc_hits
from tests.speed.strategies import concept, observation


def unmapped_reference(observations: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for obs in observations:
        parts = [obs.get("code")] + [c.get("code") for c in dicts(obs.get("component"))]
        systems: set[str] = set()
        has_loinc = False
        for part in parts:
            if not isinstance(part, dict):
                continue
            for c in dicts(part.get("coding")):
                if isinstance(c.get("code"), str):
                    s = canonical_system(c.get("system") if isinstance(c.get("system"), str) else None)
                    if s in STANDARD_SYSTEMS:
                        has_loinc = True
                    else:
                        systems.add(s or "none")
        if not has_loinc:
            out += sorted(systems)
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(observation, max_size=6))
def test_unmapped_systems_agrees_with_the_plain_reading(observations: list[dict[str, Any]]) -> None:
    assert unmapped_systems(observations) == unmapped_reference(observations)


BY_CODE = {"2160-0": "creatinine", "38483-4": "creatinine", "6298-4": "potassium", "123": "other"}


@settings(max_examples=400, deadline=None)
@given(concept)
def test_loinc_hits_agrees_with_codings(value: Any) -> None:
    hit: set[str] = set()
    _loinc_hits(value, BY_CODE, hit)
    assert hit == {BY_CODE[c] for s, c in codings(value) if s == LOINC and c in BY_CODE}


def missing_medication_references_reference(resources: list[Any]) -> list[str]:
    present = {
        f"Medication/{r['id']}"
        for r in resources
        if isinstance(r, dict) and r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
    }
    wanted: set[str] = set()
    for r in resources:
        if not isinstance(r, dict) or r.get("resourceType") not in _MEDICATION_USERS:
            continue
        ref = r.get("medicationReference")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str) or target.startswith("#"):
            continue
        parts = [p for p in target.split("/") if p]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and parts[-2] == "Medication" and _ID.match(parts[-1]):
            wanted.add(f"Medication/{parts[-1]}")
    return sorted(wanted - present)[:MAX_MEDICATION_READS]


REFERENCES = st.sampled_from(
    [
        "Medication/m1",
        "Medication/m2",
        "#m1",
        "http://x/fhir/Medication/m1/_history/2",
        "Medication/",
        "m1",
        None,
        3,
    ]
)
medication_user = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["MedicationRequest", "MedicationStatement", "Observation", "Medication"]
        )
    },
    optional={
        "id": st.sampled_from(["m1", "m2", "x", None, 4]),
        "medicationReference": st.one_of(
            st.fixed_dictionaries({}, optional={"reference": REFERENCES}), REFERENCES
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(medication_user, st.sampled_from([None, 3, "x"])), max_size=8))
def test_missing_medication_references_agrees_with_two_passes(resources: list[Any]) -> None:
    assert missing_medication_references(resources) == missing_medication_references_reference(resources)


PATIENT_REFERENCES = st.one_of(
    st.sampled_from(
        [
            "Patient/p1",
            "Patient/p1/_history/3",
            "https://ehr.example.org/fhir/Patient/p-2.x",
            "patient/p1",
            " Patient/p1",
            "Patient/" + "a" * 65,
            "Group/g1",
            "urn:uuid:ABC",
            "urn:uuid:abc",
            "#p1",
        ]
    ),
    st.text(alphabet="Patient/:_histoy.-1aZ ", max_size=24),
)


@settings(max_examples=400, deadline=None)
@given(PATIENT_REFERENCES, st.booleans())
def test_patient_reference_reading_is_the_strict_one(reference: str, with_urls: bool) -> None:
    full_urls = {"urn:uuid:abc": "p9"} if with_urls else None
    m = re.fullmatch(
        r"Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?", reference
    ) or re.fullmatch(
        r"https?://[^\s#?]+/Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?", reference
    )
    expected = (
        m.group(1)
        if m
        else (full_urls or {}).get(reference.lower())
        if reference.startswith("urn:uuid:")
        else None
    )
    assert patient_id_of_reference(reference) == (m.group(1) if m else None)
    assert patient_id_of_reference({"reference": reference}, full_urls) == expected


TIMES = st.sampled_from(["2026-11-01T10:00:00Z", "2026-10-01", "2026", "junk", "", None, 3, "0001-01-01"])
timed = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "effectiveDateTime": TIMES,
        "effectiveInstant": TIMES,
        "issued": TIMES,
        "effectivePeriod": st.one_of(
            st.none(), st.fixed_dictionaries({}, optional={"start": TIMES, "end": TIMES})
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(timed)
def test_observed_at_is_effective_time(observation: dict[str, Any]) -> None:
    assert observed_at(observation) == effective_time(observation)


@given(st.lists(observation, max_size=6), st.sampled_from(["Observation", "Condition"]))
def test_valid_is_the_same_when_asked_twice(resources: list[dict[str, Any]], rtype: str) -> None:
    record = PatientRecord.from_resources(resources)
    first = record.valid(rtype)
    first.append({"resourceType": "X"})  # a caller's list is its own
    assert record.valid(rtype) == [
        r for r in record.of_type(rtype) if r.get("status") not in INVALID_STATUSES
    ]
