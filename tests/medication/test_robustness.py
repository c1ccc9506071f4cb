"""Whatever the chart contains, evaluate() answers with valid cards or a BadRequest naming the
draft entry: never another exception (which the app would turn into a 500)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.runtime.errors import BadRequest
from tests.medication.conftest import RX, allergy, draft, med, obs, run

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8))
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
codes = st.sampled_from(["855332", "310965", "11289", "5640", "2823-3", "6301-6", "nonsense", ""])


def mangle(resource: dict, key: str, value: object) -> dict:
    out = dict(resource)
    out[key] = value
    return out


chart_item = st.one_of(
    st.builds(
        lambda c, k, v: mangle(med("m1", c, "x"), k, v),
        codes,
        st.sampled_from(["medicationCodeableConcept", "status", "medicationReference", "contained", "id"]),
        json_like,
    ),
    st.builds(
        lambda v, k, x: mangle(obs("2823-3", 5.0, "mmol/L"), k, x),
        st.floats(),
        st.sampled_from(["valueQuantity", "code", "effectiveDateTime", "component", "status"]),
        json_like,
    ),
    st.builds(
        lambda k, x: mangle(allergy("7984", text="penicillin"), k, x),
        st.sampled_from(["code", "category", "criticality", "reaction", "clinicalStatus"]),
        json_like,
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(chart_item, max_size=5))
def test_odd_charts_never_crash(service, items) -> None:
    run(
        service,
        drafts=[draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")],
        active=[med("w", "855332", "Warfarin"), *items],
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(
        [
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
            "id",
            "dosageInstruction",
            "subject",
        ]
    ),
    value=json_like,
)
def test_odd_drafts_are_cards_or_bad_requests(service, key, value) -> None:
    order = mangle(draft("d1", "310965", "Ibuprofen"), key, value)
    try:
        run(service, drafts=[order], active=[med("w", "855332", "Warfarin", None)])
    except BadRequest as e:
        assert "draftOrders.entry[0]" in str(e)


def test_rxnorm_system_aliases_are_understood(service) -> None:
    d = draft("d1")
    d["medicationCodeableConcept"] = {
        "coding": [{"system": "urn:oid:2.16.840.1.113883.6.88", "code": "310965"}]
    }
    cards = run(service, drafts=[d], active=[med("w", "855332", "Warfarin Sodium 5 MG Oral Tablet")])
    assert any(c.kind == "ddi:anticoagulant-nsaid" for c in cards)
    assert RX
