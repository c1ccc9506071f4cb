"""Denominator exclusions and exceptions (hospice, palliative care, advanced illness and frailty,
nursing home, measure-specific ones), the counting hierarchy, and patients with no data."""

from __future__ import annotations

from datetime import UTC, datetime

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.engine import MEASURE_IDS, evaluate, resolve_measure
from cds.services.care_gaps.measures.period import Period
from tests.care_gaps.conftest import (
    ADVANCED_ILLNESS,
    CKD5,
    COLECTOMY,
    COLONOSCOPY,
    DIABETES,
    FRAILTY_DEVICE,
    HOSPICE_ENCOUNTER,
    LOINC,
    MP,
    PID,
    SNOMED,
    cc,
    condition,
    encounter,
    observation,
    patient,
    pops,
    procedure,
)

OLD = patient("1950-03-01", "female")  # 75 at the end of 2025


def _frailty_device(authored: str = "2025-04-01T00:00:00Z", do_not_perform: bool | None = None) -> dict:
    req = {
        "resourceType": "DeviceRequest",
        "id": f"dev-{authored}-{do_not_perform}",
        "status": "active",
        "intent": "order",
        "codeCodeableConcept": cc(*FRAILTY_DEVICE),
        "subject": {"reference": f"Patient/{PID}"},
        "authoredOn": authored,
    }
    if do_not_perform is not None:
        req["modifierExtension"] = [
            {
                "url": "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-doNotPerform",
                "valueBoolean": do_not_perform,
            }
        ]
    return req


def test_hospice_encounter_overlapping_the_period_excludes() -> None:
    hospice = encounter("2024-12-20T00:00:00Z", end="2025-01-02T00:00:00Z", code=HOSPICE_ENCOUNTER)
    assert pops("CMS130", OLD, encounter(), hospice)["denominator-exclusion"] == 1
    before = encounter("2024-12-01T00:00:00Z", end="2024-12-31T00:00:00Z", code=HOSPICE_ENCOUNTER)
    assert pops("CMS130", OLD, encounter(), before)["denominator-exclusion"] == 0


def test_hospice_assessment_needs_the_answer_yes() -> None:
    yes = observation((LOINC, "45755-6"), "2025-05-01T00:00:00Z", category="survey", value=None,
                      valueCodeableConcept=cc(SNOMED, "373066001"))  # fmt: skip
    no = observation((LOINC, "45755-6"), "2025-05-01T00:00:00Z", category="survey", value=None,
                     valueCodeableConcept=cc(SNOMED, "373067005"))  # fmt: skip
    woman = patient("1960-03-01", "female")
    assert pops("CMS125", woman, encounter(), yes)["denominator-exclusion"] == 1
    assert pops("CMS125", woman, encounter(), no)["denominator-exclusion"] == 0


def test_frailty_with_advanced_illness_excludes_from_66() -> None:
    frail_ill = (_frailty_device(), condition(ADVANCED_ILLNESS, onset="2024-03-01T00:00:00Z"))
    assert pops("CMS130", OLD, encounter(), *frail_ill)["denominator-exclusion"] == 1
    # Frailty alone is not enough for CMS130 ...
    assert pops("CMS130", OLD, encounter(), _frailty_device())["denominator-exclusion"] == 0
    # ... an advanced illness that started more than a year before the period does not count ...
    old_illness = condition(ADVANCED_ILLNESS, onset="2023-12-31T00:00:00Z")
    assert pops("CMS130", OLD, encounter(), _frailty_device(), old_illness)["denominator-exclusion"] == 0
    # ... and under 66 nothing here excludes.
    young = patient("1965-01-01", "female")
    assert pops("CMS130", young, encounter(), *frail_ill)["denominator-exclusion"] == 0


def test_frailty_device_not_to_be_performed_does_not_count() -> None:
    ill = condition(ADVANCED_ILLNESS, onset="2024-03-01T00:00:00Z")
    assert (
        pops("CMS130", OLD, encounter(), _frailty_device(do_not_perform=True), ill)["denominator-exclusion"]
        == 0
    )
    assert (
        pops("CMS130", OLD, encounter(), _frailty_device(do_not_perform=False), ill)["denominator-exclusion"]
        == 1
    )


