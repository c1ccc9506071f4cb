"""Arbitrary JSON thrown at the hook endpoints never gets a 500 (nor a non-JSON answer)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.conftest import Caller
from tests.shipped_services import DISCOVERY

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

fhir_like = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["Observation", "Condition", "MedicationRequest", "Patient", "Bundle", "X"]
        )
    },
    optional={
        "id": st.text(max_size=5),
        "status": st.sampled_from(["final", "active", "entered-in-error", "draft"]) | json_values,
        "code": json_values,
        "subject": st.just({"reference": "Patient/p1"}) | json_values,
        "valueQuantity": st.fixed_dictionaries({"value": json_values, "unit": json_values}),
        "effectiveDateTime": st.text(max_size=25) | json_values,
        "entry": st.lists(st.fixed_dictionaries({"resource": json_values}), max_size=3),
        "medicationCodeableConcept": json_values,
        "birthDate": st.text(max_size=12),
        "gender": json_values,
    },
)


def requests_for(hook: str) -> st.SearchStrategy[dict[str, Any]]:
    context = st.fixed_dictionaries(
        {"userId": st.just("Practitioner/1") | json_values, "patientId": st.just("p1") | json_values},
        optional={
            "draftOrders": st.fixed_dictionaries(
                {
                    "resourceType": st.just("Bundle"),
                    "entry": st.lists(st.fixed_dictionaries({"resource": fhir_like})),
                }
            )
            | json_values
        },
    )
    return st.fixed_dictionaries(
        {
            "hook": st.just(hook) | json_values,
            "hookInstance": st.just(str(uuid.UUID(int=1))) | json_values,
            "context": context | json_values,
        },
        optional={
            "prefetch": st.dictionaries(
                st.sampled_from(["patient", "vitals", "labs", "medications", "x"]), fhir_like | json_values
            ),
            "fhirServer": json_values,
        },
    )


@pytest.mark.parametrize(("service", "hook"), [(sid, e.hook) for sid, e in DISCOVERY.services.items()])
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_input_causes_a_500(caller: Caller, service: str, hook: str, data: st.DataObject) -> None:
    body = data.draw(requests_for(hook) | json_values)
    resp = caller.post(f"/cds-services/{service}", json=body)
    assert resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    if resp.status_code == 200:
        assert isinstance(resp.json()["cards"], list)
    else:
        assert resp.json()["resourceType"] == "OperationOutcome"
