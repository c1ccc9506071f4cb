"""One malformed resource never costs the patient the other cards, and never a 500 (issue 15,
findings 5 and 10): the findings' own inputs, against real sample patients."""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any

import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT
from cds.sandbox.requestbuilder import build_request
from tests.core.conftest import Caller
from tests.shipped_services import carded_patients

DISCOVERY = Discovery.load(REPO_ROOT / "hooks.json")
# A sample patient per service that gets at least one card (from the sandbox scenarios).
CARDED = carded_patients()
SECRET = "ZZSECRETVALUE"  # a marker that must never reach a log line


def kinds(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return sorted(c["source"]["topic"]["code"] for c in resp.json()["cards"])


def request_for(sid: str) -> dict[str, Any]:
    return build_request(DISCOVERY, sid, CARDED[sid])


def a_bundle_key(body: dict[str, Any]) -> str:
    return next(k for k, v in body["prefetch"].items() if v and v.get("resourceType") == "Bundle")


MALFORMED = [
    # finding 5: a coding.system that is not a string, a coding that is not a list, nested garbage
    {"code": {"coding": [{"system": [SECRET], "code": "8867-4"}]}},
    {"code": {"coding": {"system": "http://loinc.org", "code": SECRET}}},
    {"code": {"coding": [[{"system": {"a": [None]}}]]}, "component": 5, "valueQuantity": [SECRET]},
    {"code": None, "status": ["final"], "effectiveDateTime": {"x": SECRET}, "category": "vital-signs"},
    {
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "0001-01-01",
    },
    {
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
        "valueQuantity": {"value": 5.1, "unit": {"u": SECRET}, "code": [SECRET]},
        "effectiveDateTime": "9999-12-31T23:59:59+14:00",
    },
]


@pytest.mark.parametrize("sid", sorted(CARDED))
@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_resource_does_not_cost_the_other_cards(caller: Caller, sid: str, bad: dict) -> None:
    body = request_for(sid)
    expected = kinds(caller.post(f"/cds-services/{sid}", json=body))
    assert expected, f"{CARDED[sid]} should get a card from {sid}"
    key = a_bundle_key(body)
    broken = copy.deepcopy(body)
    bad_resource = {
        "resourceType": "Observation",
        "id": "bad",
        "subject": {"reference": f"Patient/{CARDED[sid]}"},
    }
    broken["prefetch"][key].setdefault("entry", []).append({"resource": {**bad_resource, **bad}})
    broken["hookInstance"] = str(uuid.uuid4())
    assert kinds(caller.post(f"/cds-services/{sid}", json=broken)) == expected


@pytest.mark.parametrize("sid", sorted(CARDED))
@pytest.mark.parametrize(
    "reference", ["patient/p2", "urn:uuid:0b5a7d52-8f2e-4b38-9a48-2cb1c2a5a8f1", "#p2", " Patient/x"]
)
def test_unreadable_patient_reference_in_prefetch_is_skipped_and_counted(
    caller: Caller, sid: str, reference: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = request_for(sid)
    expected = kinds(caller.post(f"/cds-services/{sid}", json=body))
    key = a_bundle_key(body)
    entries = body["prefetch"][key].setdefault("entry", [])
    index = len(entries)
    entries.append(
        {
            "resource": {
                "resourceType": "Observation",
                "id": SECRET,
                "status": "final",
                "subject": {"reference": reference},
            }
        }
    )
    body["hookInstance"] = str(uuid.uuid4())
    with caplog.at_level(logging.INFO):
        assert kinds(caller.post(f"/cds-services/{sid}", json=body)) == expected
    skipped = [r for r in caplog.records if r.getMessage() == "resource skipped"]
    assert [(r.where, r.index, r.reason) for r in skipped] == [  # type: ignore[attr-defined]
        (f"prefetch.{key}", index, "unreadable-patient-reference")
    ]
    assert all(SECRET not in str(r.__dict__) for r in caplog.records)
    metrics = caller.client.get("/metrics").text
    assert (
        f'cds_skipped_resources_total{{reason="unreadable-patient-reference",service="{sid}"}} 1.0' in metrics
    )


def test_urn_uuid_references_resolve_through_full_urls(caller: Caller) -> None:
    sid, pid = "deterioration", CARDED["deterioration"]
    body = request_for(sid)
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    vitals = body["prefetch"]["vitals"]
    vitals["entry"].insert(0, {"fullUrl": patient_url, "resource": body["prefetch"]["patient"]})
    for e in vitals["entry"][1:]:
        e["resource"]["subject"] = {"reference": patient_url}
    assert kinds(caller.post(f"/cds-services/{sid}", json=body)) == kinds(
        caller.post(f"/cds-services/{sid}", json=request_for(sid))
    )
    # The same fullUrl naming another patient: that is another patient's data, a 400.
    vitals["entry"][0]["resource"] = {**body["prefetch"]["patient"], "id": "someone-else"}
    body["prefetch"]["patient"]["id"] = pid
    resp = caller.post(f"/cds-services/{sid}", json=body)
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize(
    "reference", ["patient/p2", "urn:uuid:0b5a7d52-8f2e-4b38-9a48-2cb1c2a5a8f1", "#p2", " Patient/x"]
)
def test_unreadable_patient_reference_in_draft_orders_is_a_400_naming_the_entry(
    caller: Caller, reference: str
) -> None:
    body = request_for("medication-risk")
    entries = body["context"]["draftOrders"]["entry"]
    entries[-1]["resource"]["subject"] = {"reference": reference}
    resp = caller.post("/cds-services/medication-risk", json=body)
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["expression"] == [f"context.draftOrders.entry[{len(entries) - 1}]"]


def test_resources_without_a_subject_are_kept(caller: Caller) -> None:
    body = request_for("medication-risk")
    expected = kinds(caller.post("/cds-services/medication-risk", json=body))
    body["prefetch"]["medications"].setdefault("entry", []).append(
        {"resource": {"resourceType": "Medication", "id": "m-extra", "code": {"text": "x"}}}
    )
    body["hookInstance"] = str(uuid.uuid4())
    assert kinds(caller.post("/cds-services/medication-risk", json=body)) == expected
    assert "cds_skipped_resources_total{" not in caller.client.get("/metrics").text


def test_a_service_that_raises_answers_with_a_not_checked_card(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = "deterioration"
    service = caller.client.app.state.cds.services[sid]  # type: ignore[attr-defined]

    def boom(*a: Any) -> Any:
        raise TypeError("simulated bug on malformed data")

    monkeypatch.setattr(service, "evaluate", boom)
    resp = caller.post(f"/cds-services/{sid}", json=request_for(sid))
    assert kinds(resp) == [f"{sid}:not-evaluated"]
    card = resp.json()["cards"][0]
    assert card["indicator"] == "warning" and "not checked" in card["summary"]
    metrics = caller.client.get("/metrics").text
    assert f'cds_evaluation_failures_total{{service="{sid}"}} 1.0' in metrics
    assert 'status="500"' not in metrics


def test_one_measure_that_raises_costs_only_itself(caller: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    from cds.services.care_gaps.measures import engine

    body = request_for("care-gaps")
    expected = kinds(caller.post("/cds-services/care-gaps", json=body))
    real = engine._module

    def module(mid: str) -> Any:
        if mid != "CMS130":
            return real(mid)

        class Broken:
            @staticmethod
            def evaluate(ctx: Any) -> Any:
                raise TypeError("simulated")

        return Broken

    monkeypatch.setattr(engine, "_module", module)
    body["hookInstance"] = str(uuid.uuid4())
    got = kinds(caller.post("/cds-services/care-gaps", json=body))
    assert "care-gaps:not-evaluated" in got
    assert {k for k in expected if "CMS130" not in k} <= set(got)


def test_feedback_summary_since_far_back_is_a_400(caller: Caller) -> None:
    for since in ("99999999d", "9" * 30 + "w", "99999999999h"):
        resp = caller.get("/feedback/summary", params={"since": since})
        assert resp.status_code == 400, (since, resp.text)


def test_entries_that_hold_no_resource_are_skipped_by_index(
    caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    sid = "deterioration"
    body = request_for(sid)
    expected = kinds(caller.post(f"/cds-services/{sid}", json=body))
    entries = body["prefetch"]["vitals"]["entry"]
    n = len(entries)
    entries += [SECRET, {"resource": {"id": SECRET}}, {"resource": [SECRET]}, None]
    body["hookInstance"] = str(uuid.uuid4())
    with caplog.at_level(logging.INFO):
        assert kinds(caller.post(f"/cds-services/{sid}", json=body)) == expected
    skipped = [(r.where, r.index, r.reason) for r in caplog.records if r.getMessage() == "resource skipped"]  # type: ignore[attr-defined]
    assert skipped == [("prefetch.vitals", n + k, "not-a-resource") for k in range(4)]
    assert all(SECRET not in str(r.__dict__) for r in caplog.records)
