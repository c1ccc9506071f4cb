"""Prefetch token rendering and the missing-key rule (absent, null, OperationOutcome)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.hooks.prefetch import UnresolvedToken, is_satisfied, missing_keys, render

ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)


@given(patient=ids, user=ids)
def test_render_replaces_tokens_and_encodes_values(patient: str, user: str) -> None:
    ctx = {"patientId": patient, "userId": f"Practitioner/{user}"}
    out = render("Observation?patient={{context.patientId}}&performer={{userPractitionerId}}&_count=5", ctx)
    assert "{{" not in out
    query = out.split("?", 1)[1]
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert unquote(params["patient"]) == patient
    assert unquote(params["performer"]) == user
    assert params["_count"] == "5"


@pytest.mark.parametrize(
    ("template", "ctx"),
    [
        ("Encounter/{{context.encounterId}}", {"patientId": "1"}),
        ("X?a={{context.draftOrders.id}}", {"draftOrders": {"id": "1"}}),
        ("X?a={{userPatientId}}", {"userId": "Practitioner/1"}),
        ("X?a={{somethingElse}}", {}),
        ("X?a={{context.flag}}", {"flag": True}),
    ],
)
def test_unresolvable_tokens_are_errors(template: str, ctx: dict) -> None:
    with pytest.raises(UnresolvedToken):
        render(template, ctx)


def test_missing_keys_treats_absent_null_and_operation_outcome_as_missing() -> None:
    templates = {"a": "Patient/{{context.patientId}}", "b": "Observation?x", "c": "Condition?x", "d": "Y?x"}
    prefetch = {
        "a": {"resourceType": "Patient", "id": "1"},
        "b": None,
        "c": {"resourceType": "OperationOutcome", "issue": []},
    }
    assert missing_keys(templates, prefetch) == ["b", "c", "d"]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_is_satisfied_never_raises(value: object) -> None:
    assert isinstance(is_satisfied(value), bool)
