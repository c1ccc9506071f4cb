"""The feedback body is declared once: the endpoint's decoder and the published OpenAPI schema
accept exactly the same bodies, and the summary query refuses unknown parameters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.feedback.validate import FeedbackError, parse_feedback, parse_summary_query
from tests.conformance.test_openapi import validator
from tests.feedback.test_validate import ACCEPTED, OVERRIDDEN, _entries, _json

FAR_FUTURE_MS = 10**15  # no timestamp is "in the future": that rule needs a clock, not a schema


@given(st.fixed_dictionaries({"feedback": st.lists(_entries | _json, max_size=3)}) | _json)
def test_the_decoder_and_the_openapi_schema_agree(body: Any) -> None:
    schema_ok = validator("components/schemas/FeedbackRequest").is_valid(body)
    try:
        parse_feedback(body, FAR_FUTURE_MS)
    except FeedbackError as e:
        # The one rule a schema pattern cannot state: the date must exist (no month 13).
        assert not schema_ok or ".outcomeTimestamp: required" in e.message, e.message
    else:
        assert schema_ok


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (objects and arrays)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out = []
    for k, v in items:
        out += [(*prefix, k), *_paths(v, (*prefix, k))]
    return out


@st.composite
def _one_change(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body (the spec's examples, without and with reason/comment) with one change: a value
    removed, emptied or replaced by any JSON, an unknown key added, or a field of another outcome's
    example grafted in."""
    plain = {k: v for k, v in OVERRIDDEN.items() if k != "overrideReason"}
    bodies = [[ACCEPTED], [OVERRIDDEN], [plain], [ACCEPTED, OVERRIDDEN]]
    body = json.loads(json.dumps({"feedback": draw(st.sampled_from(bodies))}))
    if draw(st.booleans()):  # graft onto an entry a field of the other outcome (or its own again)
        entry = draw(st.sampled_from(body["feedback"]))
        key = draw(st.sampled_from(["acceptedSuggestions", "overrideReason"]))
        entry[key] = json.loads(json.dumps({**ACCEPTED, **OVERRIDDEN}[key]))
        return body
    path = draw(st.sampled_from([(), *_paths(body)]))
    parent = body
    for k in path[:-1]:
        parent = parent[k]
    target = parent[path[-1]] if path else body
    kind = draw(st.sampled_from(["remove", "empty", "replace", "add"])) if path else "add"
    if kind == "add" and isinstance(target, dict):
        target[draw(st.text(min_size=1, max_size=6))] = draw(_json)
    elif kind == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    elif kind == "empty" and isinstance(target, dict | list | str):
        parent[path[-1]] = type(target)()
    elif path:
        parent[path[-1]] = draw(_json)
    return body


@settings(max_examples=300)
@given(_one_change())
def test_one_change_from_a_valid_body_is_judged_alike(body: dict[str, Any]) -> None:
    test_the_decoder_and_the_openapi_schema_agree.hypothesis.inner_test(body)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (None, None, None)),
        ({"since": "1d", "service": "a"}, ("1d", None, "a")),
        ({"until": ""}, (None, None, None)),
    ],
)
def test_summary_query(params: dict[str, str], expected: tuple[Any, ...]) -> None:
    q = parse_summary_query(params)
    assert (q.since, q.until, q.service) == expected


def test_summary_query_names_unknown_parameters() -> None:
    with pytest.raises(
        FeedbackError, match=r"unknown query parameter\(s\) from, to; use since, until, service"
    ):
        parse_summary_query({"to": "x", "from": "y", "since": "1d"})
