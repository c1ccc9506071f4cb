"""Hypothesis strategies for patients on and around every boundary the eight measures draw.

A generated patient starts from one of the official test cases (which carry codes from the right
value sets) and takes a few mutations: the birth date on an age boundary or the period's ends;
encounters, results, procedures, conditions and medications moved onto and around the period's
start and end and the look-back windows (1, 2, 4, 9, 10 years), in other time zones or as dates
only; statuses swapped for every other value (arrived, corrected, preliminary, cancelled...);
values turned into Quantities around the thresholds, CodeableConcepts, strings or nothing;
Condition clinical status removed or changed; medications moved to a referenced or contained
Medication resource; doNotPerform set; periods without an end; resources dropped or duplicated.
"""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from cds.services.care_gaps.measures.period import add_years

PERIOD_START = date(2025, 1, 1)
PERIOD_END = date(2025, 12, 31)
AGES = (18, 20, 21, 24, 30, 40, 45, 46, 50, 51, 52, 64, 65, 66, 74, 75, 76, 80, 81, 85, 86)
LOOKBACK_YEARS = (0, 1, 2, 3, 4, 5, 9, 10)
CLOCKS = (
    "T00:00:00Z",
    "T00:00:00.000Z",
    "T12:00:00Z",
    "T23:59:59Z",
    "T23:30:00-05:00",
    "T00:30:00+05:00",
    "",
)


@lru_cache(maxsize=1)
def _anchor_days() -> tuple[date, ...]:
    """The period's ends and every look-back start, each with its neighbours."""
    days: set[date] = set()
    for y in LOOKBACK_YEARS:
        for anchor in (add_years(PERIOD_START, -y), add_years(PERIOD_END, -y)):
            days.update(anchor + timedelta(days=d) for d in (-1, 0, 1))
    days.update((PERIOD_START + timedelta(days=180), date(2026, 2, 1)))
    return tuple(sorted(days))


@lru_cache(maxsize=1)
def _birth_days() -> tuple[date, ...]:
    days: set[date] = {PERIOD_END, PERIOD_START, PERIOD_END - timedelta(days=1)}
    for age in AGES:
        for anchor in (add_years(PERIOD_END, -age), add_years(PERIOD_START, -age)):
            days.update(anchor + timedelta(days=d) for d in (-1, 0, 1))
    return tuple(sorted(days))


def official_cases(ecqm_dir: Path, library: str | None = None) -> list[list[dict[str, Any]]]:
    """The resources of every visible official test case (of one measure library, or all), without
    their MeasureReports."""
    out = []
    for folder in sorted((ecqm_dir / "tests").iterdir()):
        if library is not None and folder.name != library:
            continue
        for case in sorted(folder.iterdir()):
            res = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(case.glob("*.json"))]
            out.append([r for r in res if r.get("resourceType") != "MeasureReport"])
    return out


day_strings = st.builds(
    lambda d, clock: d.isoformat() + clock, st.sampled_from(_anchor_days()), st.sampled_from(CLOCKS)
)
STATUSES = {
    "Encounter": ["finished", "arrived", "triaged", "in-progress", "onleave", "planned", "cancelled"],
    "Observation": ["final", "amended", "corrected", "preliminary", "registered", "cancelled"],
    "Procedure": ["completed", "in-progress", "not-done", "stopped"],
    "MedicationRequest": ["active", "completed", "on-hold", "stopped", "draft"],
    "ServiceRequest": ["active", "completed", "revoked", "draft"],
    "DeviceRequest": ["active", "completed", "revoked"],
    "Immunization": ["completed", "not-done"],
}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _time_fields(res: dict[str, Any]) -> list[str]:
    keys = (
        "effectiveDateTime", "effectivePeriod", "performedDateTime", "performedPeriod", "period",
        "onsetDateTime", "abatementDateTime", "authoredOn", "recordedDate", "issued", "occurrenceDateTime",
    )  # fmt: skip
    return [k for k in keys if k in res]


