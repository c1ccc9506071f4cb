"""The OpenAPI document: committed copy equals the generated one, valid OpenAPI 3.1, served at
/openapi.json, and real requests and responses validate against its schemas."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from cds.feedback.validate import SummaryQuery
from cds.hooks.cards import Action, Card, Coding, Link, Source, Suggestion, override_reason
from cds.hooks.discovery import Discovery
from cds.hooks.validation import HOOK_CONTEXT
from cds.runtime.settings import Settings
from cds.web.openapi import HOOK_ERRORS, build_openapi, default_document
from tests.core.conftest import Caller, patient_view
from tests.shipped_services import SERVICE_IDS

REPO = Path(__file__).resolve().parents[2]


@cache
def document() -> dict[str, Any]:
    return orjson.loads(default_document())


def validator(pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` (e.g. components/schemas/Card), refs resolved in the document."""
    doc = document()
    return Draft202012Validator(
        {"$ref": f"#/{pointer}", "components": doc["components"], "paths": doc["paths"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def errors(pointer: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(pointer).iter_errors(instance)
    ]


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def request_pointer(sid: str) -> str:
    return f"paths/{_escape(f'/cds-services/{sid}')}/post/requestBody/content/application~1json/schema"


def test_committed_openapi_json_is_the_generated_one() -> None:
    committed = (REPO / "openapi.json").read_bytes()
    assert committed == default_document(), (
        "openapi.json is stale: run `python -m cds.web.openapi > openapi.json`"
    )


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_service_and_its_hook_context_is_described() -> None:
    settings = Settings()
    discovery = Discovery.load(settings.hooks_file)
    doc = build_openapi(discovery, settings)
    for sid, entry in discovery.services.items():
        op = doc["paths"][f"/cds-services/{sid}"]["post"]
        assert op["security"] == [{"cdsClientJwt": []}]
        assert {str(s) for s in HOOK_ERRORS} <= set(op["responses"])
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["hook"] == {"const": entry.hook}
        context = body["properties"]["context"]
        assert set(context["properties"]) == set(HOOK_CONTEXT[entry.hook])
        assert set(context["required"]) == {n for n, req in HOOK_CONTEXT[entry.hook].items() if req}
        assert set(body["properties"]["prefetch"]["properties"]) == set(entry.prefetch)
        assert f"/cds-services/{sid}/feedback" in doc["paths"]
    scheme = doc["components"]["securitySchemes"]["cdsClientJwt"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_served_document_needs_no_token_and_matches(caller: Caller) -> None:
    resp = caller.client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == document()


# --- the schemas accept what the code produces and refuse what it refuses ---------------------------


def test_spec_examples_and_rule_breakers() -> None:
    src = {"label": "x"}
    good = {"uuid": str(uuid.uuid4()), "summary": "s", "indicator": "info", "source": src}
    assert errors("components/schemas/Card", good) == []
    for bad in (
        {**good, "summary": "x" * 140},
        {**good, "indicator": "urgent"},
        {**good, "detail": None},  # optional fields are omitted, never null
        {**good, "suggestions": [{"label": "a"}]},  # selectionBehavior required with suggestions
        {**good, "overrideReasons": [{"system": "s", "code": "c"}]},  # display required
        {**good, "links": [{"label": "l", "url": "/relative", "type": "absolute"}]},
        {**good, "links": [{"label": "l", "url": "https://a.org", "type": "absolute", "appContext": "x"}]},
        {
            **good,
            "suggestions": [{"label": "a", "actions": [{"type": "delete", "description": "d"}]}],
            "selectionBehavior": "any",
        },
        {
            **good,
            "suggestions": [{"label": "a", "actions": [{"type": "create", "description": "d"}]}],
            "selectionBehavior": "any",
        },
    ):
        assert errors("components/schemas/Card", bad), bad
    # spec 2.0.1 feedback examples
    accepted = {
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
        "outcomeTimestamp": "2021-12-11T10:05:31Z",
    }
    overridden = {
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "code": "reason-code-provided-by-service",
                "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
            },
            "userComment": "Clinician comment",
        },
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
    }
    assert errors("components/schemas/FeedbackRequest", {"feedback": [accepted, overridden]}) == []
    assert errors("components/schemas/FeedbackRequest", {"feedback": [{**accepted, "outcome": "overridden"}]})
    assert errors("components/schemas/FeedbackRequest", {"feedback": []})


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
urls = st.builds(
    lambda h, p: f"https://{h}.example.org/{p}",
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.text("abc/", max_size=8),
)
resources = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["ServiceRequest", "MedicationRequest"])}, optional={"id": text}
)
actions = st.one_of(
    st.builds(Action, type=st.sampled_from(["create", "update"]), description=text, resource=resources),
    st.builds(
        Action,
        type=st.just("delete"),
        description=text,
        resource_id=st.from_regex(r"[A-Z][a-z]+/[a-z0-9]{1,5}", fullmatch=True),
    ),
)
suggestions = st.builds(
    Suggestion,
    label=text,
    actions=st.lists(actions, max_size=3).map(tuple),
    is_recommended=st.none() | st.just(False),
)
links = st.one_of(
    st.builds(Link, label=text, url=urls),
    st.builds(Link, label=text, url=text, type=st.just("smart"), app_context=st.none() | text),
)
cards = st.builds(
    Card,
    summary=st.text(min_size=1, max_size=139).filter(str.strip),
    indicator=st.sampled_from(["info", "warning", "critical"]),
    source=st.builds(
        Source, label=text, url=st.none() | urls, topic=st.none() | st.builds(Coding, code=text, system=urls)
    ),
    kind=text,
    detail=st.none() | text,
    suggestions=st.lists(suggestions, max_size=3).map(tuple),
    selection_behavior=st.none() | st.just("any"),
    override_reasons=st.lists(st.builds(override_reason, code=text, display=text), max_size=3).map(tuple),
    links=st.lists(links, max_size=2).map(tuple),
)


