"""Every status code the core answers with, each as a JSON OperationOutcome that says what to fix."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from tests.core.conftest import Caller, empty_bundle, patient_view
from tests.shipped_services import SERVICE_IDS, services_on


def full_prefetch(caller: Caller, service_id: str, patient_id: str = "p1") -> dict[str, Any]:
    """A prefetch satisfying every template of a service: the patient, and empty searches."""
    services = {s["id"]: s for s in caller.get("/cds-services").json()["services"]}
    out: dict[str, Any] = {}
    for key, template in services[service_id].get("prefetch", {}).items():
        if template.startswith("Patient/"):
            out[key] = {
                "resourceType": "Patient",
                "id": patient_id,
                "gender": "female",
                "birthDate": "1970-01-01",
            }
        else:
            out[key] = empty_bundle()
    return out


def assert_outcome(resp: Any, status: int, text: str = "") -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert text.lower() in body["issue"][0]["diagnostics"].lower()
    return body


def test_discovery_lists_the_shipped_services(caller: Caller) -> None:
    resp = caller.get("/cds-services")
    assert resp.status_code == 200
    services = {s["id"]: s for s in resp.json()["services"]}
    assert list(services) == list(SERVICE_IDS)
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-sign"}
    for s in services.values():
        assert s["title"] and s["description"]
        for template in s["prefetch"].values():
            assert "{{context.patientId}}" in template
            if "?" in template:
                assert "_count=" in template, template


def test_patient_view_with_complete_prefetch_answers_200(caller: Caller) -> None:
    for sid in services_on("patient-view"):
        resp = caller.post(f"/cds-services/{sid}", json=patient_view(prefetch=full_prefetch(caller, sid)))
        assert resp.status_code == 200, resp.text
        assert isinstance(resp.json()["cards"], list)


def test_unknown_service_is_404(caller: Caller) -> None:
    assert_outcome(caller.post("/cds-services/nope", json=patient_view()), 404, "no CDS service")


def test_unknown_path_is_404(caller: Caller) -> None:
    assert_outcome(caller.get("/nothing-here"), 404)


def test_wrong_method_is_405(caller: Caller) -> None:
    assert_outcome(caller.get("/cds-services/deterioration"), 405, "not allowed")
    assert_outcome(caller.request("DELETE", "/cds-services"), 405)


def test_malformed_json_is_400(caller: Caller) -> None:
    resp = caller.post(
        "/cds-services/deterioration", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_outcome(resp, 400, "not valid JSON")


def test_unsupported_content_type_is_415(caller: Caller) -> None:
    resp = caller.post(
        "/cds-services/deterioration", content=b"hook=x", headers={"Content-Type": "text/plain"}
    )
    assert_outcome(resp, 415, "application/json")


def test_body_over_limit_is_413(make_caller: Any) -> None:
    caller = make_caller(max_body_bytes=1000)
    body = patient_view(prefetch={"patient": {"resourceType": "Patient", "id": "p1", "text": "x" * 2000}})
    assert_outcome(caller.post("/cds-services/deterioration", json=body), 413, "limit")
    # Also without a Content-Length header (chunked upload): the stream is cut at the limit.
    raw = orjson.dumps(body)
    resp = caller.post(
        "/cds-services/deterioration",
        content=iter([raw[:600], raw[600:]]),
        headers={"Content-Type": "application/json"},
    )
    assert_outcome(resp, 413)


def test_json_too_deep_is_400(make_caller: Any) -> None:
    caller = make_caller(max_json_depth=10)
    deep: Any = "x"
    for _ in range(20):
        deep = {"a": deep}
    body = patient_view(prefetch={"patient": {"resourceType": "Patient", "id": "p1", "extension": [deep]}})
    assert_outcome(caller.post("/cds-services/deterioration", json=body), 400, "nesting")


def test_too_many_prefetch_resources_is_413(make_caller: Any) -> None:
    caller = make_caller(max_prefetch_resources=5)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": str(i), "status": "final"}} for i in range(6)
        ],
    }
    body = patient_view(prefetch={"vitals": bundle})
    assert_outcome(caller.post("/cds-services/deterioration", json=body), 413, "limit")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("hook"), "hook is required"),
        (lambda b: b.update(hook="order-sign"), "answers the patient-view hook"),
        (lambda b: b.update(hookInstance="not-a-uuid"), "hookInstance"),
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.pop("context"), "context"),
        (lambda b: b.update(context=[]), "context must be a JSON object"),
        (lambda b: b["context"].pop("patientId"), "context.patientId is required"),
        (lambda b: b["context"].pop("userId"), "context.userId is required"),
        (lambda b: b["context"].update(userId="doc1"), "context.userId must be a reference"),
        (lambda b: b["context"].update(patientId=5), "context.patientId must be a non-empty string"),
        (lambda b: b.update(fhirServer="not a url"), "fhirServer must be an absolute"),
        (
            lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}),
            "fhirServer is required",
        ),
        (
            lambda b: b.update(
                fhirServer="https://ehr.example/fhir", fhirAuthorization={"access_token": "t"}
            ),
            "fhirAuthorization.token_type",
        ),
        (lambda b: b.update(prefetch=[]), "prefetch must be a JSON object"),
        (lambda b: b.update(prefetch={"patient": "Patient/1"}), "prefetch.patient must be a FHIR resource"),
        (
            lambda b: b.update(prefetch={"patient": {"resourceType": "Patient", "id": "someone-else"}}),
            "Patient other than",
        ),
    ],
)
def test_wrong_shape_is_400_naming_the_field(caller: Caller, mutate: Any, message: str) -> None:
    body = patient_view()
    mutate(body)
    assert_outcome(caller.post("/cds-services/deterioration", json=body), 400, message)


def test_order_sign_needs_a_draft_orders_bundle(caller: Caller) -> None:
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/doc1",
            "patientId": "p1",
            "draftOrders": {"resourceType": "Patient"},
        },
    }
    assert_outcome(
        caller.post("/cds-services/medication-risk", json=body), 400, "draftOrders must be a FHIR Bundle"
    )
    body["context"].pop("draftOrders")
    assert_outcome(caller.post("/cds-services/medication-risk", json=body), 400, "draftOrders is required")


def test_observation_of_another_patient_is_refused(caller: Caller) -> None:
    obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/other"}}
    body = patient_view(
        prefetch={"vitals": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": obs}]}}
    )
    assert_outcome(caller.post("/cds-services/deterioration", json=body), 400, "another patient")


def test_missing_prefetch_without_fhir_server_is_412_naming_keys(caller: Caller) -> None:
    prefetch = full_prefetch(caller, "deterioration")
    prefetch.pop("vitals")
    prefetch["labs"] = None
    prefetch["conditions"] = {"resourceType": "OperationOutcome", "issue": []}
    body = assert_outcome(
        caller.post("/cds-services/deterioration", json=patient_view(prefetch=prefetch)), 412
    )
    diag = body["issue"][0]["diagnostics"]
    for key in ("vitals", "labs", "conditions"):
        assert key in diag


def test_no_token_is_401_with_www_authenticate(caller: Caller) -> None:
    resp = caller.client.get("/cds-services")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_operations_endpoints(caller: Caller) -> None:
    assert caller.client.get("/healthz").json() == {"status": "ok"}
    ready = caller.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    caller.post(
        "/cds-services/deterioration", json=patient_view(prefetch=full_prefetch(caller, "deterioration"))
    )
    text = caller.client.get("/metrics").text
    assert 'cds_hook_requests_total{service="deterioration",status="200"}' in text
    assert "cds_hook_latency_seconds_bucket" in text
