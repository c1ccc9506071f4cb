"""Small FHIR builders for the measure and care-gap tests (codes taken from the shipped value sets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.engine import evaluate
from cds.services.care_gaps.measures.period import Period

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
PID = "p1"
MP = Period.parse("2025-01-01", "2025-12-31")

_n = 0


def load_official_case(case_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An official eCQM test case folder: its resources, and the expected MeasureReport."""
    resources, report = [], None
    for f in sorted(case_dir.glob("*.json")):
        res = json.loads(f.read_text(encoding="utf-8"))
        if res["resourceType"] == "MeasureReport":
            report = res
        else:
            resources.append(res)
    assert report is not None, f"{case_dir}: no MeasureReport"
    return resources, report


def _id(prefix: str) -> str:
    global _n
    _n += 1
    return f"{prefix}-{_n}"


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def patient(birth: str = "1960-05-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PID, "birthDate": birth, "gender": gender}


def encounter(
    start: str = "2025-03-01T09:00:00Z",
    end: str | None = None,
    code: tuple[str, str] = (CPT, "99213"),
    **kw: Any,
) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": kw.pop("id", _id("enc")),
        "status": kw.pop("status", "finished"),
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": kw.pop("cls", "AMB")},
        "type": [cc(*code)],
        "subject": {"reference": f"Patient/{PID}"},
        "period": {"start": start, "end": end or start.replace("T09:00", "T09:30")},
        **kw,
    }


def condition(code: tuple[str, str], onset: str = "2020-01-01T00:00:00Z", **kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": _id("cond"),
        "clinicalStatus": cc(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", kw.pop("clinical", "active")
        ),
        "category": [cc(COND_CAT, kw.pop("category", "problem-list-item"))],
        "code": cc(*code),
        "subject": {"reference": f"Patient/{PID}"},
        "onsetDateTime": onset,
        **kw,
    }


def observation(
    code: tuple[str, str], when: str, category: str | None = "laboratory", value: Any = "default", **kw: Any
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": kw.pop("status", "final"),
        "code": cc(*code),
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when,
    }
    if category:
        obs["category"] = [cc(OBS_CAT, category)]
    if value == "default":
        obs["valueCodeableConcept"] = cc(SNOMED, "260385009")  # Negative
    elif isinstance(value, tuple):
        obs["valueQuantity"] = {
            "value": value[0],
            "unit": value[1],
            "system": "http://unitsofmeasure.org",
            "code": value[1],
        }
    obs.update(kw)
    return obs


def blood_pressure(when: str, sbp: float, dbp: float, **kw: Any) -> dict[str, Any]:
    def comp(code: str, v: float) -> dict[str, Any]:
        return {"code": cc(LOINC, code), "valueQuantity": {"value": v, "unit": "mmHg", "code": "mm[Hg]"}}

    return observation(
        (LOINC, "85354-9"),
        when,
        "vital-signs",
        value=None,
        component=[comp("8480-6", sbp), comp("8462-4", dbp)],
        **kw,
    )


def procedure(code: tuple[str, str], when: str, status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": _id("proc"),
        "status": status,
        "code": cc(*code),
        "subject": {"reference": f"Patient/{PID}"},
        "performedDateTime": when,
    }


def med_request(code: tuple[str, str], authored: str, **kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": _id("med"),
        "status": kw.pop("status", "active"),
        "intent": kw.pop("intent", "order"),
        "medicationCodeableConcept": cc(*code),
        "subject": {"reference": f"Patient/{PID}"},
        "authoredOn": authored,
        **kw,
    }


def populations(measure: str, *resources: dict[str, Any], period: Period = MP) -> list[dict[str, int]]:
    record = PatientRecord.from_resources(list(resources), now=datetime(2025, 11, 25, tzinfo=UTC))
    return evaluate(record, period, [measure])[0].counts()


def pops(measure: str, *resources: dict[str, Any]) -> dict[str, int]:
    """The single group's counts."""
    return populations(measure, *resources)[0]


# Frequently used codes (members of the shipped value sets).
OFFICE = (CPT, "99213")
ED_VISIT = (SNOMED, "4525004")
HOSPICE_ENCOUNTER = (SNOMED, "183919006")
DIABETES = (ICD10, "E11.9")
HYPERTENSION = (ICD10, "I10")
COLONOSCOPY = (SNOMED, "73761001")
COLECTOMY = (SNOMED, "26390003")
FIT_DNA = (LOINC, "77353-1")
FOBT = (LOINC, "29771-3")
MAMMOGRAM = (LOINC, "24606-6")
PAP = (LOINC, "10524-7")
HPV = (LOINC, "59420-0")
HBA1C = (LOINC, "4548-4")
EGFR = (LOINC, "98979-8")
UACR = (LOINC, "9318-7")
MI = (ICD10, "I21.9")
ATORVASTATIN_20 = (RXNORM, "617310")
FRAILTY_DEVICE = (SNOMED, "1142151007")
ADVANCED_ILLNESS = (ICD10, "G30.9")
CKD5 = (ICD10, "N18.5")
