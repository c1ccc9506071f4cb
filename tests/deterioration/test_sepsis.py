"""Sepsis prompt edges (NICE NG51 risk by NEWS2, lactate, coded infection) and qSOFA as support."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cds.services.deterioration.features import DeteriorationFeatures, Finding
from cds.services.deterioration.news2 import News2
from cds.services.deterioration.sepsis import assess, qsofa

from .fhir import NOW


def feats(lactate: float | None = None, infection: str | None = None, rr=None, sbp=None, level=None):
    latest = {}
    if lactate is not None:
        latest["lactate"] = Finding("lactate", lactate, "mmol/L", NOW - timedelta(hours=1))
    if rr is not None:
        latest["respiratory_rate"] = Finding("respiratory_rate", rr, "/min", NOW)
    if sbp is not None:
        latest["systolic_bp"] = Finding("systolic_bp", sbp, "mm[Hg]", NOW)
    cons = (level, NOW, "ACVPU") if level else None
    return DeteriorationFeatures(NOW, {}, {}, latest, cons, None, infection=infection)


def score(total: int, red: bool = False) -> News2:
    parts = {"respiratory_rate": 3 if red else min(total, 2)}
    parts["pulse"] = max(total - parts["respiratory_rate"], 0)
    band = "high" if total >= 7 else "medium" if total >= 5 else "low-medium" if red else "low"
    return News2(parts, total, band, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "lactate,infection,total,red,expected",
    [
        (None, None, 9, False, None),  # no suspicion of sepsis: no prompt, however high NEWS2
        (None, "pneumonia", 4, False, None),  # NG51 low risk
        (None, "pneumonia", 3, True, "moderate"),  # a single red parameter
        (None, "pneumonia", 5, False, "moderate"),
        (None, "pneumonia", 6, False, "moderate"),
        (None, "pneumonia", 7, False, "high"),
        (2.0, None, 6, False, None),  # lactate 2.0 is not above 2
        (2.1, None, 4, False, None),  # lactate alone, NEWS2 low: no prompt
        (2.1, None, 5, False, "moderate"),
        (2.1, "cellulitis", 0, False, "moderate"),
        (4.0, "cellulitis", 0, False, "moderate"),  # 4.0 is not above 4
        (4.1, None, 0, False, "high"),
        (4.2, None, 11, False, "high"),
    ],
)
def test_sepsis_rule_edges(lactate, infection, total, red, expected) -> None:
    p = assess(feats(lactate, infection), score(total, red))
    assert (p.risk if p else None) == expected


def test_qsofa_is_counted_and_gaps_named() -> None:
    assert qsofa(feats(rr=22, sbp=100, level="C")) == (3, ())
    assert qsofa(feats(rr=21, sbp=101, level="A")) == (0, ())
    assert qsofa(feats()) == (0, ("respiratory rate", "systolic blood pressure", "mentation"))


def _condition(code: str, system: str = "http://hl7.org/fhir/sid/icd-10-cm", **extra) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"c-{code}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": system, "code": code}], "text": code},
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


@pytest.mark.parametrize(
    "condition,infection",
    [
        (_condition("J18.9"), True),  # pneumonia, undated
        (_condition("N39.0", onsetDateTime=(NOW - timedelta(days=3)).isoformat()), True),
        (_condition("N39.0", onsetDateTime=(NOW - timedelta(days=40)).isoformat()), False),  # old episode
        (_condition("B20"), False),  # HIV: chronic, not a current infection
        (_condition("B18.2"), False),  # chronic hepatitis C
        (_condition("91302008", "http://snomed.info/sct"), True),  # sepsis (SNOMED CT)
        (_condition("I50.9"), False),
        (_condition("J18.9", verificationStatus={"coding": [{"code": "refuted"}]}), False),
        (_condition("J18.9", verificationStatus={"coding": [{"code": "provisional"}]}), True),  # suspected
    ],
)
def test_coded_infection_through_fhir(condition: dict, infection: bool) -> None:
    from cds.fhir.record import PatientRecord
    from cds.services.deterioration.features import extract

    from .fhir import patient

    f = extract(PatientRecord.from_resources([patient(), condition], now=NOW))
    assert (f.infection is not None) == infection
