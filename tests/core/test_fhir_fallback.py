"""The prefetch / fallback / 412 matrix against a real FHIR server (Medplum's engine, in memory)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT
from tests.core.conftest import Caller, patient_view
from tests.fhir_server import dead_base_url

PID = "fb-patient"
PATIENT = {"resourceType": "Patient", "id": PID, "gender": "male", "birthDate": "1948-03-01"}


def vital(oid: str, code: str, value: float, unit: str, minutes_ago: int = 30) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    when = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


# A patient whose vitals alone give NEWS2 >= 7 (RR 30: 3, SpO2 89: 3, HR 135: 3).
VITALS = [
    vital("rr", "9279-1", 30, "/min"),
    vital("spo2", "59408-5", 89, "%"),
    vital("hr", "8867-4", 135, "/min"),
    vital("temp", "8310-5", 37.0, "Cel"),
]


@pytest.fixture
def server(fresh_fhir_server: Any) -> Any:
    fresh_fhir_server.load([PATIENT, *VITALS])
    fresh_fhir_server.reset()
    return fresh_fhir_server


def with_fhir(server: Any, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    body["fhirServer"] = server.base_url
    body["fhirAuthorization"] = {
        "access_token": token or server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "cds",
    }
    return body


def hook_queries(server: Any) -> list[str]:
    return [r["path"] for r in server.requests() if r["method"] == "GET"]


TEMPLATES = Discovery.load(REPO_ROOT / "hooks.json").services["deterioration"].prefetch


def test_complete_prefetch_fetches_nothing(caller: Caller, server: Any) -> None:
    prefetch = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in TEMPLATES}
    prefetch["patient"] = PATIENT
    prefetch["vitals"]["entry"] = [{"resource": v} for v in VITALS]
    resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID, prefetch)))
    assert resp.status_code == 200, resp.text
    assert hook_queries(server) == []
    assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]


def test_partial_prefetch_fetches_only_the_missing_keys(caller: Caller, server: Any) -> None:
    prefetch = {"patient": PATIENT, "labs": {"resourceType": "Bundle", "type": "searchset", "entry": []}}
    resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID, prefetch)))
    assert resp.status_code == 200, resp.text
    queries = hook_queries(server)
    assert len(queries) == len(TEMPLATES) - 2, queries
    assert all(f"patient=Patient%2F{PID}" in q or f"patient=Patient/{PID}" in q for q in queries)
    assert all(r["auth_ok"] for r in server.requests())
    assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]


def test_absent_prefetch_fetches_everything_and_scores(caller: Caller, server: Any) -> None:
    resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
    assert resp.status_code == 200, resp.text
    assert len(hook_queries(server)) == len(TEMPLATES)
    assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]


def test_rejected_token_is_412_without_echoing_it(caller: Caller, server: Any) -> None:
    secret = "wrong-token-value-123"
    resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID), token=secret))
    assert resp.status_code == 412, resp.text
    assert "refused the access token" in resp.text
    assert secret not in resp.text


def test_server_down_is_412(caller: Caller) -> None:
    body = patient_view(PID)
    body["fhirServer"] = dead_base_url()
    resp = caller.post("/cds-services/deterioration", json=body)
    assert resp.status_code == 412, resp.text
    assert "unreachable" in resp.text


def test_slow_server_is_412_within_the_budget(make_caller: Any, server: Any) -> None:
    caller = make_caller(fhir_timeout_seconds=0.5)
    with server.fault("slow", delay_ms=3000):
        started = time.perf_counter()
        resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
        elapsed = time.perf_counter() - started
    assert resp.status_code == 412, resp.text
    assert "did not answer within 0.5 s" in resp.text
    assert elapsed < 1.5


def test_server_error_and_garbage_are_412(caller: Caller, server: Any) -> None:
    with server.fault("error500"):
        resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
    assert resp.status_code == 412 and "HTTP 500" in resp.text
    with server.fault("garbage"):
        resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
    assert resp.status_code == 412 and "not JSON" in resp.text


def test_paging_forever_stops_at_the_page_cap(make_caller: Any, server: Any) -> None:
    caller = make_caller(fhir_max_pages=3)
    with server.fault("page-forever", match="Observation"):
        resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
    assert resp.status_code == 200, resp.text
    observation_pages = [q for q in hook_queries(server) if "Observation" in q or "_page" in q or "page" in q]
    assert len(observation_pages) <= 2 * 3 + 1
