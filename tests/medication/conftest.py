"""Builders for order-sign calls: patients, medications, labs, allergies, and one evaluate()."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.fhir.record import PatientRecord
from cds.hooks.cards import Card
from cds.hooks.request import HookRequest
from cds.runtime.settings import Settings
from cds.services.medication_risk.knowledge import Knowledge
from cds.services.medication_risk.service import MedicationRiskService
from cds.web.app import create_app
from tests.core.conftest import BASE, Caller, dev_settings

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PID = "p1"


@pytest.fixture(scope="session")
def service() -> MedicationRiskService:
    return MedicationRiskService.from_settings(Settings()).load()


@pytest.fixture(scope="session")
def kb(service: MedicationRiskService) -> Knowledge:
    return service.kb


def concept(code: str | None = None, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {}
    if code:
        coding = {"system": RX, "code": code}
        if display:
            coding["display"] = display
        c["coding"] = [coding]
    if text:
        c["text"] = text
    return c


def med(
    id: str,
    code: str | None = None,
    display: str | None = None,
    text: str | None = None,
    status: str = "active",
    **extra: Any,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PID}"},
        "medicationCodeableConcept": concept(code, display, text),
        "dosageInstruction": [{"text": "as directed", "route": {"text": "oral"}}],
    }
    r.update(extra)
    return r


def draft(
    id: str, code: str | None = None, display: str | None = None, text: str | None = None, **kw: Any
) -> dict:
    return med(id, code, display, text, status="draft", **kw)


def obs(
    loinc: str, value: float, unit: str | None, days_ago: float = 1, id: str | None = None
) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q.update(unit=unit, code=unit, system="http://unitsofmeasure.org")
    return {
        "resourceType": "Observation",
        "id": id or f"obs-{loinc}-{value}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": q,
    }


def egfr(value: float, days_ago: float = 1) -> dict[str, Any]:
    return obs("33914-3", value, "mL/min/{1.73_m2}", days_ago)


def potassium(value: float) -> dict[str, Any]:
    return obs("2823-3", value, "mmol/L")


def inr(value: float) -> dict[str, Any]:
    return obs("6301-6", value, None)


def allergy(
    code: str | None = None,
    system: str = RX,
    text: str | None = None,
    criticality: str | None = None,
    status: str = "active",
    category: str | None = "medication",
    id: str = "al1",
) -> dict[str, Any]:
    c: dict[str, Any] = {}
    if code:
        c["coding"] = [{"system": system, "code": code}]
    if text:
        c["text"] = text
    r: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": id,
        "clinicalStatus": {"coding": [{"code": status}]},
        "patient": {"reference": f"Patient/{PID}"},
        "code": c,
    }
    if criticality:
        r["criticality"] = criticality
    if category:
        r["category"] = [category]
    return r


def condition(icd10: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c-{icd10}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd10}]},
        "subject": {"reference": f"Patient/{PID}"},
    }


def patient(age: int = 50, sex: str = "female", on: date | None = None) -> dict[str, Any]:
    on = on or NOW.date()
    birth = on.replace(year=on.year - age)
    return {"resourceType": "Patient", "id": PID, "birthDate": birth.isoformat(), "gender": sex}


def run(
    service: MedicationRiskService,
    drafts: list[dict[str, Any]],
    active: list[dict[str, Any]] = (),  # type: ignore[assignment]
    others: list[dict[str, Any]] = (),  # type: ignore[assignment]
    age: int = 50,
    sex: str = "female",
    now: datetime = NOW,
    pat: dict[str, Any] | None = None,
    bundle_extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> list[Card]:
    """Evaluate one order-sign call; `others` are labs, allergies, conditions, Medications."""
    prefetch = {
        "patient": pat or patient(age, sex),
        "medications": {"resourceType": "Bundle", "entry": [{"resource": r} for r in [*active, *others]]},
    }
    record = PatientRecord.from_prefetch(prefetch, now=now, patient_id=PID)
    context = {
        "userId": "Practitioner/1",
        "patientId": PID,
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in [*drafts, *bundle_extra]],
        },
    }
    request = HookRequest("medication-risk", "order-sign", "hook-1", context, prefetch)
    cards = service.evaluate(request, record)
    for c in cards:
        c.to_json()  # every card must serialise (spec validation happens in Card itself)
    return cards


def kinds(cards: list[Card]) -> dict[str, str]:
    """kind -> indicator."""
    return {c.kind: c.indicator for c in cards}


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    settings = dev_settings(tmp_path_factory.mktemp("medhttp"))
    client = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
    client.__enter__()
    c = Caller(client, settings)
    yield c
    c.close()


def body(drafts: list[dict], active: list[dict]) -> dict:
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/doc1",
            "patientId": "p1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in drafts],
            },
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "male"},
            "medications": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in active],
            },
            "statements": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "allergies": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "labs": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        },
    }
