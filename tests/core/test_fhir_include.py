"""Active medications that reference a Medication resource, against the Medplum test server: the
Medication comes with the orders (`_include`, in prefetch or in the fallback), or a server that
ignores `_include` leaves it out and the service reads it by id from `fhirServer`; with no way to
read it, medication-risk says which active medications it could not check (never silence)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT
from cds.sandbox.patients import sample_patient
from cds.sandbox.requestbuilder import build_request
from tests.core.conftest import Caller

PID = "sbx-warfarin-af"
MED = {
    "resourceType": "Medication",
    "id": "warfarin-5",
    "code": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "855332",
                "display": "Warfarin Sodium 5 MG Oral Tablet",
            }
        ]
    },
}


def chart() -> list[dict[str, Any]]:
    """The warfarin patient, the warfarin order pointing at a Medication resource instead of a code."""
    out = []
    for r in sample_patient(PID).resources():
        r = copy.deepcopy(r)
        if r["resourceType"] == "MedicationRequest" and "Warfarin" in str(r.get("medicationCodeableConcept")):
            del r["medicationCodeableConcept"]
            r["medicationReference"] = {"reference": "Medication/warfarin-5"}
        out.append(r)
    return [*out, MED]


def order_sign(prefetch: bool, server: Any | None = None) -> dict[str, Any]:
    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    request = build_request(discovery, "medication-risk", PID, order_ids=["sbx-warfarin-af-naproxen"])
    if prefetch:
        # what a server answers the `medications` template with, _include honoured or not
        request["prefetch"]["medications"] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": r, "search": {"mode": "match"}}
                for r in chart()
                if r["resourceType"] == "MedicationRequest"
            ],
        }
    else:
        request.pop("prefetch", None)
    if server is not None:
        request["fhirServer"] = server.base_url
        request["fhirAuthorization"] = {
            "access_token": server.token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "cds",
        }
    return request


def kinds(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [c["source"].get("topic", {}).get("code", "") for c in resp.json()["cards"]]


def summaries(resp: Any) -> str:
    return " | ".join(c["summary"].lower() for c in resp.json()["cards"])


@pytest.fixture
def server(fresh_fhir_server: Any) -> Any:
    fresh_fhir_server.load(chart())
    fresh_fhir_server.reset()
    return fresh_fhir_server


def test_prefetch_with_the_included_medication(caller: Caller) -> None:
    body = order_sign(prefetch=True)
    body["prefetch"]["medications"]["entry"].append({"resource": MED, "search": {"mode": "include"}})
    resp = caller.post("/cds-services/medication-risk", json=body)
    assert "warfarin" in summaries(resp) and "naproxen" in summaries(resp)


def test_fallback_through_a_server_that_honours_include(caller: Caller, server: Any) -> None:
    resp = caller.post("/cds-services/medication-risk", json=order_sign(prefetch=False, server=server))
    assert "warfarin" in summaries(resp) and "naproxen" in summaries(resp)
    paths = [r["path"] for r in server.requests()]
    assert any(
        "_include=MedicationRequest%3Amedication" in p or "_include=MedicationRequest:medication" in p
        for p in paths
    )
    assert not any(p.endswith("/Medication/warfarin-5") for p in paths)  # it came with the orders


def test_fallback_through_a_server_that_ignores_include_reads_the_medication(
    caller: Caller, server: Any
) -> None:
    with server.fault("ignore-include"):
        resp = caller.post("/cds-services/medication-risk", json=order_sign(prefetch=False, server=server))
    assert "warfarin" in summaries(resp) and "naproxen" in summaries(resp)
    assert any(r["path"].endswith("/Medication/warfarin-5") and r["auth_ok"] for r in server.requests())


def test_prefetch_without_the_medication_is_read_from_fhir_server(caller: Caller, server: Any) -> None:
    resp = caller.post("/cds-services/medication-risk", json=order_sign(prefetch=True, server=server))
    assert "warfarin" in summaries(resp) and "naproxen" in summaries(resp)
    assert [r["path"] for r in server.requests()] == ["/fhir/R4/Medication/warfarin-5"]


def test_unreadable_active_medication_is_said_not_silent(caller: Caller) -> None:
    resp = caller.post("/cds-services/medication-risk", json=order_sign(prefetch=True))  # no fhirServer
    found = kinds(resp)
    assert "not-checked:unreadable-active-medication" in found, found
    assert "warfarin" not in summaries(resp)  # it could not be known; the card says so instead
    card = next(c for c in resp.json()["cards"] if "could not be read" in c["summary"])
    assert card["indicator"] == "info" and "MedicationRequest/" in card["detail"]
    metrics = caller.get("/metrics").text
    assert 'reason="unreadable-active-medication"' in metrics