# The mutations that apply to each resource type (besides moving its times and dropping it).
KINDS: dict[str, tuple[str, ...]] = {
    "Observation": ("status", "value", "value"),
    "Condition": ("clinical", "clinical"),
    "Encounter": ("status", "period-end"),
    "Procedure": ("status", "period-end"),
    "MedicationRequest": ("status", "medication", "medication"),
    "ServiceRequest": ("status",),
    "DeviceRequest": ("status",),
    "Immunization": ("status",),
}


@st.composite
def mutation(draw: st.DrawFn, resources: list[dict[str, Any]]) -> None:
    """Apply one boundary mutation to the resources, in place: to the Patient (birth date, gender,
    death) or to one clinical resource, with a mutation that applies to its type."""
    patient = next(r for r in resources if r.get("resourceType") == "Patient")
    others = [
        r for r in resources if r.get("resourceType") not in ("Patient", "Organization", "Practitioner")
    ]
    if not others or draw(st.integers(0, 4)) == 0:
        kind = draw(st.sampled_from(["birth", "birth", "gender", "deceased"]))
        if kind == "birth":
            patient["birthDate"] = draw(st.sampled_from(_birth_days())).isoformat()
        elif kind == "gender":
            patient["gender"] = draw(st.sampled_from(["female", "male", "other", "unknown"]))
        else:
            patient["deceasedDateTime"] = draw(day_strings)
        return
    res = draw(st.sampled_from(others))
    rtype = res.get("resourceType")
    kind = draw(st.sampled_from(("time", "time", "drop", *KINDS.get(rtype, ()))))
    if kind == "drop":
        resources.remove(res)
    elif kind == "time":
        fields = _time_fields(res)
        if not fields:
            return
        f = draw(st.sampled_from(fields))
        if isinstance(res[f], dict):  # a Period
            start, end = draw(day_strings), draw(day_strings | st.none())
            res[f] = {"start": start} | ({"end": end} if end else {})
        else:
            res[f] = draw(day_strings)
    elif kind == "period-end":
        for f in ("period", "performedPeriod", "effectivePeriod"):
            if isinstance(res.get(f), dict):
                res[f].pop("end", None)
    elif kind == "status" and rtype in STATUSES:
        res["status"] = draw(st.sampled_from(STATUSES[rtype]))
    elif (
        kind == "value"
        and rtype == "Observation"
        and isinstance(res.get("component"), list)
        and draw(st.booleans())
    ):
        for comp in res["component"]:  # blood pressure: systolic / diastolic around 140 / 90
            if isinstance(comp, dict) and isinstance(comp.get("valueQuantity"), dict):
                comp["valueQuantity"]["value"] = draw(st.sampled_from([80, 89, 90, 91, 120, 139, 140, 141]))
    elif kind == "value" and rtype == "Observation":
        for k in [k for k in res if k.startswith("value")]:
            del res[k]
        shape = draw(st.sampled_from(["quantity", "percent", "concept", "string", "none"]))
        if shape == "percent":
            res["valueQuantity"] = {"value": draw(st.sampled_from([7.9, 8.0, 8.9, 9.0, 9.1, 10.2])),
                                    "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}  # fmt: skip
        elif shape == "quantity":
            res["valueQuantity"] = {"value": draw(st.sampled_from([0, 30, 60, 89, 90, 139, 140, 300])),
                                    "unit": "mg/g", "system": "http://unitsofmeasure.org", "code": "mg/g"}  # fmt: skip
        elif shape == "concept":
            res["valueCodeableConcept"] = {
                "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
            }
        elif shape == "string":
            res["valueString"] = "see report"
    elif kind == "clinical" and rtype == "Condition":
        choice = draw(st.sampled_from(["none", "active", "inactive", "resolved", "remission", "relapse"]))
        if choice == "none":
            res.pop("clinicalStatus", None)
        else:
            res["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": choice}]}
    elif kind == "medication" and rtype == "MedicationRequest":
        concept = res.get("medicationCodeableConcept")
        how = draw(st.sampled_from(["reference", "contained", "doNotPerform", "intent"]))
        if how == "doNotPerform":
            res["doNotPerform"] = draw(st.booleans())
        elif how == "intent":
            res["intent"] = draw(st.sampled_from(["order", "plan", "proposal"]))
        elif isinstance(concept, dict):
            del res["medicationCodeableConcept"]
            med = {"resourceType": "Medication", "id": f"med-{res.get('id', 'x')}", "code": concept}
            if how == "contained":
                res["contained"] = [med]
                res["medicationReference"] = {"reference": f"#{med['id']}"}
            else:
                resources.append(med)
                res["medicationReference"] = {"reference": f"Medication/{med['id']}"}


