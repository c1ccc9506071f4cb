"""Whatever shape the FHIR fields take, the engine and the service answer (never raise)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from cds.runtime.settings import Settings
from cds.services.care_gaps.measures.engine import evaluate
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.service import CareGapsService
from tests.care_gaps.conftest import (
    DIABETES,
    HBA1C,
    HYPERTENSION,
    cc,
    condition,
    encounter,
    observation,
    patient,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["2025-03-01", "2025-03-01T10:00:00Z", "final", "active", "order", "%", "mm[Hg]"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)  # fmt: skip
FIELDS = st.sampled_from(
    ["code", "status", "category", "subject", "period", "effectiveDateTime", "effectivePeriod", "valueQuantity",
     "component", "onsetDateTime", "onsetAge", "abatementDateTime", "clinicalStatus", "performedPeriod", "type",
     "class", "encounter", "dosageInstruction", "dispenseRequest", "authoredOn", "intent", "doNotPerform",
     "modifierExtension", "hospitalization", "bodySite", "reasonCode", "medicationCodeableConcept", "birthDate",
     "gender", "valueCodeableConcept"]
)  # fmt: skip
SERVICE = CareGapsService.from_settings(Settings(services={"care-gaps": {"max_cards": 8}})).load()
BASE = [
    patient("1960-01-01"),
    encounter(),
    condition(DIABETES),
    condition(HYPERTENSION),
    observation(HBA1C, "2025-05-01T00:00:00Z", value=(10.0, "%")),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), FIELDS, JSON), max_size=6))
def test_mangled_resources_never_raise(mutations: list[tuple[int, str, Any]]) -> None:
    resources = [dict(r) for r in BASE]
    for index, field, value in mutations:
        resources[index][field] = value
    resources.append({"resourceType": "Observation", "id": "x", "code": cc("http://loinc.org", "85354-9"), **{
        f: v for _, f, v in mutations}})  # fmt: skip
    record = PatientRecord.from_resources(resources, now=datetime(2025, 11, 1, tzinfo=UTC), patient_id="p1")
    results = evaluate(record, Period.parse("2025-01-01", "2025-12-31"))
    assert len(results) == 8
    request = HookRequest("care-gaps", "patient-view", "h", {"patientId": "p1"})
    for card in SERVICE.evaluate(request, record):
        assert len(card.to_json()["summary"]) < 140
