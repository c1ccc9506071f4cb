"""The hook request declared once (cds/hooks/request.py): one decode-and-validate pass, errors that
name the field with msgspec's path, the cross-field rules kept in code, draftOrders checked once."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.hooks.request import HOOK_CONTEXT, USER_TYPES, FhirAuthorization, HookRequest
from cds.hooks.validation import decode_hook_request, validate_hook_request
from cds.runtime.errors import BadRequest, HTTPProblem, PayloadTooLarge
from cds.runtime.settings import Settings, load_settings


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(dev=True, data_dir=Path(tmp_path_factory.mktemp("decode")))


def order_sign(*resources: dict[str, Any], patient: str = "p1") -> dict[str, Any]:
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/doc1",
            "patientId": patient,
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]},
        },
    }


def draft(i: int, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"d{i}",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
    }


def both(body: Any, cfg: Settings, sid: str = "medication-risk", hook: str = "order-sign") -> Any:
    """The outcome of the raw-bytes path and of the parsed-body path, which must agree."""
    outcomes = []
    for run in (
        lambda: decode_hook_request(orjson.dumps(body), sid, hook, cfg, "http://x"),
        lambda: validate_hook_request(body, sid, hook, cfg, "http://x"),
    ):
        try:
            outcomes.append(run())
        except HTTPProblem as e:
            outcomes.append((e.status, e.message, e.expression))
    raw, parsed = outcomes
    if isinstance(raw, HookRequest):
        assert isinstance(parsed, HookRequest)
        assert (raw.context, raw.draft_orders, raw.prefetch) == (
            parsed.context,
            parsed.draft_orders,
            parsed.prefetch,
        )
    else:
        assert raw == parsed
    return raw


def test_error_names_the_field_with_msgspecs_path(cfg: Settings) -> None:
    body = order_sign(draft(0), draft(1), draft(2))
    body["context"]["draftOrders"]["entry"][2]["resource"] = "MedicationRequest/d2"
    status, message, expression = both(body, cfg)
    assert status == 400
    assert message.startswith("context.draftOrders.entry[2] has no resource with a resourceType")
    assert "`$.context.draftOrders.entry[2].resource`" in message
    assert expression == ["context.draftOrders.entry[2].resource"]


@pytest.mark.parametrize(
    ("mutate", "message", "path"),
    [
        (lambda b: b.update(hookInstance=7), "hookInstance must be a UUID", "$.hookInstance"),
        (
            lambda b: b["context"].update(userId="Patient/1"),
            "context.userId must be a reference",
            "$.context.userId",
        ),
        (lambda b: b["context"].update(patientId="Patient/p1"), "not a reference", "$.context.patientId"),
        (
            lambda b: b["context"].update(encounterId=""),
            "context.encounterId must be a non-empty",
            "$.context.encounterId",
        ),
        (
            lambda b: b["context"]["draftOrders"].update(entry={}),
            "entry must be a list",
            "$.context.draftOrders.entry",
        ),
        (
            lambda b: b["context"]["draftOrders"]["entry"].append({}),
            "entry[1] has no resource",
            "$.context.draftOrders.entry[1]",
        ),
        (
            lambda b: b["context"].update(draftOrders=None),
            "draftOrders is required for the order-sign hook",
            "$.context.draftOrders",
        ),
        (lambda b: b.update(fhirServer="ftp://x"), "fhirServer must be an absolute", "$.fhirServer"),
        (
            lambda b: b.update(
                fhirServer="https://ehr/fhir", fhirAuthorization={"access_token": "t", "token_type": "MAC"}
            ),
            "fhirAuthorization.token_type must be Bearer",
            "$.fhirAuthorization.token_type",
        ),
    ],
)
def test_shape_errors(cfg: Settings, mutate: Any, message: str, path: str) -> None:
    body = order_sign(draft(0))
    mutate(body)
    status, text, _ = both(body, cfg)
    assert status == 400
    assert message in text and f"`{path}`" in text


def test_order_select_userid_types_come_from_the_declaration(cfg: Settings) -> None:
    assert set(HOOK_CONTEXT) == set(USER_TYPES)
    for user in ("Patient/1", "RelatedPerson/1"):
        body = order_sign(draft(0))
        body["context"]["userId"] = user
        assert both(body, cfg)[0] == 400
    body = order_sign(draft(0))
    body["hook"] = "patient-view"
    body["context"]["userId"] = "RelatedPerson/1"
    req = both(body, cfg, "deterioration", "patient-view")
    assert req.context == {
        "userId": "RelatedPerson/1",
        "patientId": "p1",
    }  # draftOrders is not patient-view's


def test_a_call_to_the_wrong_service_is_said_first(cfg: Settings) -> None:
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "p1"}}
    status, message, _ = both(body, cfg)
    assert (
        status == 400 and "service medication-risk answers the order-sign hook, not patient-view" in message
    )
    body["hook"] = 5
    assert "hook is required" in both(body, cfg)[1]


def test_not_an_object_and_not_json(cfg: Settings) -> None:
    assert "the request body must be a JSON object" in both([1, 2], cfg)[1]
    with pytest.raises(BadRequest, match="not valid JSON"):
        decode_hook_request(b'{"hook": ', "medication-risk", "order-sign", cfg, "http://x")


def test_draft_orders_are_decoded_once_and_handed_to_the_service(cfg: Settings) -> None:
    body = order_sign(draft(0), draft(1))
    body["context"]["draftOrders"]["entry"][1]["fullUrl"] = "urn:uuid:1"
    req = both(body, cfg)
    assert req.orders == (draft(0), draft(1))  # decoded by validation: the service reads these
    assert req.draft_orders is req.orders
    assert req.context["draftOrders"]["entry"][1] == {"fullUrl": "urn:uuid:1", "resource": draft(1)}


def test_draft_order_limit_and_patient_check(cfg: Settings) -> None:
    many = order_sign(*[draft(i) for i in range(cfg.max_draft_orders + 1)])
    with pytest.raises(PayloadTooLarge):
        decode_hook_request(orjson.dumps(many), "medication-risk", "order-sign", cfg, "http://x")
    other = order_sign(draft(0), draft(1, patient="p2"))
    assert "entry[1] is for another patient" in both(other, cfg)[1]


def test_token_never_in_repr(cfg: Settings) -> None:
    auth = {"access_token": "SECRET", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "u"}
    body = order_sign(draft(0))
    body.update(fhirServer="https://ehr.example/fhir", fhirAuthorization=auth)
    req = both(body, cfg)
    assert req.fhir_authorization == auth | {"patient": None}
    assert "SECRET" not in repr(req)
    assert "SECRET" not in repr(FhirAuthorization(**auth))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_PATHS = [
    ("hook",),
    ("hookInstance",),
    ("fhirServer",),
    ("fhirAuthorization",),
    ("prefetch",),
    ("context",),
    ("context", "userId"),
    ("context", "patientId"),
    ("context", "encounterId"),
    ("context", "draftOrders"),
    ("context", "draftOrders", "resourceType"),
    ("context", "draftOrders", "entry"),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PATHS), _JSON)
def test_any_value_anywhere_is_a_request_or_a_4xx_that_both_paths_agree_on(
    path: tuple[str, ...], value: Any
) -> None:
    cfg = load_settings(dev=True, data_dir=Path("/nonexistent-never-written"))
    body = copy.deepcopy(order_sign(draft(0)))
    node = body
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    outcome = both(body, cfg)
    if not isinstance(outcome, HookRequest):
        status, message, _ = outcome
        assert status in (400, 413) and message


def test_a_number_out_of_range_is_a_400_not_an_error(cfg: Settings) -> None:
    raw = orjson.dumps(order_sign(draft(0))).replace(b'"intent":"order"', b'"intent":"order","x":1e999')
    with pytest.raises(BadRequest, match="number out of range"):
        decode_hook_request(raw, "medication-risk", "order-sign", cfg, "http://x")


# --- the one flatten-and-check, against the plain reading it speeds up ------------------------------

_SUBJECTS = st.sampled_from(
    [
        None,
        {"reference": "Patient/p1"},
        {"reference": "Patient/p2"},
        {"reference": "patient/p1"},
        {"reference": "https://ehr.example/fhir/Patient/p1"},
        {"reference": "urn:uuid:abc"},
        {"reference": "urn:uuid:nobody"},
        "Patient/p1",
        {"display": "no reference"},
    ]
)
_RESOURCES = st.builds(
    lambda rtype, field, subject, rid: {
        "resourceType": rtype,
        **({"id": rid} if rid is not None else {}),
        **({field: subject} if subject is not None else {}),
    },
    st.sampled_from(
        ["Observation", "Condition", "Patient", "Medication", "OperationOutcome", "AllergyIntolerance"]
    ),
    st.sampled_from(["subject", "patient"]),
    _SUBJECTS,
    st.sampled_from([None, "p1", "p2", 5]),
)
_ENTRIES = st.one_of(
    st.builds(lambda r: {"resource": r}, _RESOURCES),
    st.just({"fullUrl": "urn:uuid:abc", "resource": {"resourceType": "Patient", "id": "p1"}}),
    st.just({"resource": "not a resource"}),
    st.just("not an entry"),
    st.builds(
        lambda rs: {"resource": {"resourceType": "Bundle", "entry": [{"resource": r} for r in rs]}},
        st.lists(_RESOURCES, max_size=3),
    ),
)
_VALUES = st.one_of(
    st.none(),
    _RESOURCES,
    st.builds(lambda es: {"resourceType": "Bundle", "entry": es}, st.lists(_ENTRIES, max_size=6)),
    st.just({"resourceType": "Bundle", "entry": {"not": "a list"}}),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), _VALUES, max_size=3),
    st.sampled_from(["p1", "p 1", "p2"]),
)
def test_flatten_about_is_patient_of_over_every_resource(values: dict[str, Any], patient_id: str) -> None:
    from cds.fhir.patientref import bundle_patient_urls, patient_of
    from cds.fhir.record import resources_of
    from cds.hooks.validation import flatten_about

    full_urls = bundle_patient_urls(values.values())
    expected_ours, expected_others = [], []
    for key, value in values.items():
        if value is None:
            continue
        if value.get("resourceType") == "Bundle" and isinstance(value.get("entry"), list):
            found = [
                (i, r)
                for i, e in enumerate(value["entry"])
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                for r in resources_of(e["resource"])
            ]
        else:
            found = [(0, r) for r in resources_of(value)] if value.get("resourceType") != "Bundle" else []
        for i, r in found:
            pid = patient_of(r, full_urls)
            if pid is None or pid == patient_id:
                expected_ours.append(r)
            else:
                expected_others.append((key, i, r, pid))
    skipped: list[tuple[str, int, str]] = []
    ours, others = flatten_about(values, patient_id, skipped)
    assert ours == expected_ours
    assert others == expected_others