@st.composite
def boundary_patient(draw: st.DrawFn, cases: list[list[dict[str, Any]]], index: int) -> list[dict[str, Any]]:
    """One official case, copied, renamed `gen-<index>`, with one to four mutations."""
    resources = copy.deepcopy(draw(st.sampled_from(cases)))
    patient = next(r for r in resources if r.get("resourceType") == "Patient")
    old, new = patient["id"], f"gen-{index}"
    patient["id"] = new
    text = json.dumps(resources).replace(f"Patient/{old}", f"Patient/{new}")
    resources = json.loads(text)
    for _ in range(draw(st.integers(1, 4))):
        draw(mutation(resources))
    return resources


def single_mutations(case: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Every one-step variant of an official case (deterministic, no hypothesis): each third
    boundary birth date; each Observation's status (corrected, amended, preliminary) and value shape
    (CodeableConcept, string, none, 10 %, 9 %); each Condition's clinical status (none, inactive,
    resolved, remission); each Encounter's status and a period without an end; each order or
    procedure dropped."""
    out: list[list[dict[str, Any]]] = []

    def variant(change: Any) -> None:
        c = copy.deepcopy(case)
        change(c)
        out.append(c)

    def birth(d: date) -> Any:
        return lambda c: next(r for r in c if r.get("resourceType") == "Patient").update(
            birthDate=d.isoformat()
        )

    for d in _birth_days()[::3]:
        variant(birth(d))
    for i, r in enumerate(case):
        rtype = r.get("resourceType")
        if rtype == "Observation":
            for s in ("corrected", "amended", "preliminary"):
                variant(lambda c, i=i, s=s: c[i].update(status=s))
            for value in (
                {
                    "valueCodeableConcept": {
                        "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
                    }
                },
                {"valueString": "see report"},
                {},
                {
                    "valueQuantity": {
                        "value": 10.0,
                        "unit": "%",
                        "system": "http://unitsofmeasure.org",
                        "code": "%",
                    }
                },
                {
                    "valueQuantity": {
                        "value": 9.0,
                        "unit": "%",
                        "system": "http://unitsofmeasure.org",
                        "code": "%",
                    }
                },
            ):

                def set_value(c: list[dict[str, Any]], i: int = i, value: dict[str, Any] = value) -> None:
                    for k in [k for k in c[i] if k.startswith("value")]:
                        del c[i][k]
                    c[i].update(copy.deepcopy(value))

                variant(set_value)
        elif rtype == "Condition":
            variant(lambda c, i=i: c[i].pop("clinicalStatus", None))
            for s in ("inactive", "resolved", "remission"):
                variant(
                    lambda c, i=i, s=s: c[i].update(
                        clinicalStatus={"coding": [{"system": CLINICAL, "code": s}]}
                    )
                )
        elif rtype == "Encounter":
            for s in ("arrived", "in-progress", "triaged", "onleave", "planned"):
                variant(lambda c, i=i, s=s: c[i].update(status=s))
            variant(
                lambda c, i=i: (
                    c[i].get("period", {}).pop("end", None) if isinstance(c[i].get("period"), dict) else None
                )
            )
        elif rtype in (
            "Procedure",
            "MedicationRequest",
            "ServiceRequest",
            "AllergyIntolerance",
            "AdverseEvent",
            "DeviceRequest",
        ):
            variant(lambda c, i=i: c.pop(i))
    return out
