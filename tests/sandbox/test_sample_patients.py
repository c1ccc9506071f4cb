"""Sample patients: they load, their dates follow today, and the prefetch the sandbox builds is what
a FHIR server would answer for our discovery templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cds.fhir.dates import effective_time, parse_datetime
from cds.fhir.record import PatientRecord
from cds.hooks.discovery import Discovery
from cds.hooks.validation import validate_hook_request
from cds.runtime.settings import load_settings
from cds.sandbox.fhirsearch import UnsupportedQuery, search
from cds.sandbox.patients import UnknownPatient, sample_patient, sample_patients, shift_dates
from cds.sandbox.requestbuilder import RequestBuildError, build_request


@pytest.fixture(scope="module")
def discovery() -> Discovery:
    return Discovery.load(load_settings().hooks_file)


def test_every_catalog_patient_is_a_bundle_with_its_patient() -> None:
    patients = sample_patients()
    assert len(patients) >= 10
    for p in patients:
        assert p.bundle["resourceType"] == "Bundle" and p.bundle["type"] == "collection"
        assert p.anchor.tzinfo is not None
        resources = p.resources()
        assert [r["id"] for r in resources if r["resourceType"] == "Patient"] == [p.id]
        ids = [(r["resourceType"], r["id"]) for r in resources]
        assert len(ids) == len(set(ids)), f"{p.id}: duplicate resource ids"
        for order in p.orders:
            assert order["status"] == "draft" and order["subject"]["reference"] == f"Patient/{p.id}"


def test_dates_move_with_today_and_ages_do_not_drift() -> None:
    p = sample_patient("sbx-sepsis-high")
    for now in (datetime(2027, 3, 1, 8, 30, tzinfo=UTC), datetime(2031, 12, 31, 23, 0, tzinfo=UTC)):
        record = PatientRecord.from_resources(p.resources(now), now=now, patient_id=p.id)
        vitals = record.observations(since=now - timedelta(hours=24))
        assert vitals, "recent vitals must stay within the last 24 hours"
        newest = effective_time(vitals[0])
        assert newest is not None and timedelta(0) < now - newest <= timedelta(hours=2)
        assert record.age() == 71


def test_shift_dates_keeps_formats_and_leaves_other_text_alone() -> None:
    anchor = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    now = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    data = {
        "birthDate": "1950-01-20",
        "t": "2026-01-15T10:00:00Z",
        "offset": "2026-01-15T10:00:00+02:00",
        "partial": "2020-05",
        "id": "2026-01-15-not-a-date",
        "n": 3,
    }
    out = shift_dates(data, anchor, now)
    assert out["birthDate"] == "1950-03-06"
    assert out["t"] == "2026-03-01T16:00:00Z"
    assert parse_datetime(out["offset"]) == parse_datetime("2026-03-01T14:00:00Z")
    assert out["partial"] == "2020-05" and out["id"] == data["id"] and out["n"] == 3
    assert data["t"] == "2026-01-15T10:00:00Z", "the stored bundle must not change"


def test_search_answers_like_a_fhir_server() -> None:
    resources = sample_patient("sbx-sepsis-high").resources()
    patient = search(resources, "Patient/sbx-sepsis-high")
    assert patient is not None and patient["resourceType"] == "Patient"
    assert search(resources, "Patient/nobody") is None
    vitals = search(
        resources, "Observation?patient=sbx-sepsis-high&category=vital-signs&_sort=-date&_count=3"
    )
    assert vitals["type"] == "searchset" and vitals["total"] > 3 and len(vitals["entry"]) == 3
    times = [effective_time(e["resource"]) for e in vitals["entry"]]
    assert times == sorted(times, reverse=True)
    labs = search(resources, "Observation?patient=sbx-sepsis-high&category=laboratory&status=final")
    assert all(e["resource"]["category"][0]["coding"][0]["code"] == "laboratory" for e in labs["entry"])
    none = search(resources, "Observation?patient=someone-else")
    assert none["total"] == 0 and "entry" not in none  # FHIR JSON has no empty arrays
    with pytest.raises(UnsupportedQuery, match="_revinclude"):
        search(resources, "Observation?patient=x&_revinclude=Provenance:target")


def test_requests_for_every_patient_and_service_pass_the_service_validation(discovery: Discovery) -> None:
    settings = load_settings()
    for p in sample_patients():
        for sid, entry in discovery.services.items():
            body = build_request(discovery, sid, p.id)
            assert set(body["prefetch"]) == set(entry.prefetch)
            req = validate_hook_request(body, sid, entry.hook, settings, "http://127.0.0.1:8080")
            assert req.patient_id == p.id
            if entry.hook == "order-sign":
                assert len(req.draft_orders) == len(p.orders)


def test_order_selection_and_errors(discovery: Discovery) -> None:
    p = next(p for p in sample_patients() if len(p.orders) >= 2)
    chosen = p.orders[1]["id"]
    body = build_request(discovery, "medication-risk", p.id, order_ids=[chosen])
    assert [e["resource"]["id"] for e in body["context"]["draftOrders"]["entry"]] == [chosen]
    with pytest.raises(RequestBuildError, match="no draft order"):
        build_request(discovery, "medication-risk", p.id, order_ids=["nope"])
    with pytest.raises(RequestBuildError, match="no sample patient"):
        build_request(discovery, "deterioration", "nobody")
    with pytest.raises(RequestBuildError, match="no service"):
        build_request(discovery, "nothing", p.id)
    with pytest.raises(UnknownPatient):
        sample_patient("nobody")
    assert "prefetch" not in build_request(discovery, "deterioration", p.id, include_prefetch=False)


def _empties(node: object, path: str = "") -> list[str]:
    if node is None or node in ("", [], {}):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _empties(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _empties(v, f"{path}[{i}]")]
    return []


def test_sample_data_is_valid_fhir_json() -> None:
    """FHIR JSON never carries null, empty strings, arrays or objects; quantities carry UCUM codes."""
    for p in sample_patients():
        assert _empties(p.bundle) == [], p.id
        for order in p.orders:
            assert _empties(order) == [], order["id"]
        for r in p.resources():
            q = r.get("valueQuantity")
            if q:
                assert q.get("system") == "http://unitsofmeasure.org" and q.get("code"), r["id"]


def test_search_includes_referenced_resources() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "warfarin"}}
    req = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "subject": {"reference": "Patient/p"},
        "medicationReference": {"reference": "Medication/m1"},
    }
    other = {**req, "id": "r2", "medicationReference": {"reference": "Medication/m1"}}
    out = search([req, other, med], "MedicationRequest?patient=p&_include=MedicationRequest:medication")
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in out["entry"]] == [
        ("r1", "match"),
        ("r2", "match"),
        ("m1", "include"),
    ]
    assert out["total"] == 2
