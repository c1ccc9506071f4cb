"""medication-risk over HTTP: cards for an order-sign call, 400 OperationOutcome for an unreadable draft."""

from __future__ import annotations

from tests.core.conftest import Caller
from tests.medication.conftest import body, draft, med

PATH = "/cds-services/medication-risk"


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
