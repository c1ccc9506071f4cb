"""The feedback body is declared once: the endpoint's decoder and the published OpenAPI schema
accept exactly the same bodies, and the summary query refuses unknown parameters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.feedback.validate import FeedbackError, parse_feedback, parse_summary_query
from tests.conformance.test_openapi import validator
from tests.feedback.test_validate import _entries, _json

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
