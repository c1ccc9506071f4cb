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

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cds.measures.period import Period
from cds.measures.qicore import day, period_interval
from cds.record import PatientRecord
from cds.terminology import LOINC, CodeSet

KNOWLEDGE = Path(__file__).resolve().parents[1] / "knowledge" / "care_gaps_point_of_care.json"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Encounter.class codes of visits a clinic sees the patient in (v3 ActCode): ambulatory, virtual,
# home health. Inpatient and emergency stays are never mapped to office visits.
AMBULATORY_CLASSES = frozenset({"AMB", "VR", "HH"})
ARRIVED = frozenset({"arrived", "triaged", "in-progress", "onleave", "finished"})


@lru_cache(maxsize=1)
def knowledge() -> dict[str, Any]:
    return json.loads(KNOWLEDGE.read_text(encoding="utf-8"))


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
    types = enc.get("type") if isinstance(enc.get("type"), list) else []
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
            period = enc.get("period") if isinstance(enc.get("period"), dict) else {}
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
    for cc in enc.get("type") if isinstance(enc.get("type"), list) else ():
        for c in cc.get("coding") or () if isinstance(cc, dict) else ():
            if isinstance(c, dict) and c.get("system") == SNOMED and isinstance(c.get("code"), str):
                out.append(c["code"])
    return out


def mapped_visit_codes(record: PatientRecord, period: Period, qualifying: CodeSet) -> Adjusted:
    """Ambulatory visits coded only with a mapped SNOMED CT concept also carry its CPT code."""
    vc = knowledge()["visit_codes"]
    age = record.age()
    encounters = record.of_type("Encounter")
    out, used, changed = [], set(), False
    for enc in encounters:
        if _ambulatory(enc) and not any(
            qualifying.matches(cc) for cc in enc.get("type") or () if isinstance(cc, dict)
        ):
            for code in _snomed_codes(enc):
                if (
                    code in vc["preventive"]["snomed"]
                    and age is not None
                    and age >= vc["preventive"]["cpt_by_age"][0][0]
                ):
                    cpt = next(c for lo, c in reversed(vc["preventive"]["cpt_by_age"]) if age >= lo)
                    enc = _with_type(enc, cpt, "Periodic comprehensive preventive medicine reevaluation")
                elif code in vc["office"]["snomed"]:
                    enc = _with_type(enc, vc["office"]["cpt"], "Office or other outpatient visit")
                else:
                    continue
                changed = True
                iv = period_interval(enc.get("period"))
                if (
                    iv is not None
                    and iv.low is not None
                    and period.start_date <= day(iv.low) <= period.end_date
                ):
                    group = "preventive" if code in vc["preventive"]["snomed"] else "office"
                    used.add(f"SNOMED CT {code} ({vc[group]['snomed'][code]}) as a {vc[group]['label']}")
                break
        out.append(enc)
    if not changed:
        return Adjusted(record)
    notes = [f"visits coded {', '.join(sorted(used))}"] if used else []
    return Adjusted(_replace(record, "Encounter", tuple(out)), notes)


def _recoded(
    record: PatientRecord, rtype: str, match: Callable[[Any], str | None], extra: dict[str, str]
) -> tuple[PatientRecord, set[str]]:
    """Resources whose code `match` names also carry the coding `extra`; the names matched."""
    out, names = [], set()
    for res in record.of_type(rtype):
        code = res.get("code")
        name = match(code) if isinstance(code, dict) else None
        if name is not None:
            res = {**res, "code": {**code, "coding": [*(code.get("coding") or []), extra]}}
            names.add(name)
        out.append(res)
    return (_replace(record, rtype, tuple(out)) if names else record), names


def any_egfr(record: PatientRecord) -> Adjusted:
    """eGFR results coded with other eGFR LOINCs (MDRD...) also carry the value set's code."""
    eg = knowledge()["egfr"]
    codes: dict[str, str] = eg["loinc"]

    def match(cc: dict[str, Any]) -> str | None:
        for c in cc.get("coding") or ():
            if isinstance(c, dict) and c.get("system") == LOINC and c.get("code") in codes:
                return f"{codes[c['code']]} LOINC {c['code']}"
        return None

    rec, names = _recoded(record, "Observation", match, {"system": LOINC, "code": eg["as"]})
    return Adjusted(rec, [f"{', '.join(sorted(names))} counted as eGFR"] if names else [])


_BP_PANEL = {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}
_LEGACY_BP = CodeSet.of(LOINC, "55284-4")
_CURRENT_BP = CodeSet.of(LOINC, "85354-9")


def legacy_bp_panels(record: PatientRecord) -> PatientRecord:
    """Blood pressure panels coded 55284-4 also carry the QI-Core panel code 85354-9."""
    rec, _ = _recoded(
        record,
        "Observation",
        lambda cc: "bp" if _LEGACY_BP.matches(cc) and not _CURRENT_BP.matches(cc) else None,
        _BP_PANEL,
    )
    return rec


def now_in(period: Period, now: datetime) -> bool:
    return period.start_date <= now.date() <= period.end_date