def test_controlling_bp_excludes_frailty_alone_from_81() -> None:
    from tests.care_gaps.conftest import HYPERTENSION

    p81 = patient("1944-01-01", "male")
    htn = condition(HYPERTENSION)
    assert pops("CMS165", p81, encounter(), htn, _frailty_device())["denominator-exclusion"] == 1
    assert pops("CMS165", OLD, encounter(), htn, _frailty_device())["denominator-exclusion"] == 0


def test_nursing_home_uses_the_last_housing_status() -> None:
    def housing(when: str, code: str) -> dict:
        return observation(
            (LOINC, "71802-3"), when, category="survey", value=None, valueCodeableConcept=cc(SNOMED, code)
        )

    nursing_then_home = (
        housing("2024-01-01T00:00:00Z", "160734000"),
        housing("2025-02-01T00:00:00Z", "224130005"),
    )
    assert pops("CMS130", OLD, encounter(), *nursing_then_home)["denominator-exclusion"] == 0
    assert (
        pops("CMS130", OLD, encounter(), housing("2025-02-01T00:00:00Z", "160734000"))[
            "denominator-exclusion"
        ]
        == 1
    )


def test_colectomy_any_time_before_the_end_excludes() -> None:
    assert pops("CMS130", OLD, encounter(), procedure(COLECTOMY, "2001-05-01"))["denominator-exclusion"] == 1
    assert pops("CMS130", OLD, encounter(), procedure(COLECTOMY, "2026-01-02"))["denominator-exclusion"] == 0


def test_an_excluded_patient_is_not_counted_in_the_numerator() -> None:
    got = pops(
        "CMS130", OLD, encounter(), procedure(COLECTOMY, "2001-05-01"), procedure(COLONOSCOPY, "2024-01-01")
    )
    assert got == {"initial-population": 1, "denominator": 1, "denominator-exclusion": 1, "numerator": 0}


def test_kidney_health_excludes_only_active_ckd5() -> None:
    base = (OLD, encounter(), condition(DIABETES))
    assert pops("CMS951", *base, condition(CKD5))["denominator-exclusion"] == 1
    assert pops("CMS951", *base, condition(CKD5, clinical="remission"))["denominator-exclusion"] == 0


def test_statin_allergy_is_an_exception_only_when_not_in_the_numerator() -> None:
    from tests.care_gaps.conftest import ATORVASTATIN_20, MI, med_request, populations

    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
        "code": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "83367"),  # atorvastatin
        "patient": {"reference": f"Patient/{PID}"},
        "onsetPeriod": {"start": "2024-12-31T00:00:00Z"},  # since the last day of 2024, ongoing
    }
    man = patient("1960-01-01", "male")
    got = populations("CMS347", man, encounter(), condition(MI), allergy)[0]
    assert got["denominator-exception"] == 1 and got["numerator"] == 0
    # A single onset moment before the period does not overlap it.
    ended = {**allergy, "onsetPeriod": None, "onsetDateTime": "2024-12-31T00:00:00Z"}
    assert populations("CMS347", man, encounter(), condition(MI), ended)[0]["denominator-exception"] == 0
    treated = populations(
        "CMS347", man, encounter(), condition(MI), allergy, med_request(ATORVASTATIN_20, "2025-03-01")
    )[0]
    assert treated["numerator"] == 1 and treated["denominator-exception"] == 0


# --- no data ---------------------------------------------------------------------------------
def test_patient_without_any_data_is_in_no_population() -> None:
    record = PatientRecord.from_resources([patient()], now=datetime(2025, 6, 1, tzinfo=UTC))
    for result in evaluate(record, MP):
        assert all(not any(g.values()) for g in result.counts()), result.measure_id


