"""Medications named through a `Medication` resource follow the translated ELM (CQL-to-ELM 3.10):
`[MedicationRequest: "VS"]` also matches requests whose referenced Medication (by id, the last
segment of the reference) has a code in the value set; `[MedicationRequest: medication in "VS"]`
(AdvancedIllnessandFrailty's dementia medications) matches coded requests only."""

from __future__ import annotations

from typing import Any

from tests.care_gaps.conftest import (
    ATORVASTATIN_20,
    MI,
    PID,
    RXNORM,
    cc,
    condition,
    encounter,
    med_request,
    patient,
    pops,
    populations,
)
from tests.care_gaps.test_measure_exclusions import _frailty_device

DONEPEZIL = (RXNORM, "1100184")  # Dementia Medications 2.16.840.1.113883.3.464.1003.196.12.1510
OLD = patient("1950-03-01", "female")


def _request(code: tuple[str, str]) -> dict[str, Any]:
    """An active order covering 2025-03-01..2025-03-30 (dosage bounds: medicationRequestPeriod)."""
    bounds = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-30T00:00:00Z"}
    return med_request(
        code, "2025-03-01T00:00:00Z", dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": bounds}}}]
    )


def _by_reference(code: tuple[str, str], ref: str, med_id: str = "m1") -> list[dict[str, Any]]:
    req = _request(code)
    del req["medicationCodeableConcept"]
    req["medicationReference"] = {"reference": ref}
    med = {"resourceType": "Medication", "id": med_id, "code": cc(*code)}
    if ref.startswith("#"):
        req["contained"] = [med]
        return [req]
    return [req, med]


def test_dementia_medication_counts_only_when_coded_on_the_request() -> None:
    coded = _request(DONEPEZIL)
    assert pops("CMS130", OLD, encounter(), _frailty_device(), coded)["denominator-exclusion"] == 1
    referenced = _by_reference(DONEPEZIL, "Medication/m1")
    assert pops("CMS130", OLD, encounter(), _frailty_device(), *referenced)["denominator-exclusion"] == 0


def test_statin_through_a_referenced_medication_is_in_the_numerator() -> None:
    man = patient("1960-01-01", "male")
    for ref, expected in (("Medication/m1", 1), ("m1", 1), ("#m1", 0), ("Medication/other", 0)):
        got = populations("CMS347", man, encounter(), condition(MI), *_by_reference(ATORVASTATIN_20, ref))[0]
        assert got["numerator"] == expected, ref


def test_statin_not_ordered_by_reference_is_no_exception() -> None:
    man = patient("1960-01-01", "male")
    resources = _by_reference(ATORVASTATIN_20, "Medication/m1")
    resources[0] |= {"doNotPerform": True, "status": "completed", "subject": {"reference": f"Patient/{PID}"}}
    got = populations("CMS347", man, encounter(), condition(MI), *resources)[0]
    assert got["numerator"] == 0 and got["denominator-exception"] == 0
