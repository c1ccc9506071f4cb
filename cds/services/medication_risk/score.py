"""Risk score of each finding and of each draft order, and the card indicator it maps to.

The points and thresholds are data (scoring.json, documented there): severity of the rule, plus the
patient factors the rule names (age, eGFR, number of interacting drugs) and the bands of the labs
it names (labs.json). The facts that added points are written into the finding for the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds.services.medication_risk.knowledge import Knowledge
from cds.services.medication_risk.patient import PatientFacts
from cds.services.medication_risk.rules import Finding


def _when(value: date | None) -> str:
    return f" on {value:%Y-%m-%d}" if value is not None else ""


def score_finding(kb: Knowledge, f: Finding, patient: PatientFacts, interacting: int) -> None:
    """Set f.score, f.indicator (None: below the card threshold) and f.facts."""
    s = kb.scoring
    points = s.severity_points[f.severity] + f.extra_points
    facts: list[str] = list(f.facts)  # what the rule itself found (kidney function, criteria, reaction)
    if f.extra_points:
        facts.append("Allergy recorded as high criticality or with a severe reaction")
    if "age" in f.factors and patient.age is not None:
        for min_age, p in s.age_bands:
            if patient.age >= min_age:
                points += p
                facts.append(f"Age {patient.age}")
                break
    if patient.egfr is not None and ("renal" in f.factors or f.category == "renal"):
        e = patient.egfr
        how = f" ({e.note})" if e.note else ""
        if "renal" in f.factors:
            for below, p in s.renal_bands:
                if e.value < below:
                    points += p
                    break
        if f.category != "renal" and e.value < max((b for b, _ in s.renal_bands), default=0):
            facts.append(f"eGFR {e.value:.0f} mL/min/1.73 m2{how}{_when(e.when)}")
    if "count" in f.factors and interacting > 1:
        points += min(s.max_count_points, (interacting - 1) * s.per_extra_drug)
        facts.append(f"Interacts with {interacting} of the patient's other medications")
    for lab_id in f.labs:
        value = patient.labs.get(lab_id)
        if value is None:
            continue
        lab = kb.labs[lab_id]
        band = lab.band(value.value)
        shown = f"{lab.name} {value.value:.{lab.decimals}f}" + (
            f" {lab.display_unit}" if lab.display_unit else ""
        )
        if f.category == "lab":  # the lab rule's own severity already reflects the value
            facts.append(f"{shown}{_when(value.when)}")
        elif band is not None:
            points += band.points
            facts.append(f"{shown}{_when(value.when)} ({band.label})")
    score = max(0, min(100, points))
    if f.non_interruptive:
        score = min(score, s.warning - 1)  # ONC: never interruptive
    f.score = score
    f.facts = facts
    if score >= s.critical:
        f.indicator = "critical"
    elif score >= s.warning:
        f.indicator = "warning"
    elif score >= s.info:
        f.indicator = "info"
    else:
        f.indicator = None


@dataclass(frozen=True)
class OrderScore:
    score: int
    findings: int


def order_score(kb: Knowledge, findings: list[Finding]) -> OrderScore:
    """One score per draft order: its worst finding plus a little for each further finding."""
    if not findings:
        return OrderScore(0, 0)
    s = kb.scoring
    ranked = sorted((f.score for f in findings), reverse=True)
    total = ranked[0] + s.per_extra_finding * (len(ranked) - 1)
    return OrderScore(min(s.max_order_score, total), len(ranked))
