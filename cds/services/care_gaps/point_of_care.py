"""Point-of-care readings of the care-gap measures: what a clinician opening the chart expects,
where the letter of the eCQM (written for retrospective reporting) would mislead.

Only the care-gaps service applies them; the measure engine and `cds measure evaluate` stay exact.
Each reading that changes the record leaves a note, which the cards show. The code lists and
their sources are data: cds/knowledge/care_gaps_point_of_care.json.

- No care-gap cards for a deceased patient (Patient.deceasedBoolean / deceasedDateTime).
- The visit the hook names (`context.encounterId`), arrived or in progress, counts as a finished
  office visit ending now (`count_current_visit`); with `assume_current_visit` (ambulatory
  deployments whose EHR sends no encounterId) a current office visit is assumed.
- Ambulatory visits coded only with common SNOMED CT visit concepts (check-up, follow-up...) also
  carry the CPT code of the matching measure visit concept (`map_visit_codes`).
- Any eGFR counts in CMS951 (`accept_any_egfr`); blood pressure panels coded with the older LOINC
  55284-4 count as 85354-9 (`accept_legacy_bp_panel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import LOINC, CodeSet
from cds.fhir.value import as_dict, as_list, dicts
from cds.knowledge import KNOWLEDGE_DIR
from cds.services.care_gaps import knowledge_files
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.qicore import day, period_interval

KNOWLEDGE = KNOWLEDGE_DIR / "care_gaps_point_of_care.json"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Encounter.class codes of visits a clinic sees the patient in (v3 ActCode): ambulatory, virtual,
# home health. Inpatient and emergency stays are never mapped to office visits.
AMBULATORY_CLASSES = frozenset({"AMB", "VR", "HH"})
ARRIVED = frozenset({"arrived", "triaged", "in-progress", "onleave", "finished"})


@lru_cache(maxsize=1)
def knowledge() -> dict[str, Any]:
    return knowledge_files.load(
        KNOWLEDGE, knowledge_files.PointOfCareFile, knowledge_files.check_point_of_care
    )


@dataclass
class Adjusted:
    """The record as the point of care reads it, and a note for each reading that changed it."""

    record: PatientRecord
    notes: list[str] = field(default_factory=list)


def is_deceased(record: PatientRecord) -> bool:
    """Patient.deceasedBoolean true, or any deceasedDateTime."""
    p = record.patient or {}
    return p.get("deceasedBoolean") is True or isinstance(p.get("deceasedDateTime"), str)


def _replace(record: PatientRecord, rtype: str, resources: tuple[dict[str, Any], ...]) -> PatientRecord:
    return PatientRecord(patient=record.patient, by_type={**record.by_type, rtype: resources}, now=record.now)


def _ambulatory(enc: dict[str, Any]) -> bool:
    cls = enc.get("class")
    code = cls.get("code") if isinstance(cls, dict) else None
    return code is None or code in AMBULATORY_CLASSES


def _with_type(enc: dict[str, Any], code: str, display: str) -> dict[str, Any]:
    types = as_list(enc.get("type"))
    return {**enc, "type": [*types, {"coding": [{"system": CPT, "code": code, "display": display}]}]}


def current_visit(record: PatientRecord, encounter_id: Any, assume: bool) -> Adjusted:
    """The visit the chart is open in, as a finished office visit ending now."""
    cv = knowledge()["current_visit"]
    now = record.now.isoformat()
    encounters = record.of_type("Encounter")
    if isinstance(encounter_id, str) and encounter_id:
        eid = encounter_id.rsplit("/", 1)[-1]
        for i, enc in enumerate(encounters):
            if enc.get("id") != eid:
                continue
            if enc.get("status") not in ARRIVED or not _ambulatory(enc):
                return Adjusted(record)
            period = as_dict(enc.get("period"))
            closed = {**enc, "status": "finished", "period": {"start": period.get("start", now), "end": now}}
            if period.get("end"):
                closed["period"]["end"] = period["end"]
            closed = _with_type(closed, cv["cpt"], cv["display"])
            out = (*encounters[:i], closed, *encounters[i + 1 :])
            note = "the current visit counts as a finished office visit"
            return Adjusted(_replace(record, "Encounter", out), [note])
        if not assume:
            return Adjusted(record)
    elif not assume:
        return Adjusted(record)
    assumed = {
        "resourceType": "Encounter",
        "id": "current-visit",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB"},
        "type": [{"coding": [{"system": CPT, "code": cv["cpt"], "display": cv["display"]}]}],
        "period": {"start": now, "end": now},
    }
    note = "a current office visit is assumed (ambulatory setting)"
    return Adjusted(_replace(record, "Encounter", (*encounters, assumed)), [note])


def _snomed_codes(enc: dict[str, Any]) -> list[str]:
    out = []
    for cc in dicts(enc.get("type")):
        for c in dicts(cc.get("coding")):
            if c.get("system") == SNOMED and isinstance(c.get("code"), str):
                out.append(c["code"])
    return out


def mapped_visit_codes(record: PatientRecord, period: Period, qualifying: CodeSet) -> Adjusted:
    """Ambulatory visits in the period coded only with a mapped SNOMED CT concept also carry the
    CPT code of the matching measure visit concept. Visits outside the period are left alone: every
    measure asks for its visits during the period."""
    vc = knowledge()["visit_codes"]
    preventive, office = vc["preventive"]["snomed"], vc["office"]["snomed"]
    age = record.age()
    # ISO strings compare like dates; a day of slack either side for time zones, checked exactly below.
    first = (period.start_date - timedelta(days=1)).isoformat()
    last = (period.end_date + timedelta(days=1)).isoformat() + "T99"
    encounters = record.of_type("Encounter")
    out: list[dict[str, Any]] | None = None
    used: set[str] = set()
    for i, enc in enumerate(encounters):
        p = enc.get("period")
        start = p.get("start") if isinstance(p, dict) else None
        if not isinstance(start, str) or not first <= start <= last:
            continue
        code = next((c for c in _snomed_codes(enc) if c in preventive or c in office), None)
        if code is None or not _ambulatory(enc):
            continue
        iv = period_interval(p)
        if iv is None or iv.low is None or not period.start_date <= day(iv.low) <= period.end_date:
            continue
        types = as_list(enc.get("type"))
        if any(qualifying.matches(cc) for cc in types if isinstance(cc, dict)):
            continue
        if code in preventive:
            if age is None or age < vc["preventive"]["cpt_by_age"][0][0]:
                continue
            cpt = next(c for lo, c in reversed(vc["preventive"]["cpt_by_age"]) if age >= lo)
            mapped = _with_type(enc, cpt, "Periodic comprehensive preventive medicine reevaluation")
            used.add(f"SNOMED CT {code} ({preventive[code]}) as a {vc['preventive']['label']}")
        else:
            mapped = _with_type(enc, vc["office"]["cpt"], "Office or other outpatient visit")
            used.add(f"SNOMED CT {code} ({office[code]}) as an {vc['office']['label']}")
        if out is None:
            out = list(encounters)
        out[i] = mapped
    if out is None:
        return Adjusted(record)
    return Adjusted(_replace(record, "Encounter", tuple(out)), [f"visits coded {', '.join(sorted(used))}"])


def _recoded(
    record: PatientRecord, rtype: str, codes: Mapping[str, str], system: str, extra: dict[str, str]
) -> tuple[PatientRecord, set[str]]:
    """Resources whose code has a coding (`system`, one of `codes`) and not yet `extra` also carry
    the coding `extra`; the names (`codes` values) matched. One pass of plain dict lookups: it runs
    on every Observation of every chart."""
    out: list[dict[str, Any]] | None = None
    names: set[str] = set()
    extra_code, extra_system = extra["code"], extra["system"]
    # Only these code values can decide anything: a coding with another code is skipped after one
    # set lookup (only a string can equal one of these strings).
    wanted = frozenset((*codes, extra_code))
    resources = record.of_type(rtype)
    for i, res in enumerate(resources):
        code = res.get("code")
        if not isinstance(code, dict):
            continue
        codings = code.get("coding")
        if not isinstance(codings, list):
            continue
        name = None
        for c in codings:
            if not isinstance(c, dict):
                continue
            value = c.get("code")
            if not isinstance(value, str) or value not in wanted:
                continue
            if value == extra_code and c.get("system") == extra_system:
                name = None  # already carries it
                break
            if isinstance(value, str) and value in codes and c.get("system") == system:
                name = codes[value]
        if name is None:
            continue
        if out is None:
            out = list(resources)
        out[i] = {**res, "code": {**code, "coding": [*codings, extra]}}
        names.add(name)
    return (_replace(record, rtype, tuple(out)) if out is not None else record), names


def any_egfr(record: PatientRecord) -> Adjusted:
    """eGFR results coded with other eGFR LOINCs (MDRD...) also carry the value set's code."""
    eg = knowledge()["egfr"]
    codes = {code: f"{name} LOINC {code}" for code, name in eg["loinc"].items()}
    rec, names = _recoded(record, "Observation", codes, LOINC, {"system": LOINC, "code": eg["as"]})
    return Adjusted(rec, [f"{', '.join(sorted(names))} counted as eGFR"] if names else [])


_BP_PANEL = {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}


def legacy_bp_panels(record: PatientRecord) -> PatientRecord:
    """Blood pressure panels coded 55284-4 also carry the QI-Core panel code 85354-9."""
    return _recoded(record, "Observation", {"55284-4": "bp"}, LOINC, _BP_PANEL)[0]


def now_in(period: Period, now: datetime) -> bool:
    return period.start_date <= now.date() <= period.end_date
