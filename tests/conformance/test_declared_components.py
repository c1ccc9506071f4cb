"""The OpenAPI components are the declarations the service decodes and encodes with, and the error
statuses per endpoint come from one table beside the errors."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from cds.hooks.cards import WIRE_TYPES, Card, Source, encode_response
from cds.hooks.discovery import Discovery
from cds.hooks.request import CONTEXT_TYPES, REQUEST_TYPES, HookRequest
from cds.runtime.errors import ENDPOINT_ERRORS, ERROR_TEXT, OperationOutcome, outcome_body
from cds.runtime.settings import Settings
from cds.web.openapi import build_openapi, declared_components, default_document


def document() -> dict[str, Any]:
    return orjson.loads(default_document())


def test_card_request_and_error_components_are_generated_from_the_declarations() -> None:
    schemas = document()["components"]["schemas"]
    declared = declared_components()
    for t in (*WIRE_TYPES, OperationOutcome):
        assert schemas[t.__name__] == declared[t.__name__], t.__name__
    for name in ("FhirAuthorization", "Bundle", "BundleEntry", "OperationOutcomeIssue", "OverrideReason"):
        assert schemas[name] == declared[name]
    # the cross-field rules travel with their declaration
    assert schemas["Card"]["dependentRequired"] == {
        "suggestions": ["selectionBehavior"],
        "selectionBehavior": ["suggestions"],
    }
    assert schemas["Card"]["properties"]["summary"]["maxLength"] == 139


def test_each_hook_request_is_its_declaration() -> None:
    settings = Settings()
    discovery = Discovery.load(settings.hooks_file)
    doc = build_openapi(discovery, settings)
    declared = declared_components()
    for sid, entry in discovery.services.items():
        body = doc["paths"][f"/cds-services/{sid}"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        request = declared[REQUEST_TYPES[entry.hook].__name__]
        assert set(body["properties"]) == set(request["properties"])
        assert body["required"] == request["required"]
        assert body["dependentRequired"] == {"fhirAuthorization": ["fhirServer"]}
        context = declared[CONTEXT_TYPES[entry.hook].__name__]
        assert body["properties"]["context"]["required"] == context["required"]
        assert body["properties"]["context"]["properties"]["userId"] == context["properties"]["userId"]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_ERRORS))
def test_error_statuses_come_from_the_table(endpoint: str) -> None:
    doc = document()
    ops = {
        "hook": [f"/cds-services/{sid}" for sid in Discovery.load(Settings().hooks_file).services],
        "feedback": [
            f"/cds-services/{sid}/feedback" for sid in Discovery.load(Settings().hooks_file).services
        ],
        "discovery": ["/cds-services"],
        "feedback-summary": ["/feedback/summary"],
        "care-gaps": ["/fhir/Measure/$care-gaps"],
        "model-card": ["/models/{name}", "/models/{name}/{file}"],
    }[endpoint]
    for path in ops:
        (op,) = doc["paths"][path].values()
        errors = {int(s) for s in op["responses"] if int(s) >= 400}
        assert errors == set(ENDPOINT_ERRORS[endpoint]), path
    for status in ENDPOINT_ERRORS[endpoint]:
        assert doc["components"]["responses"][f"E{status}"]["description"] == ERROR_TEXT[status]


@pytest.mark.parametrize("status", sorted(ERROR_TEXT))
def test_every_error_body_is_the_declared_operation_outcome(status: int) -> None:
    for expression in (None, ["context.patientId"]):
        body = orjson.dumps(outcome_body(status, "what to fix", expression))
        msgspec.json.decode(body, type=OperationOutcome)


def test_a_hook_answer_is_the_declared_response() -> None:
    cards = [Card(summary="s", indicator="info", source=Source(label="x"), kind="k")]
    request = HookRequest("x", "patient-view", "h", {"patientId": "p"})
    assert request.draft_orders == ()
    body = orjson.loads(encode_response(cards))
    assert body == {"cards": [cards[0].to_json()]}