@given(cards=st.lists(cards, max_size=4))
@settings(max_examples=150, deadline=None)
def test_every_card_the_model_can_build_conforms(cards: list[Card]) -> None:
    body = json.loads(json.dumps({"cards": [c.to_json() for c in cards]}))
    assert errors("components/schemas/CdsServiceResponse", body) == []


# --- real responses of the service validate ----------------------------------------------------------


def _outcome_schema_errors(resp: Any) -> list[str]:
    assert resp.headers["content-type"].startswith("application/json")
    return errors("components/schemas/OperationOutcome", resp.json())


def test_operation_outcomes_of_the_service_conform(make_caller: Any) -> None:
    caller = make_caller(max_body_bytes=20_000)
    cases = [
        (400, lambda: caller.post("/cds-services/deterioration", json={"hook": "patient-view"})),
        (401, lambda: caller.client.post("/cds-services/deterioration", json=patient_view())),
        (404, lambda: caller.post("/cds-services/nope", json=patient_view())),
        (405, lambda: caller.get("/cds-services/deterioration")),
        (413, lambda: caller.post("/cds-services/deterioration", json=patient_view(padding="x" * 30_000))),
        (
            415,
            lambda: caller.post(
                "/cds-services/deterioration", content=b"{}", headers={"Content-Type": "text/plain"}
            ),
        ),
        (400, lambda: caller.post("/cds-services/deterioration/feedback", json={"feedback": []})),
    ]
    for status, call in cases:
        resp = call()
        assert resp.status_code == status, resp.text
        assert _outcome_schema_errors(resp) == [], resp.text
        if status == 401:
            assert resp.headers["www-authenticate"] == "Bearer"


def test_realistic_requests_and_their_cards_conform(caller: Caller, synthea_dir: Path) -> None:
    """Requests an EHR would send (Synthea charts, prefetch from the templates) match each service's
    request schema; the service answers 200 with cards that match the response schema."""
    from benchmarks.synthea_requests import hook_request, load_patients

    discovery = Discovery.load(caller.settings.hooks_file)
    seen = 0
    for resources in load_patients(limit=3, data_dir=synthea_dir):
        for sid in discovery.services:
            body = hook_request(discovery, sid, resources)
            assert errors(request_pointer(sid), body) == [], sid
            resp = caller.post(f"/cds-services/{sid}", json=body)
            assert resp.status_code == 200, (sid, resp.text[:500])
            assert errors("components/schemas/CdsServiceResponse", resp.json()) == [], sid
            seen += len(resp.json()["cards"])
    assert seen > 0, "no service returned a card for three full Synthea charts"


@pytest.mark.parametrize("sid", SERVICE_IDS)
def test_request_schema_refuses_what_the_validator_refuses(sid: str) -> None:
    entry = Discovery.load(Settings().hooks_file).services[sid]
    body = patient_view()
    body["hook"] = entry.hook
    if entry.hook == "order-sign":
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": []}
    assert errors(request_pointer(sid), body) == []
    for bad in (
        {**body, "hookInstance": "not-a-uuid"},
        {**body, "hook": "other-hook"},
        {**body, "context": {**body["context"], "userId": "Device/1"}},
        {**body, "context": {**body["context"], "patientId": "Patient/p1"}},
        {
            **body,
            "fhirAuthorization": {
                "access_token": "t",
                "token_type": "Bearer",
                "expires_in": 1,
                "scope": "s",
                "subject": "c",
            },
        },
        {k: v for k, v in body.items() if k != "context"},
    ):
        assert errors(request_pointer(sid), bad), bad


def test_served_discovery_document_conforms_and_the_schema_is_the_declaration(caller: Caller) -> None:
    """`Discovery` and `CdsService` are generated from `DiscoveryDocument`/`ServiceDefinition`:
    what is served conforms, and an entry hooks.json would refuse is refused by the schema too."""
    served = caller.get("/cds-services")
    assert served.status_code == 200
    assert errors("components/schemas/Discovery", served.json()) == []
    entry = served.json()["services"][0]
    for broken in (
        {k: v for k, v in entry.items() if k != "description"},  # required
        entry | {"title": ""},  # empty
        entry | {"id": "a b"},  # not an id
        entry | {"implementation": "cds.x:Y"},  # ours, never published
        entry | {"prefetch": None},  # optional, never null
    ):
        assert errors("components/schemas/Discovery", {"services": [broken]}), broken


def test_summary_query_parameters_are_the_declaration() -> None:
    """`GET /feedback/summary` documents exactly the fields the handler decodes the query into."""
    params = document()["paths"]["/feedback/summary"]["get"]["parameters"]
    fields = msgspec.structs.fields(SummaryQuery)
    assert [p["name"] for p in params] == [f.encode_name for f in fields]
    for p in params:
        assert p["in"] == "query"
        assert p["required"] is False
        assert p["schema"] == {"type": "string"}
        assert p["description"]
