"""Da Vinci DEQM gaps-in-care reports: what `Measure/$care-gaps` returns.

    params = care_gaps_parameters([gaps_bundle(record, results, now)])

One gaps-in-care Bundle (document) per patient: a Composition whose sections each point to one
measure's individual MeasureReport (section.focus) and to the DetectedIssue that states its gap
status (section.entry), then the Patient, the reporting Organization, the MeasureReports and the
DetectedIssues. Profiles: Da Vinci DEQM STU5 (5.0.0), http://hl7.org/fhir/us/davinci-deqm —
gaps-bundle-deqm, gaps-composition-deqm, gaps-detectedissue-deqm, indv-measurereport-deqm.

Gap status per measure (DEQM gaps-status code system): `not-applicable` outside the denominator,
or excluded or excepted; `closed-gap` when the measure is met (for the inverse CMS122: not in the
numerator); otherwise `prospective-gap` while the measurement period is still running at the
report date (the gap can still be closed in the period) and `open-gap` once it has ended. The
MeasureReports are the exact measure results (never the point-of-care readings of the CDS service).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.result import MeasureResult

DEQM = "http://hl7.org/fhir/us/davinci-deqm"
PROFILE = {
    "Bundle": f"{DEQM}/StructureDefinition/gaps-bundle-deqm",
    "Composition": f"{DEQM}/StructureDefinition/gaps-composition-deqm",
    "DetectedIssue": f"{DEQM}/StructureDefinition/gaps-detectedissue-deqm",
    "MeasureReport": f"{DEQM}/StructureDefinition/indv-measurereport-deqm",
}
GAP_STATUS_URL = f"{DEQM}/StructureDefinition/extension-gapStatus"
GAP_STATUS_SYSTEM = f"{DEQM}/CodeSystem/gaps-status"
GAP_STATUSES = ("open-gap", "closed-gap", "prospective-gap", "not-applicable")
GAP_DISPLAY = {
    "open-gap": "Open Gap",
    "closed-gap": "Closed Gap",
    "prospective-gap": "Prospective Gap",
    "not-applicable": "Not Applicable",
}
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
IMPROVEMENT = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
REPORTER_NAME = "cds care-gaps (CMS eCQM evaluation)"


def gap_status(result: MeasureResult, now: datetime) -> str:
    """The DEQM gap status of one measure for one patient at the report date `now`."""
    counts = result.counts()
    applicable = [
        c
        for c in counts
        if c["denominator"] and not c["denominator-exclusion"] and not c.get("denominator-exception")
    ]
    if not applicable:
        return "not-applicable"
    if not result.open_gap_groups:
        return "closed-gap"
    return "prospective-gap" if now.date() <= result.period.end_date else "open-gap"


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _measure_report(
    result: MeasureResult, patient_ref: str, reporter_ref: str, now: datetime
) -> dict[str, Any]:
    report = result.to_measure_report(None)
    report = {
        "resourceType": "MeasureReport",
        "meta": {"profile": [PROFILE["MeasureReport"]]},
        **{k: v for k, v in report.items() if k != "resourceType"},
        "subject": {"reference": patient_ref},
        "date": now.isoformat(),
        "reporter": {"reference": reporter_ref},
        "improvementNotation": {
            "coding": [
                {
                    "system": IMPROVEMENT,
                    "code": "decrease" if result.inverse else "increase",
                    "display": "Decreased score indicates improvement"
                    if result.inverse
                    else "Increased score indicates improvement",
                }
            ]
        },
    }
    return report


def _detected_issue(status: str, patient_ref: str, report_ref: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "DetectedIssue",
        "meta": {"profile": [PROFILE["DetectedIssue"]]},
        "modifierExtension": [
            {
                "url": GAP_STATUS_URL,
                "valueCodeableConcept": {
                    "coding": [{"system": GAP_STATUS_SYSTEM, "code": status, "display": GAP_DISPLAY[status]}]
                },
            }
        ],
        "status": "final",
        "code": {"coding": [{"system": ACT_CODE, "code": "CAREGAP", "display": "Care Gaps"}]},
        "patient": {"reference": patient_ref},
        "identifiedDateTime": now.isoformat(),
        "evidence": [{"detail": [{"reference": report_ref}]}],
    }


def gaps_bundle(
    record: PatientRecord,
    results: Sequence[MeasureResult],
    now: datetime,
    statuses: Iterable[str] = GAP_STATUSES,
) -> dict[str, Any]:
    """The DEQM gaps-in-care Bundle of one patient: one section per measure whose gap status is in
    `statuses` (the operation's `status` parameter)."""
    wanted = set(statuses)
    patient = dict(record.patient or {"resourceType": "Patient", "id": record.patient_id or "unknown"})
    patient_url, reporter_url = _urn(), _urn()
    reporter = {"resourceType": "Organization", "name": REPORTER_NAME}
    sections, entries = [], []
    for result in results:
        status = gap_status(result, now)
        if status not in wanted:
            continue
        report_url, issue_url = _urn(), _urn()
        entries.append((report_url, _measure_report(result, patient_url, reporter_url, now)))
        entries.append((issue_url, _detected_issue(status, patient_url, report_url, now)))
        sections.append(
            {
                "title": f"{result.measure_id} {result.title}",
                "focus": {"reference": report_url},
                "entry": [{"reference": issue_url}],
            }
        )
    composition = {
        "resourceType": "Composition",
        "meta": {"profile": [PROFILE["Composition"]]},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "96315-7", "display": "Gaps in care report"}]},
        "subject": {"reference": patient_url},
        "date": now.isoformat(),
        "author": [{"reference": reporter_url}],
        "title": "Gaps In Care Report",
    }
    if sections:
        composition["section"] = sections
    doc = [(_urn(), composition), (patient_url, patient), (reporter_url, reporter), *entries]
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [PROFILE["Bundle"]]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": _urn()},
        "type": "document",
        "timestamp": now.isoformat(),
        "entry": [{"fullUrl": url, "resource": res} for url, res in doc],
    }


