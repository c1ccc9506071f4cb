"""Requests shaped exactly as the official CDS Hooks Sandbox sends them, against the service started
with the settings block of docs/official-sandbox.md, give the same cards as the sample-patient
scenarios. What the sandbox does differently from our own sandbox, read from its source
(cds-hooks/sandbox: src/retrieve-data-helpers/service-exchange.js, jwt-generator.js,
src/reducers/medication-reducers.js):

- token: ES384 with its published kid and jku, 5-minute lifetime, aud = the exact service URL;
- context: patientId, userId "Practitioner/COREPRACTITIONER1", draftOrders as a Bundle without
  `type`; never encounterId; fhirServer always, fhirAuthorization only with an access token;
- prefetch: a key whose search failed is left out, and `prefetch` itself when every key failed;
- headers: Accept application/json, JSON sent by axios as `application/json;charset=utf-8`;
- its own draft order: id request-123, doses coded "{pill}" without a unit, `category` as one
  object and `reasonCode` as one CodeableConcept (not the lists R4 defines), `intent` only with a
  supply duration.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, load_settings
from cds.sandbox.requestbuilder import build_request
from cds.sandbox.scenarios import Scenario, compare, load_scenarios
from cds.web.app import create_app
from tests.auth.test_sandbox import sandbox_token

DOC = REPO_ROOT / "docs" / "official-sandbox.md"
SCENARIOS = REPO_ROOT / "cds" / "sandbox" / "scenarios"
ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_USER = "Practitioner/COREPRACTITIONER1"


def documented_settings() -> str:
    """The TOML block that follows `<!-- settings: official-sandbox -->` in the QA guide."""
    match = re.search(
        r"<!-- settings: official-sandbox -->\s*```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S
    )
    assert match, f"{DOC} lost its settings block"
    return match.group(1)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    tmp = tmp_path_factory.mktemp("official-sandbox-doc")
    config = tmp / "sandbox.toml"
    config.write_text(documented_settings(), encoding="utf-8")
    settings = load_settings(config, data_dir=tmp / "data")
    base = tomllib.loads(documented_settings())["public_base_url"].rstrip("/")
    with TestClient(create_app(settings), base_url=base) as client:
        yield client, base


def as_the_sandbox_sends(request: dict[str, Any], fhir_server: str) -> dict[str, Any]:
    """Reshape one of our sandbox's requests into what the official sandbox would send."""
    context = {k: v for k, v in request["context"].items() if k != "encounterId"}
    context["userId"] = SANDBOX_USER
    if "draftOrders" in context:
        context["draftOrders"] = {k: v for k, v in context["draftOrders"].items() if k != "type"}
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": request["hook"],
        "fhirServer": fhir_server,
        "context": context,
    }
    prefetch = {k: v for k, v in (request.get("prefetch") or {}).items() if v is not None}
    if prefetch:
        body["prefetch"] = prefetch
    return body


def post(client: TestClient, base: str, service_id: str, body: dict[str, Any]) -> Any:
    url = f"{base}/cds-services/{service_id}"
    return client.post(
        url,
        content=json.dumps(body),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json;charset=utf-8",
            "Origin": ORIGIN,
            "Authorization": f"Bearer {sandbox_token(url)}",
        },
    )


def sandbox_scenarios() -> list[Scenario]:
    # Scenarios that withhold prefetch test the 412; the sandbox cannot send such a request on purpose.
    return [s for s in load_scenarios([SCENARIOS]) if s.prefetch and not s.context]


@pytest.mark.parametrize("scenario", sandbox_scenarios(), ids=lambda s: s.id)
def test_sandbox_shaped_request_gives_the_scenario_cards(
    service: tuple[TestClient, str], scenario: Scenario
) -> None:
    client, base = service
    fhir_server = tomllib.loads(documented_settings())["trusted_clients"][0]["fhir_servers"][0]
    request = build_request(
        Discovery.load(REPO_ROOT / "hooks.json"),
        scenario.service,
        scenario.patient,
        order_ids=list(scenario.orders) if scenario.orders is not None else None,
        draft_orders=[dict(o) for o in scenario.draft_orders] if scenario.draft_orders is not None else None,
    )
    resp = post(client, base, scenario.service, as_the_sandbox_sends(request, fhir_server))
    assert resp.headers.get("access-control-allow-origin") == ORIGIN
    body = resp.json()
    assert compare(scenario, resp.status_code, body) == [], body


def sandbox_draft_order(
    patient_id: str, rxcui: str, name: str, *, with_supply: bool, reason: Any = None
) -> dict:
    """The MedicationRequest the sandbox's Rx Sign view builds (createFhirResource, FHIR R4)."""
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-29",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"}}
                ],
            }
        ],
        "medicationCodeableConcept": {
            "text": name,
            "coding": [
                {"display": name, "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui}
            ],
        },
    }
    if with_supply:
        order["dispenseRequest"] = {
            "expectedSupplyDuration": {
                "value": 7,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        }
        order["intent"] = "order"
        order["category"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                    "code": "community",
                }
            ]
        }
    if reason is not None:
        order["reasonCode"] = reason
    return order


@pytest.mark.parametrize("with_supply", [False, True])
@pytest.mark.parametrize("with_reason", [False, True])
def test_the_sandbox_own_draft_order_is_read(
    service: tuple[TestClient, str], with_supply: bool, with_reason: bool
) -> None:
    """Naproxen for a patient on warfarin, as the sandbox builds the order (quirks included): the
    bleeding interaction is still found."""
    client, base = service
    reason = {"coding": [{"system": "http://snomed.info/sct", "code": "57676002", "display": "Joint pain"}]}
    order = sandbox_draft_order(
        "sbx-warfarin-af",
        "198014",
        "Naproxen 500 MG Oral Tablet",
        with_supply=with_supply,
        reason=reason if with_reason else None,
    )
    request = build_request(
        Discovery.load(REPO_ROOT / "hooks.json"), "medication-risk", "sbx-warfarin-af", draft_orders=[order]
    )
    resp = post(
        client,
        base,
        "medication-risk",
        as_the_sandbox_sends(request, "https://launch.smarthealthit.org/v/r4/fhir"),
    )
    assert resp.status_code == 200, resp.text
    summaries = " | ".join(c["summary"].lower() for c in resp.json()["cards"])
    assert "warfarin" in summaries and "naproxen" in summaries, summaries
