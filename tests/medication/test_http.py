"""medication-risk over HTTP: cards for an order-sign call, 400 OperationOutcome for an unreadable draft."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.app import create_app
from tests.core.conftest import BASE, Caller, dev_settings
from tests.medication.conftest import draft, med

PATH = "/cds-services/medication-risk"


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    tmp: Path = tmp_path_factory.mktemp("medhttp")
    settings = dev_settings(tmp)
    client = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
    client.__enter__()
    c = Caller(client, settings)
    yield c
    c.close()


def body(drafts: list[dict], active: list[dict]) -> dict:
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/doc1",
            "patientId": "p1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in drafts],
            },
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "male"},
            "medications": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in active],
            },
            "statements": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "allergies": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
            "labs": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        },
    }


def test_order_sign_returns_the_interaction_card(caller: Caller) -> None:
    r = caller.post(
        PATH,
        json=body(
            [draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")],
            [med("m1", "855332", "Warfarin Sodium 5 MG Oral Tablet")],
        ),
    )
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert len(cards) == 1  # one card per draft order (the Beers NSAID finding rides along)
    assert cards[0]["summary"] == "Ibuprofen + warfarin: major bleeding risk (+1 more)"
    assert cards[0]["indicator"] in ("warning", "critical")
    remove = next(s for s in cards[0]["suggestions"] if s["actions"][0]["type"] == "delete")
    assert remove["actions"][0] == {
        "type": "delete",
        "description": "Remove the draft order for Ibuprofen 200 MG Oral Tablet",
        "resourceId": "MedicationRequest/d1",
    }


def test_unreadable_draft_is_a_400_operation_outcome(caller: Caller) -> None:
    bad = draft("d1")  # a MedicationRequest that names no medication
    r = caller.post(PATH, json=body([bad], []))
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert (
        "entry[0] (MedicationRequest/d1) is not a readable MedicationRequest"
        in outcome["issue"][0]["diagnostics"]
    )