def care_gaps_parameters(bundles: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The `Measure/$care-gaps` result: a Parameters resource, one `return` Bundle per patient."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "return", "resource": b} for b in bundles],
    }


def profile_problems(bundle: dict[str, Any]) -> list[str]:
    """What a gaps-in-care Bundle lacks of the DEQM STU5 profiles' required (1..) elements and fixed
    values, and references that do not resolve inside the Bundle. Empty when it conforms."""
    out: list[str] = []
    entries = bundle.get("entry") or []
    by_url = {e.get("fullUrl"): e.get("resource") or {} for e in entries}

    def need(cond: bool, what: str) -> None:
        if not cond:
            out.append(what)

    def resolves(ref: Any, rtype: str, what: str) -> None:
        target = by_url.get(ref.get("reference")) if isinstance(ref, dict) else None
        need(
            isinstance(target, dict) and target.get("resourceType") == rtype,
            f"{what} must reference a {rtype}",
        )

    need(bundle.get("type") == "document", "Bundle.type must be document")
    need(isinstance(bundle.get("timestamp"), str), "Bundle.timestamp is required")
    ident = bundle.get("identifier") or {}
    need(bool(ident.get("system")) and bool(ident.get("value")), "Bundle.identifier needs system and value")
    need(PROFILE["Bundle"] in (bundle.get("meta") or {}).get("profile", []), "Bundle.meta.profile")
    need(bool(entries) and entries[0].get("resource", {}).get("resourceType") == "Composition",
         "the first entry must be the Composition")  # fmt: skip
    need(all(isinstance(e.get("fullUrl"), str) for e in entries), "every entry needs a fullUrl")
    for e in entries:
        r = e.get("resource") or {}
        rt = r.get("resourceType")
        if rt == "Composition":
            need(r.get("status") in ("preliminary", "final", "amended"), "Composition.status")
            codings = (r.get("type") or {}).get("coding") or []
            need(any(c.get("system") == LOINC and c.get("code") == "96315-7" for c in codings),
                 "Composition.type must be LOINC 96315-7")  # fmt: skip
            resolves(r.get("subject"), "Patient", "Composition.subject")
            need(isinstance(r.get("date"), str), "Composition.date is required")
            need(bool(r.get("author")), "Composition.author is required")
            for a in r.get("author") or []:
                resolves(a, "Organization", "Composition.author")
            need(bool(r.get("title")), "Composition.title is required")
            for s in r.get("section") or []:
                resolves(s.get("focus"), "MeasureReport", "Composition.section.focus")
                need(bool(s.get("entry")), "Composition.section.entry is required")
                for x in s.get("entry") or []:
                    resolves(x, "DetectedIssue", "Composition.section.entry")
        elif rt == "DetectedIssue":
            exts = [x for x in r.get("modifierExtension") or [] if x.get("url") == GAP_STATUS_URL]
            need(len(exts) == 1, "DetectedIssue needs one gapStatus modifierExtension")
            codes = [
                c.get("code") for x in exts for c in (x.get("valueCodeableConcept") or {}).get("coding", [])
            ]
            need(bool(codes) and all(c in GAP_STATUSES for c in codes), "DetectedIssue gap status code")
            need(isinstance(r.get("status"), str), "DetectedIssue.status is required")
            need(any(c.get("code") == "CAREGAP" for c in (r.get("code") or {}).get("coding", [])),
                 "DetectedIssue.code must be CAREGAP")  # fmt: skip
            resolves(r.get("patient"), "Patient", "DetectedIssue.patient")
            details = [d for ev in r.get("evidence") or [] for d in ev.get("detail") or []]
            need(bool(details), "DetectedIssue.evidence.detail is required")
            for d in details:
                resolves(d, "MeasureReport", "DetectedIssue.evidence.detail")
        elif rt == "MeasureReport":
            need(r.get("status") == "complete", "MeasureReport.status")
            need(r.get("type") == "individual", "MeasureReport.type must be individual")
            need(isinstance(r.get("measure"), str), "MeasureReport.measure is required")
            resolves(r.get("subject"), "Patient", "MeasureReport.subject")
            need(isinstance(r.get("date"), str), "MeasureReport.date is required")
            resolves(r.get("reporter"), "Organization", "MeasureReport.reporter")
            p = r.get("period") or {}
            need(bool(p.get("start")) and bool(p.get("end")), "MeasureReport.period is required")
            need(bool(r.get("improvementNotation")), "MeasureReport.improvementNotation is required")
    return out