def test_no_patient_resource_and_no_birth_date() -> None:
    assert all(not any(g.values()) for r in evaluate([], MP) for g in r.counts())
    no_birth = {"resourceType": "Patient", "id": PID, "gender": "female"}
    assert all(not any(g.values()) for r in evaluate([no_birth, encounter()], MP) for g in r.counts())


def test_malformed_fields_do_not_break_the_engine() -> None:
    junk = [
        patient("1960-01-01"),
        encounter(period="yesterday"),
        {"resourceType": "Condition", "id": "c", "code": "E11.9", "onsetDateTime": 12, "category": "x"},
        {"resourceType": "Observation", "id": "o", "code": {"coding": "4548-4"}, "valueQuantity": "high"},
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": cc(LOINC, "4548-4"),
            "effectivePeriod": {"start": "not a date"},
            "valueQuantity": {"value": "9"},
        },
        {"resourceType": "MedicationRequest", "id": "m", "dosageInstruction": "daily", "dispenseRequest": []},
    ]
    results = evaluate(junk, Period.parse("2025-01-01", "2025-12-31"))
    assert [r.measure_id for r in results] == list(MEASURE_IDS)


def test_measure_names_resolve() -> None:
    assert resolve_measure("130") == "CMS130"
    assert resolve_measure("cms347fhir") == "CMS347"
    assert resolve_measure("KidneyHealthEvaluationFHIR") == "CMS951"


def test_statin_not_ordered_for_a_medical_reason_during_the_visit() -> None:
    from tests.care_gaps.conftest import MI, populations

    visit = encounter("2025-04-01T09:00:00Z", end="2025-04-01T10:00:00Z")

    def not_ordered(reason: str, authored: str = "2025-04-01T09:30:00Z", by_value_set: bool = False) -> dict:
        medication = cc("http://www.nlm.nih.gov/research/umls/rxnorm", "617310")
        if by_value_set:  # QI-Core negation naming the whole value set
            medication = {"extension": [{
                "url": "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-notDoneValueSet",
                "valueCanonical": "http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.526.3.1572"}]}  # fmt: skip
        return {
            "resourceType": "MedicationRequest",
            "id": f"nr-{reason}-{authored}-{by_value_set}",
            "status": "completed",
            "intent": "order",
            "doNotPerform": True,
            "medicationCodeableConcept": medication,
            "subject": {"reference": f"Patient/{PID}"},
            "authoredOn": authored,
            "reasonCode": [cc(SNOMED, reason)],
        }

    man = patient("1960-01-01", "male")

    def exception(*extra: dict) -> int:
        return populations("CMS347", man, visit, condition(MI), *extra)[0]["denominator-exception"]

    assert exception(not_ordered("183932001")) == 1  # procedure contraindicated: a medical reason
    assert exception(not_ordered("183932001", by_value_set=True)) == 1
    assert exception(not_ordered("183932001", authored="2025-04-02T09:30:00Z")) == 0  # not during the visit
    assert exception(not_ordered("105480006")) == 0  # refusal of treatment: not a medical reason


def test_a_condition_neither_active_nor_abated_has_no_prevalence_interval() -> None:
    """QICoreCommon prevalenceInterval(): without an active (recurrence, relapse) clinical status
    and without an abatement, the CQL query over a null abatement end is null, so the Condition
    never counts; with an abatement it counts from onset to abatement."""
    frail = _frailty_device()
    illness = condition(ADVANCED_ILLNESS, onset="2024-12-31T23:59:00Z")
    assert pops("CMS130", OLD, encounter(), frail, illness)["denominator-exclusion"] == 1
    for status in (None, "inactive", "resolved", "remission"):
        cond = {k: v for k, v in illness.items() if k != "clinicalStatus"}
        if status:
            cond["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", status)
        assert pops("CMS130", OLD, encounter(), frail, cond)["denominator-exclusion"] == 0, status
        abated = {**cond, "abatementDateTime": "2025-02-01T00:00:00Z"}
        assert pops("CMS130", OLD, encounter(), frail, abated)["denominator-exclusion"] == 1, status
